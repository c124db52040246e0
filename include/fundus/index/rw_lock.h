// A reader/writer lock that lets a waiting writer in before new readers. std::shared_mutex (glibc's
// default rwlock) prefers readers, so a stream of overlapping searches could starve add()/remove()
// forever; here a writer waits only for the searches already running.
// Meets the SharedMutex requirements used by std::shared_lock / std::unique_lock.
#pragma once

#include <condition_variable>
#include <mutex>

namespace fundus {

class WriterPriorityMutex {
 public:
  void lock() {
    std::unique_lock<std::mutex> l(m_);
    ++writers_waiting_;
    cv_.wait(l, [&] { return !writer_ && readers_ == 0; });
    --writers_waiting_;
    writer_ = true;
  }
  void unlock() {
    std::lock_guard<std::mutex> l(m_);
    writer_ = false;
    cv_.notify_all();
  }
  void lock_shared() {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return !writer_ && writers_waiting_ == 0; });
    ++readers_;
  }
  void unlock_shared() {
    std::lock_guard<std::mutex> l(m_);
    if (--readers_ == 0) cv_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int readers_ = 0, writers_waiting_ = 0;
  bool writer_ = false;
};

}  // namespace fundus

// Concurrency building blocks.
//  - BoundedQueue<T>: blocking multi-producer/multi-consumer queue with a capacity (back-pressure
//    for prefetching loaders) and close() for shutdown; pop() returns nullopt once closed and empty.
//  - parallel_for(n, threads, fn): splits [0, n) into contiguous chunks over up to `threads` threads.
//    Exceptions thrown by fn are rethrown in the caller (the first one).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

namespace fundus {

template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t capacity) : capacity_(capacity ? capacity : 1) {}

  /// Blocks while full; returns false (and drops the item) if the queue was closed.
  bool push(T item) {
    std::unique_lock<std::mutex> lock(mu_);
    not_full_.wait(lock, [&] { return closed_ || items_.size() < capacity_; });
    if (closed_) return false;
    items_.push_back(std::move(item));
    not_empty_.notify_one();
    return true;
  }
  /// Blocks while empty and open; nullopt once closed and drained.
  std::optional<T> pop() {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [&] { return closed_ || !items_.empty(); });
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    not_full_.notify_one();
    return item;
  }
  void close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    not_full_.notify_all();
    not_empty_.notify_all();
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return items_.size();
  }

 private:
  size_t capacity_;
  std::deque<T> items_;
  bool closed_ = false;
  mutable std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
};

void parallel_for(int64_t n, int threads, const std::function<void(int64_t begin, int64_t end)>& fn);

/// Hardware threads available to this process (affinity-aware), at least 1.
int available_cores();

}  // namespace fundus

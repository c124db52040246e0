// BoundedQueue and parallel_for (core/concurrency.h): ordering, close, capacity, exceptions. No timing
// assertions: threads are coordinated through the queue itself and the checks are on what they saw.
#include <algorithm>
#include <atomic>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"

namespace fundus {
namespace {

TEST(BoundedQueue, FifoOrderAndDrainAfterClose) {
  BoundedQueue<int> q(4);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(q.push(i));
  EXPECT_EQ(q.size(), 4u);
  EXPECT_EQ(q.pop(), 0);
  q.close();
  EXPECT_FALSE(q.push(9));                            // closed: dropped
  for (int i = 1; i < 4; ++i) EXPECT_EQ(q.pop(), i);  // what was queued before close is still delivered
  EXPECT_EQ(q.pop(), std::nullopt);
  EXPECT_EQ(q.pop(), std::nullopt);  // and stays closed
  BoundedQueue<int> zero(0);         // capacity 0 means 1
  EXPECT_TRUE(zero.push(5));
  EXPECT_EQ(zero.pop(), 5);
}

TEST(BoundedQueue, ProducerWaitsWhileFullAndNeverExceedsCapacity) {
  constexpr size_t capacity = 2;
  constexpr int items = 200;
  BoundedQueue<int> q(capacity);
  std::atomic<size_t> largest{0};
  std::thread producer([&] {
    for (int i = 0; i < items; ++i) {
      EXPECT_TRUE(q.push(i));
      size_t seen = q.size(), prev = largest.load();
      while (seen > prev && !largest.compare_exchange_weak(prev, seen)) {}
    }
    q.close();
  });
  std::vector<int> got;
  while (auto v = q.pop()) {
    EXPECT_LE(q.size(), capacity);
    got.push_back(*v);
  }
  producer.join();
  std::vector<int> expected(items);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(got, expected);  // one producer, one consumer: order kept, nothing lost or doubled
  EXPECT_LE(largest.load(), capacity);
  EXPECT_GE(largest.load(), 1u);
}

TEST(BoundedQueue, CloseReleasesBlockedProducersAndConsumers) {
  // A producer on a full queue: its push returns false once the queue is closed instead of hanging.
  BoundedQueue<int> full(1);
  ASSERT_TRUE(full.push(1));
  std::atomic<int> result{-1};
  std::thread producer([&] { result = full.push(2) ? 1 : 0; });
  // The producer cannot finish before close(): the queue stays full because nobody pops.
  EXPECT_EQ(full.size(), 1u);
  full.close();
  producer.join();
  EXPECT_EQ(result.load(), 0);
  EXPECT_EQ(full.pop(), 1);
  EXPECT_EQ(full.pop(), std::nullopt);

  // Consumers on an empty queue: every pop returns nullopt after close.
  BoundedQueue<int> empty(3);
  std::atomic<int> released{0};
  std::vector<std::thread> consumers;
  for (int i = 0; i < 3; ++i)
    consumers.emplace_back([&] {
      if (!empty.pop().has_value()) ++released;
    });
  empty.close();
  for (auto& t : consumers) t.join();
  EXPECT_EQ(released.load(), 3);
}

TEST(BoundedQueue, ManyProducersAndConsumersDeliverEachItemOnce) {
  constexpr int producers = 3, consumers = 3, per_producer = 500;
  BoundedQueue<int> q(4);
  std::vector<std::vector<int>> received(consumers);
  std::vector<std::thread> threads;
  for (int c = 0; c < consumers; ++c)
    threads.emplace_back([&, c] {
      while (auto v = q.pop()) received[size_t(c)].push_back(*v);
    });
  std::vector<std::thread> pushers;
  for (int p = 0; p < producers; ++p)
    pushers.emplace_back([&, p] {
      for (int i = 0; i < per_producer; ++i) q.push(p * per_producer + i);
    });
  for (auto& t : pushers) t.join();
  q.close();
  for (auto& t : threads) t.join();
  std::vector<int> all;
  for (const auto& r : received) {
    // Each producer's items reach any one consumer in the order they were pushed.
    for (int p = 0; p < producers; ++p) {
      std::vector<int> mine;
      for (int v : r)
        if (v / per_producer == p) mine.push_back(v);
      EXPECT_TRUE(std::is_sorted(mine.begin(), mine.end()));
    }
    all.insert(all.end(), r.begin(), r.end());
  }
  std::sort(all.begin(), all.end());
  std::vector<int> expected(producers * per_producer);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(all, expected);
}

TEST(ParallelFor, CoversEachIndexOnceInContiguousChunks) {
  for (int threads : {1, 2, 3, 7, 64}) {
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(5), int64_t(100)}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> calls{0};
      parallel_for(n, threads, [&](int64_t b, int64_t e) {
        ASSERT_LT(b, e);
        ASSERT_LE(e, n);
        ++calls;
        for (int64_t i = b; i < e; ++i) ++hits[size_t(i)];
      });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[size_t(i)].load(), 1) << "n " << n << " index " << i;
      // Chunks of ceil(n / t) indices, t = min(threads, n): the last chunk may be shorter.
      const int64_t t = std::max<int64_t>(1, std::min<int64_t>(threads, n)), chunk = (n + t - 1) / t;
      EXPECT_EQ(calls.load(), n == 0 ? 0 : int((n + chunk - 1) / chunk)) << "n " << n << " threads " << threads;
    }
  }
  // One thread runs the whole range in the caller.
  std::thread::id caller = std::this_thread::get_id(), ran;
  parallel_for(10, 1, [&](int64_t b, int64_t e) {
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 10);
    ran = std::this_thread::get_id();
  });
  EXPECT_EQ(ran, caller);
}

TEST(ParallelFor, ExceptionsReachTheCallerAfterEveryChunkFinished) {
  std::atomic<int> finished{0};
  try {
    parallel_for(8, 4, [&](int64_t b, int64_t) {
      if (b == 2) FUNDUS_THROW("chunk at " << b << " failed");
      ++finished;
    });
    ADD_FAILURE() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "chunk at 2 failed");
  }
  EXPECT_EQ(finished.load(), 3);  // the other chunks ran to the end: no thread is left running
  // Several failures: the first chunk's exception wins, whatever the finishing order.
  try {
    parallel_for(4, 4, [](int64_t b, int64_t) { throw std::runtime_error("chunk " + std::to_string(b)); });
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "chunk 0");
  }
  // Single-threaded: the exception passes straight through.
  EXPECT_THROW(parallel_for(3, 1, [](int64_t, int64_t) { throw std::out_of_range("x"); }), std::out_of_range);
}

}  // namespace
}  // namespace fundus

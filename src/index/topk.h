// Bounded top-k selection with a deterministic total order (private to the index component).
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <vector>

#include "fundus/core/concurrency.h"
#include "fundus/index/vector_index.h"

namespace fundus {

struct Hit {
  float score;
  int64_t id;
};

/// The order of SearchResult rows: higher score first, ties by lower id.
inline bool better(const Hit& a, const Hit& b) { return a.score > b.score || (a.score == b.score && a.id < b.id); }

class TopK {
 public:
  explicit TopK(int k = 1) : k_(size_t(k)) { heap_.reserve(k_); }

  void push(float score, int64_t id) {
    Hit h{score, id};
    if (heap_.size() < k_) {
      heap_.push_back(h);
      std::push_heap(heap_.begin(), heap_.end(), better);  // front = the worst kept hit
    } else if (better(h, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), better);
      heap_.back() = h;
      std::push_heap(heap_.begin(), heap_.end(), better);
    }
  }
  /// A score below this can never enter (cheap pre-filter for scans).
  float floor() const { return heap_.size() < k_ ? kMissingScore : heap_.front().score; }
  void merge(const TopK& other) {
    for (auto& h : other.heap_) push(h.score, h.id);
  }
  /// Writes the hits best first into out_ids/out_scores (k slots; the rest is left as is).
  void write(int64_t* out_ids, float* out_scores) {
    std::sort(heap_.begin(), heap_.end(), better);
    for (size_t i = 0; i < heap_.size(); ++i) {
      out_ids[i] = heap_[i].id;
      out_scores[i] = heap_[i].score;
    }
  }

 private:
  size_t k_;
  std::vector<Hit> heap_;
};

/// Sorts the first `n` hits of a row into SearchResult order (for libraries whose tie order differs).
inline void sort_row(int64_t* ids, float* scores, int n) {
  std::vector<Hit> hits(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) hits[size_t(i)] = {scores[i], ids[i]};
  std::sort(hits.begin(), hits.end(), better);
  for (int i = 0; i < n; ++i) {
    ids[i] = hits[size_t(i)].id;
    scores[i] = hits[size_t(i)].score;
  }
}

}  // namespace fundus

namespace fundus {

/// Items per thread below which a scan stays on one thread (starting a thread costs more).
constexpr int64_t kMinScanPerThread = 4096;

/// Exact top-k of one query over `count` items on up to `threads` threads: visit(i, heap) pushes
/// item i's hit into `heap` if it qualifies. Writes the best hits into out_ids/out_scores (k slots;
/// the rest is left as is).
template <typename Visit>
void scan_topk(int64_t count, int threads, int k, const Visit& visit, int64_t* out_ids, float* out_scores) {
  TopK best(k);
  std::mutex merge_mutex;
  const int t = int(std::min<int64_t>(threads, std::max<int64_t>(1, count / kMinScanPerThread)));
  parallel_for(count, t, [&](int64_t b, int64_t e) {
    TopK local(k);
    for (int64_t i = b; i < e; ++i) visit(i, local);
    std::lock_guard<std::mutex> lock(merge_mutex);
    best.merge(local);
  });
  best.write(out_ids, out_scores);
}

}  // namespace fundus

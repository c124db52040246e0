// Batch samplers: which dataset indices form batch b of epoch e.
//   sequential  0, 1, ..., N-1 in order (evaluation, embedding)
//   shuffled    a permutation of 0..N-1 per epoch
//   balanced    "P grades x K images": each batch takes grades_per_batch grades (uniformly, without
//               replacement, among the grades present) and splits batch_size evenly between them; inside a
//               grade images come from a per-epoch shuffled cycle, so small grades repeat (sampling with
//               replacement once a grade is exhausted) while large grades are seen without repetition.
//               An epoch has batches_per_epoch batches (default ceil(N / batch_size)).
// Determinism: epoch(e) depends only on (grades, options, seed, e): resume at any epoch and batch.
// Immutable after construction, so const methods are thread-safe. Bad options throw fundus::Error
// naming the key ("sampler.batch_size: ...").
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fundus/core/json.h"

namespace fundus {

enum class SamplerKind { sequential, shuffled, balanced };
const char* sampler_kind_name(SamplerKind kind);
SamplerKind parse_sampler_kind(const std::string& name);  // throws listing the valid names

struct SamplerOptions {
  SamplerKind kind = SamplerKind::shuffled;
  int64_t batch_size = 16;
  bool drop_last = false;         // sequential/shuffled: drop a final partial batch
  int grades_per_batch = 4;       // balanced: P (capped at the number of grades present)
  int64_t batches_per_epoch = 0;  // balanced: 0 = ceil(N / batch_size)

  void validate() const;
  /// The "sampler" config section; kind as "sequential" | "shuffled" | "balanced".
  Json to_json() const;
  static SamplerOptions from_json(const Json& section);
};

class BatchSampler {
 public:
  /// `grades[i]` is the grade (0..kNumGrades-1) of dataset index i; only `balanced` looks at them.
  BatchSampler(std::vector<int> grades, SamplerOptions options, uint64_t seed);

  int64_t batches_per_epoch() const;
  /// Every batch of epoch `epoch` (>= 0), in order; each inner vector holds dataset indices.
  std::vector<std::vector<int64_t>> epoch(int64_t epoch) const;
  const SamplerOptions& options() const { return options_; }
  int64_t size() const { return int64_t(grades_.size()); }

 private:
  std::vector<int> grades_;
  SamplerOptions options_;
  uint64_t seed_;
  std::vector<std::vector<int64_t>> by_grade_;  // dataset indices of each grade
};

/// Data-parallel sharding: the half-open range [first, last) of part `part` when `rows` rows are
/// split into `parts` contiguous pieces of nearly equal size (differing by at most one; earlier
/// parts get the extra rows). Throws for part outside 0..parts-1.
std::pair<int64_t, int64_t> shard_range(int64_t rows, int part, int parts);

}  // namespace fundus

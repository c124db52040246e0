#include "fundus/data/sampler.h"

#include <algorithm>

#include "fundus/core/case.h"
#include "fundus/core/error.h"
#include "fundus/core/rng.h"

namespace fundus {

const char* sampler_kind_name(SamplerKind kind) {
  switch (kind) {
    case SamplerKind::sequential:
      return "sequential";
    case SamplerKind::shuffled:
      return "shuffled";
    case SamplerKind::balanced:
      return "balanced";
  }
  return "?";
}

SamplerKind parse_sampler_kind(const std::string& name) {
  for (SamplerKind k : {SamplerKind::sequential, SamplerKind::shuffled, SamplerKind::balanced})
    if (name == sampler_kind_name(k)) return k;
  FUNDUS_THROW("sampler.kind: unknown sampler '" << name << "' (known: sequential, shuffled, balanced)");
}

void SamplerOptions::validate() const {
  FUNDUS_CHECK(batch_size >= 1 && batch_size <= 65536, "sampler.batch_size: must be in 1..65536, got " << batch_size);
  FUNDUS_CHECK(grades_per_batch >= 1 && grades_per_batch <= kNumGrades,
               "sampler.grades_per_batch: must be in 1.." << kNumGrades << ", got " << grades_per_batch);
  FUNDUS_CHECK(batches_per_epoch >= 0,
               "sampler.batches_per_epoch: must be >= 0 (0 = automatic), got " << batches_per_epoch);
}

Json SamplerOptions::to_json() const {
  return Json{{"kind", sampler_kind_name(kind)},
              {"batch_size", batch_size},
              {"drop_last", drop_last},
              {"grades_per_batch", grades_per_batch},
              {"batches_per_epoch", batches_per_epoch}};
}

SamplerOptions SamplerOptions::from_json(const Json& j) {
  JsonFields f(j, "sampler", {"kind", "batch_size", "drop_last", "grades_per_batch", "batches_per_epoch"});
  SamplerOptions o;
  std::string kind = sampler_kind_name(o.kind);
  f.read("kind", kind);
  o.kind = parse_sampler_kind(kind);
  f.read("batch_size", o.batch_size);
  f.read("drop_last", o.drop_last);
  f.read("grades_per_batch", o.grades_per_batch);
  f.read("batches_per_epoch", o.batches_per_epoch);
  o.validate();
  return o;
}

BatchSampler::BatchSampler(std::vector<int> grades, SamplerOptions options, uint64_t seed)
    : grades_(std::move(grades)), options_(options), seed_(seed), by_grade_(kNumGrades) {
  options_.validate();
  FUNDUS_CHECK(!grades_.empty(), "sampler: the dataset is empty");
  for (size_t i = 0; i < grades_.size(); ++i) {
    FUNDUS_CHECK(options_.kind != SamplerKind::balanced || (grades_[i] >= 0 && grades_[i] < kNumGrades),
                 "sampler: record " << i << " has grade " << grades_[i] << " (balanced sampling needs grades 0.."
                                    << kNumGrades - 1 << ")");
    if (grades_[i] >= 0 && grades_[i] < kNumGrades) by_grade_[size_t(grades_[i])].push_back(int64_t(i));
  }
  FUNDUS_CHECK(
      options_.kind == SamplerKind::balanced || !options_.drop_last || size() >= options_.batch_size,
      "sampler: drop_last with batch_size " << options_.batch_size << " leaves no batch for " << size() << " images");
}

int64_t BatchSampler::batches_per_epoch() const {
  const int64_t n = size(), b = options_.batch_size;
  if (options_.kind == SamplerKind::balanced)
    return options_.batches_per_epoch > 0 ? options_.batches_per_epoch : (n + b - 1) / b;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<std::vector<int64_t>> BatchSampler::epoch(int64_t epoch) const {
  FUNDUS_CHECK(epoch >= 0, "sampler: epoch must be >= 0, got " << epoch);
  Rng rng(Rng::derive(seed_, uint64_t(epoch)));
  const int64_t nb = batches_per_epoch(), b = options_.batch_size;
  std::vector<std::vector<int64_t>> batches;
  batches.reserve(size_t(nb));

  if (options_.kind != SamplerKind::balanced) {
    std::vector<int64_t> order(grades_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
    if (options_.kind == SamplerKind::shuffled) rng.shuffle(order);
    for (int64_t k = 0; k < nb; ++k) {
      auto first = order.begin() + k * b, last = order.begin() + std::min(size(), (k + 1) * b);
      batches.emplace_back(first, last);
    }
    return batches;
  }

  // Balanced: per-grade shuffled cycles, refilled (reshuffled) when exhausted.
  std::vector<int> present;
  for (int g = 0; g < kNumGrades; ++g)
    if (!by_grade_[size_t(g)].empty()) present.push_back(g);
  const int p = std::min<int>(options_.grades_per_batch, int(present.size()));
  std::vector<std::vector<int64_t>> cycle(kNumGrades);
  std::vector<size_t> pos(kNumGrades, 0);
  auto draw = [&](int g) {
    auto& c = cycle[size_t(g)];
    if (pos[size_t(g)] == c.size()) {
      c = by_grade_[size_t(g)];
      rng.shuffle(c);
      pos[size_t(g)] = 0;
    }
    return c[pos[size_t(g)]++];
  };
  for (int64_t k = 0; k < nb; ++k) {
    std::vector<int> chosen = present;
    rng.shuffle(chosen);
    chosen.resize(size_t(p));
    std::vector<int64_t> batch;
    batch.reserve(size_t(b));
    for (int j = 0; j < p; ++j) {
      int64_t count = b / p + (j < b % p ? 1 : 0);  // batch_size split as evenly as possible
      for (int64_t i = 0; i < count; ++i) batch.push_back(draw(chosen[size_t(j)]));
    }
    batches.push_back(std::move(batch));
  }
  return batches;
}

std::pair<int64_t, int64_t> shard_range(int64_t rows, int part, int parts) {
  FUNDUS_CHECK(parts >= 1 && part >= 0 && part < parts && rows >= 0,
               "shard_range: part " << part << " of " << parts << " for " << rows << " rows");
  const int64_t base = rows / parts, extra = rows % parts;
  const int64_t first = part * base + std::min<int64_t>(part, extra);
  return {first, first + base + (part < extra ? 1 : 0)};
}

}  // namespace fundus

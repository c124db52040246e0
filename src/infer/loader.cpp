#include "fundus/infer/loader.h"

#include <algorithm>

#include "fundus/core/error.h"
#include "fundus/core/rng.h"

namespace fundus {

namespace {
// Independent random streams of one loader seed.
constexpr uint64_t kSamplerStream = 1, kAugmentStream = 2;

std::vector<int> grades_of(const Dataset& d) {
  std::vector<int> g;
  g.reserve(d.records.size());
  for (auto& r : d.records) g.push_back(r.grade);
  return g;
}
}  // namespace

void LoaderOptions::validate() const {
  sampler.validate();
  preprocess.validate();
  if (augment) augmentation.validate();
  FUNDUS_CHECK(workers >= 0, "loader.workers: must be >= 0 (0 = all cores), got " << workers);
  FUNDUS_CHECK(prefetch_batches >= 1, "loader.prefetch_batches: must be >= 1, got " << prefetch_batches);
  FUNDUS_CHECK(shard_count >= 1 && shard_index >= 0 && shard_index < shard_count,
               "loader: shard " << shard_index << " of " << shard_count << " is not a valid shard");
}

LoaderOptions eval_loader_options(const LoaderOptions& base, int64_t batch_size) {
  LoaderOptions o = base;
  o.sampler = SamplerOptions{};
  o.sampler.kind = SamplerKind::sequential;
  o.sampler.batch_size = batch_size;
  o.sampler.drop_last = false;
  o.augment = false;
  return o;
}

DataLoader::DataLoader(const Dataset& dataset, LoaderOptions options)
    : dataset_(dataset),
      options_((options.validate(), std::move(options))),
      sampler_(grades_of(dataset_), options_.sampler, Rng::derive(options_.seed, kSamplerStream)) {
  if (options_.workers == 0) options_.workers = available_cores();
  if (!options_.cache_dir.empty()) cache_ = std::make_unique<PreprocessCache>(options_.cache_dir, options_.preprocess);
}

DataLoader::~DataLoader() { stop_workers(); }

PreprocessCache::Stats DataLoader::cache_stats() const { return cache_ ? cache_->stats() : PreprocessCache::Stats{}; }

void DataLoader::stop_workers() {
  stop_ = true;
  for (auto& q : queues_) q->close();
  for (auto& t : workers_) t.join();
  workers_.clear();
  queues_.clear();
  stop_ = false;
}

void DataLoader::start_epoch(int64_t epoch, int64_t skip_batches) {
  stop_workers();
  const int64_t nb = batches_per_epoch();
  FUNDUS_CHECK(epoch >= 0, "DataLoader: epoch must be >= 0, got " << epoch);
  FUNDUS_CHECK(skip_batches >= 0 && skip_batches <= nb,
               "DataLoader: skip_batches " << skip_batches << " outside 0.." << nb << " (batches per epoch)");
  epoch_ = epoch;
  plan_ = sampler_.epoch(epoch);
  first_ = cursor_ = skip_batches;
  const int n_workers = int(std::min<int64_t>(options_.workers, nb - first_));
  const size_t capacity = size_t(std::max(1, (options_.prefetch_batches + n_workers - 1) / std::max(1, n_workers)));
  for (int w = 0; w < n_workers; ++w) queues_.push_back(std::make_unique<BoundedQueue<Item>>(capacity));
  for (int w = 0; w < n_workers; ++w) {
    workers_.emplace_back([this, w, n_workers, nb] {
      for (int64_t b = first_ + w; b < nb && !stop_; b += n_workers) {
        Item item;
        try {
          item.batch = build_batch(b);
        } catch (...) {
          item.error = std::current_exception();
        }
        const bool failed = bool(item.error);
        if (!queues_[size_t(w)]->push(std::move(item)) || failed) return;
      }
    });
  }
}

std::optional<Batch> DataLoader::next() {
  FUNDUS_CHECK(epoch_ >= 0, "DataLoader::next: call start_epoch() first");
  const int64_t nb = int64_t(plan_.size());
  if (cursor_ >= nb) return std::nullopt;
  auto& queue = *queues_[size_t((cursor_ - first_) % int64_t(queues_.size()))];
  std::optional<Item> item = queue.pop();
  FUNDUS_CHECK(item.has_value(), "DataLoader: internal error (worker queue closed early)");
  if (item->error) {
    cursor_ = nb;  // the epoch ends here; start_epoch() may retry
    stop_workers();
    std::rethrow_exception(item->error);
  }
  if (++cursor_ == nb) stop_workers();  // every worker has finished its share
  return std::move(item->batch);
}

cv::Mat DataLoader::load_image(int64_t index, int64_t position) const {
  const CaseRecord& r = dataset_.records[size_t(index)];
  cv::Mat image;
  try {
    image = cache_ ? cache_->load(r.image_path) : preprocess_fundus_file(r.image_path, options_.preprocess).image;
    if (options_.augment) {
      Rng rng(
          Rng::derive(Rng::derive(Rng::derive(options_.seed, kAugmentStream), uint64_t(epoch_)), uint64_t(position)));
      image = augment_image(image, options_.augmentation, rng);
    }
  } catch (const Error& e) {
    FUNDUS_THROW(e.message() << " (case '" << r.id << "')");
  } catch (const std::exception& e) {
    FUNDUS_THROW(r.image_path << ": " << e.what() << " (case '" << r.id << "')");
  }
  return image;
}

Batch DataLoader::build_batch(int64_t b) const {
  const std::vector<int64_t>& planned = plan_[size_t(b)];
  // This shard's rows of the planned batch; `first` keeps their positions (and so their augmentation).
  const auto [first, last] = shard_range(int64_t(planned.size()), options_.shard_index, options_.shard_count);
  const std::vector<int64_t> idx(planned.begin() + first, planned.begin() + last);
  const int64_t n = int64_t(idx.size()), side = options_.preprocess.size, stride = 3 * side * side;
  Batch out;
  out.epoch = epoch_;
  out.batch = b;
  out.indices = idx;
  out.images =
      torch::empty({n, 3, side, side}, torch::TensorOptions(torch::kFloat32).pinned_memory(options_.pin_memory));
  out.grades = torch::empty({n}, torch::TensorOptions(torch::kInt64).pinned_memory(options_.pin_memory));
  float* pixels = out.images.data_ptr<float>();
  int64_t* grades = out.grades.data_ptr<int64_t>();
  for (int64_t i = 0; i < n && !stop_; ++i) {
    const CaseRecord& r = dataset_.records[size_t(idx[size_t(i)])];
    image_to_chw(load_image(idx[size_t(i)], b * options_.sampler.batch_size + first + i), pixels + i * stride,
                 options_.normalization);
    grades[i] = r.grade;
    out.ids.push_back(r.id);
  }
  return out;
}

}  // namespace fundus

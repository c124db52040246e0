#include "fundus/train/feature_cache.h"

#include <cstring>
#include <memory>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"
#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/core/progress.h"
#include "fundus/core/rng.h"
#include "fundus/data/augment.h"
#include "fundus/data/preprocess.h"
#include "fundus/data/preprocess_cache.h"
#include "fundus/infer/tensor.h"
#include "fundus/model/device.h"

namespace fundus {

namespace {

constexpr char kMagic[] = "FNDFEAT1";
constexpr uint32_t kVersion = 1;
constexpr uint64_t kCopyStream = 0xFEA7C0;

// Everything the frozen stages' output depends on, besides the image and the copy index.
std::string frozen_identity(RetrievalNetImpl& net, const RunConfig& c) {
  std::string weights;
  for (const auto& m : net.backbone->stage_modules(0, net.frozen_stages())) {
    for (const auto& p : m->named_parameters()) {
      torch::Tensor t = p.value().detach().to(torch::kFloat32).contiguous();
      weights.append(p.key()).append(reinterpret_cast<const char*>(t.data_ptr<float>()), size_t(t.numel()) * 4);
    }
    for (const auto& b : m->named_buffers()) {
      torch::Tensor t = b.value().detach().to(torch::kFloat64).contiguous();
      weights.append(b.key()).append(reinterpret_cast<const char*>(t.data_ptr<double>()), size_t(t.numel()) * 8);
    }
  }
  Json id = {{"format", kVersion},
             {"backbone", backbone_name(c.model.backbone)},
             {"frozen_stages", c.model.frozen_stages},
             {"imagenet_normalize", c.model.imagenet_normalize},
             {"views", c.model.attention == AttentionKind::mirror ? 3 : 1},
             {"preprocess", c.preprocess.to_json()},
             {"augment", c.train.augment ? c.augment.to_json() : Json("off")},
             {"seed", c.train.seed},
             {"weights", sha256_hex(weights)}};
  return sha256_hex(id.dump());
}

torch::Tensor read_entry(const std::string& path) {
  std::string payload = read_framed_file(path, kMagic, kVersion, "feature cache entry");
  BinaryReader in(payload, path);
  std::vector<int64_t> shape = in.get_array<int64_t>();
  std::vector<float> values = in.get_array<float>();
  FUNDUS_CHECK(shape.size() == 4 && in.at_end(), path << ": not a feature cache entry");
  int64_t n = 1;
  for (int64_t s : shape) {
    FUNDUS_CHECK(s > 0 && s < (1 << 20), path << ": bad shape");
    n *= s;
  }
  FUNDUS_CHECK(n == int64_t(values.size()), path << ": shape and data disagree");
  return torch::from_blob(values.data(), shape, torch::kFloat32).clone();
}

void write_entry(const std::string& path, const torch::Tensor& f) {
  torch::Tensor t = f.to(torch::kFloat32).contiguous();
  BinaryWriter out;
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  out.put_array(shape.data(), shape.size());
  out.put_array(t.data_ptr<float>(), size_t(t.numel()));
  write_framed_file(path, kMagic, kVersion, out.bytes());
}

}  // namespace

FeatureCache::FeatureCache(RetrievalNetImpl& net, const Dataset& dataset, const RunConfig& c, bool progress) {
  FUNDUS_CHECK(c.train.feature_cache >= 1, "train.feature_cache: " << c.train.feature_cache << " copies; must be >= 1");
  // Un-augmented copies are identical, and epoch e reads copy e % copies: more copies than epochs
  // would never be read.
  const int copies = c.train.augment ? std::min(c.train.feature_cache, std::max(1, c.train.epochs)) : 1;
  FUNDUS_CHECK(net.frozen_stages() > 0, "train.feature_cache needs model.frozen_stages > 0 (nothing to cache)");
  const int64_t n = int64_t(dataset.size());
  FUNDUS_CHECK(n > 0, "feature cache: no images");
  const int threads = c.train.workers > 0 ? c.train.workers : available_cores();
  const torch::Device device = module_device(net);  // the cache itself stays in CPU memory

  std::vector<std::string> hashes(static_cast<size_t>(n));
  parallel_for(n, threads, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hashes[size_t(i)] = sha256_file(dataset.records[size_t(i)].image_path);
  });
  std::string dir;
  if (!c.train.feature_cache_dir.empty()) {
    dir = join_path(c.train.feature_cache_dir, frozen_identity(net, c).substr(0, 20));
    make_dirs(dir);
  }
  auto entry_path = [&](int64_t i, int m) {
    return join_path(dir, hashes[size_t(i)].substr(0, 32) + "_" + std::to_string(m) + ".feat");
  };

  std::unique_ptr<PreprocessCache> images;
  if (!c.train.cache_dir.empty()) images = std::make_unique<PreprocessCache>(c.train.cache_dir, c.preprocess);
  std::unique_ptr<Progress> bar;
  if (progress) bar = std::make_unique<Progress>("feature cache", n * copies, "img");
  constexpr int64_t kBatch = 32;
  for (int m = 0; m < copies; ++m) {
    torch::Tensor all;
    std::vector<int64_t> missing;
    for (int64_t i = 0; i < n; ++i) {
      if (!dir.empty() && file_exists(entry_path(i, m))) {
        try {
          torch::Tensor f = read_entry(entry_path(i, m));
          if (!all.defined()) all = torch::empty({n, f.size(0), f.size(1), f.size(2), f.size(3)}, torch::kFloat32);
          FUNDUS_CHECK(f.sizes() == all.sizes().slice(1), entry_path(i, m) << ": shape differs from the other entries");
          all[i].copy_(f);
          ++loaded_;
          if (bar) bar->advance(1);
          continue;
        } catch (const Error&) {
          // damaged or foreign entry: recompute and replace it
        }
      }
      missing.push_back(i);
    }
    for (size_t start = 0; start < missing.size(); start += kBatch) {
      const size_t count = std::min<size_t>(kBatch, missing.size() - start);
      std::vector<cv::Mat> pixels(count);
      parallel_for(int64_t(count), threads, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) {
          const int64_t i = missing[start + size_t(k)];
          const std::string& path = dataset.records[size_t(i)].image_path;
          cv::Mat img = images ? images->load(path) : preprocess_fundus_file(path, c.preprocess).image;
          if (c.train.augment) {
            uint64_t h = 0;
            std::memcpy(&h, hashes[size_t(i)].data(), sizeof(h));  // 8 hex characters of the content hash
            Rng rng(Rng::derive(Rng::derive(c.train.seed, kCopyStream + uint64_t(m)), h));
            img = augment_image(img, c.augment, rng);
          }
          pixels[size_t(k)] = img;
        }
      });
      torch::Tensor f;
      {
        c10::InferenceMode guard;
        f = net.frozen_features(images_to_tensor(pixels, Normalization::none()).to(device)).to(torch::kCPU);
      }
      const int64_t b = int64_t(count), views = f.size(0) / b;
      // [views*B, C, h, w] -> [B, views, C, h, w]
      f = f.contiguous().view({views, b, f.size(1), f.size(2), f.size(3)}).transpose(0, 1).contiguous();
      if (!all.defined()) all = torch::empty({n, views, f.size(2), f.size(3), f.size(4)}, torch::kFloat32);
      for (int64_t k = 0; k < b; ++k) {
        const int64_t i = missing[start + size_t(k)];
        all[i].copy_(f[k]);
        if (!dir.empty()) write_entry(entry_path(i, m), f[k]);
      }
      if (bar) bar->advance(b);
    }
    copies_.push_back(all);
  }
  if (bar) bar->finish();
}

torch::Tensor FeatureCache::batch(const std::vector<int64_t>& indices, int copy, bool channels_last) const {
  FUNDUS_CHECK(copy >= 0 && copy < copies(), "feature cache: copy " << copy << " outside 0.." << copies() - 1);
  const torch::Tensor& all = copies_[size_t(copy)];
  torch::Tensor f = all.index_select(0, torch::tensor(indices, torch::kInt64));  // [B, views, C, h, w]
  const int64_t b = f.size(0);
  f = f.transpose(0, 1).reshape({f.size(1) * b, f.size(2), f.size(3), f.size(4)});
  return channels_last ? f.contiguous(torch::MemoryFormat::ChannelsLast) : f.contiguous();
}

int64_t FeatureCache::bytes() const {
  int64_t total = 0;
  for (const auto& c : copies_) total += c.numel() * int64_t(sizeof(float));
  return total;
}

}  // namespace fundus

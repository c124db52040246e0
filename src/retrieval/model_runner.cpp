#include "fundus/retrieval/model_runner.h"

#include <cstring>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/infer/embed.h"
#include "fundus/infer/tensor.h"
#include "fundus/model/device.h"
#include "fundus/model/runtime.h"

namespace fundus {

struct ModelRunner::Impl {
  TrainedModel model;
};

ModelRunner::ModelRunner() : impl_(std::make_unique<Impl>()) {}

ModelRunner::ModelRunner(const std::string& checkpoint_path, const std::string& device)
    : impl_(std::make_unique<Impl>()) {
  const torch::Device target(resolve_device(device));  // before the (slow) load: a missing GPU fails at once
  FUNDUS_CHECK(file_exists(checkpoint_path), checkpoint_path << ": checkpoint not found");
  impl_->model = load_trained_model(checkpoint_path);
  if (!target.is_cpu()) impl_->model.net->to(target);
}

ModelRunner::~ModelRunner() = default;

std::unique_ptr<ModelRunner> ModelRunner::clone() const {
  std::unique_ptr<ModelRunner> copy(new ModelRunner());
  const TrainedModel& src = impl_->model;
  TrainedModel& dst = copy->impl_->model;
  dst.config = src.config;
  dst.checkpoint_path = src.checkpoint_path;
  dst.checkpoint_sha256 = src.checkpoint_sha256;
  dst.meta = src.meta;
  dst.net = RetrievalNet(src.config.model, /*load_weights=*/false);
  load_into(*dst.net, module_state_dict(*src.net));
  if (src.net->channels_last()) dst.net->use_channels_last(true);
  dst.net->to(module_device(*src.net));
  dst.net->eval();
  return copy;
}

const RunConfig& ModelRunner::config() const { return impl_->model.config; }
int ModelRunner::descriptor_dim() const { return int(impl_->model.net->descriptor_dim()); }
const std::string& ModelRunner::checkpoint_path() const { return impl_->model.checkpoint_path; }
const std::string& ModelRunner::checkpoint_sha256() const { return impl_->model.checkpoint_sha256; }
const Json& ModelRunner::meta() const { return impl_->model.meta; }
RetrievalNetImpl& ModelRunner::net() { return *impl_->model.net; }
std::string ModelRunner::device() const { return module_device(*impl_->model.net).str(); }

std::string ModelRunner::display_name() const {
  std::string path = checkpoint_path();
  auto base = [](const std::string& p) {
    size_t slash = p.find_last_of('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
  };
  std::string file = base(path), dir = parent_dir(path);
  std::string stem = file.substr(0, file.rfind('.') == std::string::npos ? file.size() : file.rfind('.'));
  if (base(dir) == "checkpoints") dir = parent_dir(dir);  // RUN/checkpoints/best.ckpt -> RUN/best
  return dir.empty() ? stem : base(dir) + "/" + stem;
}

std::vector<float> ModelRunner::embed(const std::vector<cv::Mat>& images) {
  FUNDUS_CHECK(!images.empty(), "embed: no images");
  const int size = input_size();
  for (const cv::Mat& m : images)
    FUNDUS_CHECK(m.type() == CV_8UC3 && m.rows == size && m.cols == size,
                 "embed: expected preprocessed RGB images of " << size << "x" << size << ", got " << m.cols << "x"
                                                               << m.rows << " type " << m.type());
  // [0,1] input: the network applies its own ImageNet normalisation (as the data loader's embedding path).
  torch::Tensor d = embed_batch(net(), images_to_tensor(images, Normalization::none()));
  std::vector<float> out(size_t(d.numel()));
  std::memcpy(out.data(), d.data_ptr<float>(), out.size() * sizeof(float));
  return out;
}

std::vector<float> ModelRunner::embed(const cv::Mat& image) { return embed(std::vector<cv::Mat>{image}); }

Explanation ModelRunner::explain(const cv::Mat& preprocessed, const ExplainOptions& options,
                                 const std::vector<float>& reference) {
  return explain_image(net(), preprocessed, options, reference);
}

}  // namespace fundus

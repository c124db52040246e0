// A trained retrieval model loaded from a checkpoint, behind a torch-free interface: the CLI, the
// search engine and the server call it without including LibTorch.
//
//   ModelRunner model("run/checkpoints/best.ckpt");
//   cv::Mat x = preprocess_fundus_file("a.jpg", model.preprocess()).image;
//   std::vector<float> d = model.embed(x);                    // descriptor_dim() floats, unit norm
//   Explanation e = model.explain(x);                          // attention map (explain.h)
//
// Descriptors are those of embed_batch (fundus/infer/embed.h): eval mode, inference mode, [0,1] input
// (the network normalises itself), so a case embedded here and one embedded by the data loader
// agree to float rounding (bit-identical for the same batch composition and thread count).
//
// Thread safety: NOT thread-safe; one call at a time per instance. For concurrent inference make
// replicas with clone() (the search engine guards each replica with a mutex).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "fundus/core/json.h"
#include "fundus/infer/run_config.h"
#include "fundus/retrieval/explain.h"

namespace fundus {

class ModelRunner {
 public:
  /// Loads the checkpoint (load_trained_model) onto `device` (cpu | cuda | auto, resolve_device);
  /// throws naming the file when it is missing, corrupt or does not fit its own config, and in one
  /// line when cuda is asked for without a CUDA device.
  explicit ModelRunner(const std::string& checkpoint_path, const std::string& device = "cpu");
  ~ModelRunner();
  ModelRunner(const ModelRunner&) = delete;
  ModelRunner& operator=(const ModelRunner&) = delete;

  /// An independent copy of the same weights on the same device (no file access).
  std::unique_ptr<ModelRunner> clone() const;

  const RunConfig& config() const;
  const PreprocessOptions& preprocess() const { return config().preprocess; }
  int input_size() const { return config().model.input_size; }
  int descriptor_dim() const;
  const std::string& checkpoint_path() const;
  const std::string& checkpoint_sha256() const;
  const Json& meta() const;
  /// "run/best" for "run/checkpoints/best.ckpt", else the file stem with its folder.
  std::string display_name() const;

  /// Descriptors of preprocessed images (RGB CV_8UC3, input_size square): row-major [n x dim].
  std::vector<float> embed(const std::vector<cv::Mat>& preprocessed);
  std::vector<float> embed(const cv::Mat& preprocessed);

  Explanation explain(const cv::Mat& preprocessed, const ExplainOptions& options = {},
                      const std::vector<float>& reference = {});

  /// "cpu" or "cuda:0".
  std::string device() const;
  /// The underlying network (torch users only: include fundus/model/retrieval_net.h).
  RetrievalNetImpl& net();

 private:
  ModelRunner();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fundus

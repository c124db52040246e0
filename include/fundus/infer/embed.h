// Inference: trained models loaded from checkpoints, and descriptors for whole datasets (in one
// process, or sharded over the ranks of a distributed run). Used by the trainer (validation), the
// model runner behind search and serving (retrieval/model_runner.h) and evaluation; it links no
// training code.
//
// Determinism: eval mode (BatchNorm running statistics), c10::InferenceMode, deterministic mirror
// views, no augmentation: the same image always gives the same vector (bit-identical for the same
// build, thread count and batch composition; within float rounding across batch sizes).
#pragma once

#include <string>
#include <vector>

#include "fundus/core/case.h"
#include "fundus/infer/communicator.h"
#include "fundus/infer/run_config.h"
#include "fundus/model/retrieval_net.h"

namespace fundus {

struct TrainedModel {
  RetrievalNet net{nullptr};  // eval mode
  RunConfig config;           // the resolved config the model was trained with
  std::string checkpoint_path;
  std::string checkpoint_sha256;
  Json meta;  // the checkpoint's meta (epoch, best metric, ...)
};

/// Loads a checkpoint written by the trainer (or `fundus model export`); throws naming the file when
/// it is truncated, foreign or does not fit the architecture in its own config.
TrainedModel load_trained_model(const std::string& checkpoint_path);

/// Descriptor matrix, row-major [rows x dim].
struct Embeddings {
  int64_t rows = 0, dim = 0;
  std::vector<float> data;
  const float* row(int64_t i) const { return data.data() + i * dim; }
};

struct EmbedOptions {
  int64_t batch_size = kInferenceBatch;
  int workers = 2;        // decode/preprocess threads overlapping inference (0 = all cores)
  std::string cache_dir;  // preprocessed-image cache, "" = none
  bool progress = true;
  std::string label = "embed";
};

/// Embeds every record of `dataset` in order. Throws naming the file of an unreadable image.
Embeddings embed_dataset(RetrievalNetImpl& net, const PreprocessOptions& preprocess, const Dataset& dataset,
                         const EmbedOptions& options = {});

/// Descriptors of an already preprocessed batch [B,3,H,W] in [0,1] (any device: moved to the
/// model's): [B,D] float32, CPU.
torch::Tensor embed_batch(RetrievalNetImpl& net, const torch::Tensor& images);

/// embed_dataset() with the rows split across the ranks (contiguous shards) and gathered: every
/// rank returns the descriptors of the whole dataset, in order. The model must be in eval mode.
Embeddings embed_dataset_sharded(Communicator& comm, RetrievalNetImpl& net, const PreprocessOptions& preprocess,
                                 const Dataset& dataset, const EmbedOptions& options = {});

}  // namespace fundus

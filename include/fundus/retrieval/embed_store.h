// Embedding a case store with a trained model (`fundus embed`): register the model, embed the cases
// that have no vector for it yet, refresh the vector index file.
//
// Resumable: only cases without a vector are embedded, and vectors are committed every
// `commit_every` images (one transaction each), so an interrupted run keeps what it committed and a
// second run embeds nothing. Decode/preprocess runs in DataLoader worker threads overlapping
// inference. Deterministic: the same image gives the same vector (see model_runner.h).
//
// Thread safety: the functions may run concurrently with readers of the store; two embedders of the
// same store and model would embed the same cases twice (the second write replaces the first).
// Errors (fundus::Error): an unreadable image names the file and case id; what was committed stays.
#pragma once

#include <cstdint>
#include <string>

#include "fundus/core/json.h"
#include "fundus/eval/descriptor_health.h"
#include "fundus/infer/launcher.h"
#include "fundus/infer/run_config.h"
#include "fundus/store/case_store.h"

namespace fundus {

class ModelRunner;

/// Registers `model` in the store (idempotent: the same checkpoint and preprocessing give the same
/// id): name = display_name(), config = the resolved run config, checkpoint sha256, preprocessing
/// JSON, descriptor dim.
int64_t register_model(CaseStore& store, const ModelRunner& model);

/// "<store_path>.model<id>.index": where the engine and `fundus embed` keep a model's index.
std::string default_index_path(const std::string& store_path, int64_t model_id);

struct EmbedStoreOptions {
  std::string splits;  // comma-separated split filter ("train,val"); "" = every case
  int64_t batch_size = kInferenceBatch;
  int workers = 2;             // decode/preprocess threads (0 = all cores)
  std::string cache_dir;       // preprocessed-image cache, "" = none
  int64_t commit_every = 256;  // images per transaction (rounded up to whole batches)
  int64_t limit = 0;           // stop after this many images (0 = all): partial runs and tests
  bool progress = true;
  bool build_index = true;  // refresh the index file afterwards
  std::string index_path;   // "" = default_index_path
  std::string index_spec = "exact";
  int threads = 0;                 // index build threads (0 = all cores)
  std::string precision = "fp32";  // fp32 | bf16 | fp16: CUDA autocast for inference (model/device.h)
};

struct EmbedStoreResult {
  int64_t model_id = 0;
  int64_t embedded = 0;   // vectors written by this run
  int64_t already = 0;    // selected cases that had a vector before
  int64_t remaining = 0;  // selected cases still without one (limit reached)
  double seconds = 0;     // embedding time
  double images_per_second = 0;
  std::string index_path;  // "" when build_index is off
  std::string index_spec;  // describe() of the index
  int64_t index_size = 0;
  bool index_rebuilt = false;
  DescriptorHealth health;  // of all the model's vectors, recorded in the store (gallery_health.h)

  Json to_json() const;
  std::string summary() const;  // one readable line
};

EmbedStoreResult embed_store(CaseStore& store, ModelRunner& model, const EmbedStoreOptions& options = {});

/// embed_store() by the ranks of a distributed run (`fundus embed --nproc N`, or several machines,
/// infer/launcher.h; `world` is this process's place, the process group is made here): rank 0 alone opens the store at
/// `store_path` and selects the cases; every rank embeds a contiguous share; rank 0 receives all vectors and writes
/// them (commit_every rows per transaction, one writer: one consistent store, also across machines), then refreshes the
/// index. Only rank 0's machine needs the store; every machine needs the checkpoint and the images at the same paths.
/// Returns the run's result on rank 0 and this rank's share (embedded, seconds) elsewhere. Every rank must call it with
/// the same options. A rank that fails makes the others fail (no hang); what rank 0 committed stays, and running the
/// command again embeds the rest.
EmbedStoreResult embed_store_distributed(const std::string& store_path, ModelRunner& model,
                                         const DistributedOptions& world, const EmbedStoreOptions& options = {});

}  // namespace fundus

// The outputs of a model's frozen backbone stages (model_config.h frozen_stages), computed once for
// `copies` augmented copies of every training image (train.feature_cache) and kept in memory: each
// training step then runs only the trainable rest of the network (RetrievalNet::forward_from_frozen),
// with no image decoding, augmentation or frozen-stage compute on the critical path.
//
// Copy m of an image is its preprocessed pixels augmented (train.augment / the "augment" section)
// with Rng(derive(derive(seed, m), content hash of the file)): a pure function of the image, so the
// same image gets the same copies in every fold of a cross-validation and in every run with the same
// seed. Epoch e of training uses copy e % copies, and no more copies than epochs are built. With a
// cache folder (train.feature_cache_dir) every (image, copy) entry is also stored on disk, keyed by
// the frozen stages' weights, the preprocessing, the augmentation, the seed and the image bytes
// (framed files: magic, version, checksum; a damaged entry is recomputed), so recipes that share
// the frozen part, and the folds of `fundus cv`, compute it once. Memory: copies x images x views x
// C x h x w floats (MobileNetV2 at 224 px frozen through stage 14: 3 x 160 x 7 x 7 x 4 B = 94 kB per
// image and copy).
// Distributed training: every rank builds the cache of the whole training set (each epoch's global
// batches touch every row, and a rank's slices of them differ from epoch to epoch).
// The cache lives in CPU memory whatever the model's device; batch() is copied to it per step.
// Not thread-safe; built and used by the trainer's thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "fundus/core/case.h"
#include "fundus/infer/run_config.h"
#include "fundus/model/retrieval_net.h"

namespace fundus {

class FeatureCache {
 public:
  /// Builds (or loads) config.train.feature_cache copies of every image of `dataset`, with the
  /// preprocessing, augmentation, seed, image cache and workers of `config`. Throws naming the image
  /// for an unreadable file, and for a model without frozen stages.
  FeatureCache(RetrievalNetImpl& net, const Dataset& dataset, const RunConfig& config, bool progress = true);

  /// Features of dataset rows `indices` from copy `copy`, views-major like frozen_features():
  /// [views * B, C, h, w] float32 (channels-last when `channels_last`).
  torch::Tensor batch(const std::vector<int64_t>& indices, int copy, bool channels_last) const;
  int copies() const { return int(copies_.size()); }
  int64_t bytes() const;
  int64_t loaded_from_disk() const { return loaded_; }  // entries found in the cache folder

 private:
  std::vector<torch::Tensor> copies_;  // each [N, views, C, h, w]
  int64_t loaded_ = 0;
};

}  // namespace fundus

// The outputs of a model's frozen backbone stages (model_config.h frozen_stages), computed once for
// `copies` augmented copies of every training image and kept in memory (train.feature_cache): each
// training step then runs only the trainable rest of the network (RetrievalNet::forward_from_frozen),
// with no image decoding, augmentation or frozen-stage compute on the critical path.
//
// Copy m of image i is the image exactly as an augmenting loader with a sequential sampler delivers
// it in epoch m (data/loader.h: Rng per (seed, m, i)); epoch e of training uses copy e % copies. So
// the cache is a pure function of (model weights, data, preprocessing, augmentation, seed): a resumed
// run rebuilds the same one. Memory: copies x images x views x C x h x w floats (MobileNetV2 at 224
// px frozen through stage 14: 3 x 160 x 7 x 7 x 4 B = 94 kB per image and copy).
// Distributed training: every rank builds the cache of the whole training set (each epoch's global
// batches touch every row, and a rank's slices of them differ from epoch to epoch).
// The cache lives in CPU memory whatever the model's device; batch() is copied to it per step.
// Not thread-safe; built and used by the trainer's thread.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "fundus/data/dataset.h"
#include "fundus/data/loader.h"
#include "fundus/model/retrieval_net.h"

namespace fundus {

class FeatureCache {
 public:
  /// `loading`: preprocessing, augmentation, normalisation, workers, cache dir and seed of the
  /// training loader (its sampler is replaced by a sequential one). Throws for copies < 1 or a model
  /// without frozen stages.
  FeatureCache(RetrievalNetImpl& net, const Dataset& dataset, const LoaderOptions& loading, int copies,
               bool progress = true);

  /// Features of dataset rows `indices` from copy `copy`, views-major like frozen_features():
  /// [views * B, C, h, w] float32 (channels-last when `channels_last`).
  torch::Tensor batch(const std::vector<int64_t>& indices, int copy, bool channels_last) const;
  int copies() const { return int(copies_.size()); }
  int64_t bytes() const;

 private:
  std::vector<torch::Tensor> copies_;  // each [N, views, C, h, w]
  int64_t views_ = 1;
};

}  // namespace fundus

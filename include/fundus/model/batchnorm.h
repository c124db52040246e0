// "Precise BatchNorm": recompute every BatchNorm layer's running statistics as the plain average
// over a set of un-augmented batches, after training and before any evaluation-mode use.
//
// Why: running statistics are an exponential average (momentum 0.1) of the batch statistics seen
// while the weights were still changing. After a few dozen steps from random initialisation they
// still hold ~0.9^steps of their initial values (mean 0, variance 1), which for MobileNetV2's
// depthwise convolutions is 9-47x the true variance: every eval-mode descriptor collapses onto
// one vector. Even after long training they describe augmented images and stale weights. Wu &
// Johnson ("Rethinking BatchNorm", 2021) recompute them with the final weights; so do we.
//
//   recalibrate_batchnorm(net, [&] { return next_batch_or_undefined(); });
//
// The model runs its normal forward (RetrievalNet: all three mirror views in one batch, exactly as
// in eval mode) in training mode without gradients; every BatchNorm1d/2d layer that training mode
// trains (frozen backbone stages keep their pretrained statistics) is reset and switched to a
// cumulative average (momentum = none) for the pass, then restored. Layers and
// parameters are untouched; the module is left in eval mode. Not thread-safe (one model, one
// caller). Throws fundus::Error when `next_batch` yields no images at all.
#pragma once

#include <cstdint>
#include <functional>

#include <torch/torch.h>

#include "fundus/model/retrieval_net.h"

namespace fundus {

struct BatchNormRecalibration {
  int64_t layers = 0;   // BatchNorm layers recalibrated
  int64_t batches = 0;  // forward passes
  int64_t images = 0;   // input images (each seen in its three views by a mirror model)
};

/// `next_batch` returns [B,3,H,W] network inputs, or an undefined tensor when done.
BatchNormRecalibration recalibrate_batchnorm(RetrievalNetImpl& net, const std::function<torch::Tensor()>& next_batch);

/// Number of BatchNorm1d/2d layers in a module (0 = nothing to recalibrate).
int64_t count_batchnorm_layers(torch::nn::Module& module);

}  // namespace fundus

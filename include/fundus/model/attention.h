// Attention modules of the method (docs: ../shared/docs/method.md section 2).
//
// SpatialAttention (2.2): s = sigmoid(conv3x3(2->1, pad 1, no bias)([mean_c(x); max_c(x)])), x * s.
//   x [B,C,H,W] -> same shape. Parameter: "conv.weight" [1,2,3,3] (LibTorch default init).
//
// MirrorAttention (2.4), reduction k (C' = C/k), N = H*W, every 1x1 conv with bias:
//   F_a, F_h, F_v = theta_{a,h,v}(X_{a,h,v})        conv1x1(C->C') + BN + ReLU, [B,C',N]
//   S_h = F_h^T F_a / sqrt(C')                      [B,N,N], row i = mirrored position, column j = original
//   literal  (default): A_h = softmax over j (last axis); O_h[:, j] = sum_i A_h[i,j] G_h[:, i]
//   standard          : O_h[:, j] = sum_i softmax_i(S_h)[i,j] G_h[:, i] (a convex combination)
//   G_h = g_h(X_a) (values from the ORIGINAL view), conv1x1(C->C')
//   Y_h = W_h(O_h) + X_a, W_h conv1x1(C'->C); the v branch likewise.
//   Init: theta and g Kaiming-normal (fan_in, gain sqrt 2) with zero bias, BN weight 1 / bias 0,
//   W_h and W_v weight AND bias zero: the block starts as the identity (Y_h = Y_v = X_a).
//   Names: theta_a.0 (conv), theta_a.1 (bn), theta_h.*, theta_v.*, g_h, g_v, w_h, w_v.
//   Attention maps (with_attention): the score each ORIGINAL position j receives, sum_i A[i,j] with A
//   the row softmax above (also for `standard`, whose own weights sum to 1 over i for every j and
//   would give a flat map), [B,H,W].
//
// SelfAttention (the ablation: a non-local block on X_a): theta, phi, g conv1x1(C->C') with bias,
//   A = softmax_rows(theta^T phi / sqrt(C')), O[:, i] = sum_j A[i,j] g[:, j] (a convex combination),
//   Y = W(O) + X with W conv1x1(C'->C) zero-initialised (identity at init). Map: column sums of A.
//
// All forward()s accept float32 or float64 on any device; modules are not thread-safe.
#pragma once

#include <string>

#include <torch/torch.h>

#include "fundus/model/model_config.h"  // Aggregation
#include "fundus/model/sync_batchnorm.h"

namespace fundus {

class SpatialAttentionImpl : public torch::nn::Module {
 public:
  SpatialAttentionImpl();
  torch::Tensor forward(const torch::Tensor& x);
  /// The attention map s [B,1,H,W] in (0,1).
  torch::Tensor scores(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(SpatialAttention);

struct MirrorAttentionOutput {
  torch::Tensor y_h, y_v;                  // [B,C,H,W]
  torch::Tensor attention_h, attention_v;  // [B,H,W] when requested, else undefined
};

/// conv1x1 + BN + ReLU (names "0", "1"): the theta embedding of the mirror block.
class ConvBNReLUImpl : public torch::nn::Module {
 public:
  ConvBNReLUImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
  SyncBatchNorm2d bn{nullptr};
};
TORCH_MODULE(ConvBNReLU);

class MirrorAttentionImpl : public torch::nn::Module {
 public:
  MirrorAttentionImpl(int64_t channels, int64_t reduction = 2, Aggregation aggregation = Aggregation::literal);
  /// x_a, x_h, x_v: [B,C,H,W] feature maps of the original, width-flipped and height-flipped views.
  MirrorAttentionOutput forward(const torch::Tensor& x_a, const torch::Tensor& x_h, const torch::Tensor& x_v,
                                bool with_attention = false);
  int64_t inner_channels() const { return inner_; }
  Aggregation aggregation() const { return aggregation_; }

  ConvBNReLU theta_a{nullptr}, theta_h{nullptr}, theta_v{nullptr};
  torch::nn::Conv2d g_h{nullptr}, g_v{nullptr}, w_h{nullptr}, w_v{nullptr};

 private:
  int64_t inner_;
  Aggregation aggregation_;
};
TORCH_MODULE(MirrorAttention);

struct SelfAttentionOutput {
  torch::Tensor y;          // [B,C,H,W]
  torch::Tensor attention;  // [B,H,W] when requested
};

class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(int64_t channels, int64_t reduction = 2);
  SelfAttentionOutput forward(const torch::Tensor& x, bool with_attention = false);
  torch::nn::Conv2d theta{nullptr}, phi{nullptr}, g{nullptr}, w{nullptr};

 private:
  int64_t inner_;
};
TORCH_MODULE(SelfAttention);

}  // namespace fundus

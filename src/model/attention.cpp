#include "fundus/model/attention.h"

#include <cmath>

#include "fundus/core/error.h"

namespace fundus {

namespace {

torch::nn::Conv2d conv1x1(int64_t in, int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).bias(true));
}

void kaiming(torch::nn::Conv2d& conv) {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanIn, torch::kReLU);
  conv->bias.zero_();
}

void zero(torch::nn::Conv2d& conv) {
  torch::NoGradGuard no_grad;
  conv->weight.zero_();
  conv->bias.zero_();
}

int64_t reduced_channels(int64_t channels, int64_t reduction) {
  FUNDUS_CHECK(reduction >= 1 && channels % reduction == 0,
               "attention reduction " << reduction << " must divide the " << channels << " feature channels");
  return channels / reduction;
}

// [B,C,H,W] -> [B,C,N]
torch::Tensor flat(const torch::Tensor& x) { return x.flatten(2); }

}  // namespace

SpatialAttentionImpl::SpatialAttentionImpl()
    : conv(register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 1, 3).padding(1).bias(false)))) {}

torch::Tensor SpatialAttentionImpl::scores(const torch::Tensor& x) {
  return torch::sigmoid(conv(torch::cat({x.mean(1, true), x.amax(1, true)}, 1)));
}

torch::Tensor SpatialAttentionImpl::forward(const torch::Tensor& x) { return x * scores(x); }

ConvBNReLUImpl::ConvBNReLUImpl(int64_t in, int64_t out)
    : conv(register_module("0", conv1x1(in, out))), bn(register_module("1", SyncBatchNorm2d(out))) {
  kaiming(conv);
}

torch::Tensor ConvBNReLUImpl::forward(const torch::Tensor& x) { return bn(conv(x)).relu_(); }

MirrorAttentionImpl::MirrorAttentionImpl(int64_t channels, int64_t reduction, Aggregation aggregation)
    : inner_(reduced_channels(channels, reduction)), aggregation_(aggregation) {
  theta_a = register_module("theta_a", ConvBNReLU(channels, inner_));
  theta_h = register_module("theta_h", ConvBNReLU(channels, inner_));
  theta_v = register_module("theta_v", ConvBNReLU(channels, inner_));
  g_h = register_module("g_h", conv1x1(channels, inner_));
  g_v = register_module("g_v", conv1x1(channels, inner_));
  w_h = register_module("w_h", conv1x1(inner_, channels));
  w_v = register_module("w_v", conv1x1(inner_, channels));
  kaiming(g_h);
  kaiming(g_v);
  zero(w_h);
  zero(w_v);
}

MirrorAttentionOutput MirrorAttentionImpl::forward(const torch::Tensor& x_a, const torch::Tensor& x_h,
                                                   const torch::Tensor& x_v, bool with_attention) {
  FUNDUS_CHECK(x_a.dim() == 4 && x_a.sizes() == x_h.sizes() && x_a.sizes() == x_v.sizes(),
               "mirror attention: the three views need equal [B,C,H,W] shapes, got "
                   << x_a.sizes() << ", " << x_h.sizes() << ", " << x_v.sizes());
  const double scale = 1.0 / std::sqrt(static_cast<double>(inner_));
  torch::Tensor f_a = flat(theta_a(x_a));  // [B,C',N]
  MirrorAttentionOutput out;
  auto branch = [&](ConvBNReLU& theta, torch::nn::Conv2d& g, torch::nn::Conv2d& w, const torch::Tensor& x_m,
                    torch::Tensor& attention) {
    torch::Tensor s = torch::bmm(flat(theta(x_m)).transpose(1, 2), f_a).mul_(scale);  // [B,N(i),N(j)]
    torch::Tensor rows = aggregation_ == Aggregation::literal || with_attention ? s.softmax(2) : torch::Tensor();
    torch::Tensor a = aggregation_ == Aggregation::literal ? rows : s.softmax(1);
    torch::Tensor o = torch::bmm(flat(g(x_a)), a);  // O[:, j] = sum_i G[:, i] A[i, j]
    if (with_attention) attention = rows.detach().sum(1).view({x_a.size(0), x_a.size(2), x_a.size(3)});
    return w(o.view({x_a.size(0), inner_, x_a.size(2), x_a.size(3)})) + x_a;
  };
  out.y_h = branch(theta_h, g_h, w_h, x_h, out.attention_h);
  out.y_v = branch(theta_v, g_v, w_v, x_v, out.attention_v);
  return out;
}

SelfAttentionImpl::SelfAttentionImpl(int64_t channels, int64_t reduction)
    : inner_(reduced_channels(channels, reduction)) {
  theta = register_module("theta", conv1x1(channels, inner_));
  phi = register_module("phi", conv1x1(channels, inner_));
  g = register_module("g", conv1x1(channels, inner_));
  w = register_module("w", conv1x1(inner_, channels));
  kaiming(theta);
  kaiming(phi);
  kaiming(g);
  zero(w);
}

SelfAttentionOutput SelfAttentionImpl::forward(const torch::Tensor& x, bool with_attention) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(inner_));
  torch::Tensor s = torch::bmm(flat(theta(x)).transpose(1, 2), flat(phi(x))).mul_(scale);  // [B,N(i),N(j)]
  torch::Tensor a = s.softmax(2);
  torch::Tensor o = torch::bmm(flat(g(x)), a.transpose(1, 2));  // O[:, i] = sum_j A[i,j] G[:, j]
  SelfAttentionOutput out;
  out.y = w(o.view({x.size(0), inner_, x.size(2), x.size(3)})) + x;
  if (with_attention) out.attention = a.detach().sum(1).view({x.size(0), x.size(2), x.size(3)});
  return out;
}

}  // namespace fundus

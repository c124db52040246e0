#include "fundus/model/pooling.h"

#include <cmath>

#include "fundus/core/error.h"

namespace fundus {

torch::Tensor gem_pool(const torch::Tensor& x, const torch::Tensor& p, double eps) {
  return x.clamp_min(eps).pow(p).mean({2, 3}).pow(p.reciprocal());
}

namespace {
torch::Tensor l2n(const torch::Tensor& v, double eps) { return v / (v.norm(2, 1, true) + eps); }
torch::Tensor region_max(const torch::Tensor& x, int64_t top, int64_t left, int64_t h, int64_t w) {
  return x.narrow(2, top, h).narrow(3, left, w).amax({2, 3});
}
}  // namespace

torch::Tensor rmac_pool(const torch::Tensor& x, int levels, double eps) {
  // Region grid of cirtorch's rmac(): square regions of side floor(2w/(l+1)) at level l, evenly
  // spaced; the longer side gets extra regions so that neighbours overlap by about 40%.
  const int64_t H = x.size(2), W = x.size(3), w = std::min(H, W);
  int64_t extra = 0;
  if (H != W) {
    double best = 1e30;
    for (int steps = 2; steps <= 7; ++steps) {
      double b = static_cast<double>(std::max(H, W) - w) / (steps - 1);
      double err = std::abs((static_cast<double>(w) * w - w * b) / (static_cast<double>(w) * w) - 0.4);
      if (err < best) best = err, extra = steps - 1;
    }
  }
  const int64_t Wd = W > H ? extra : 0, Hd = H > W ? extra : 0;
  torch::Tensor v = l2n(x.amax({2, 3}), eps);
  for (int l = 1; l <= levels; ++l) {
    int64_t wl = static_cast<int64_t>(std::floor(2.0 * w / (l + 1)));
    if (wl == 0) continue;
    int64_t wl2 = static_cast<int64_t>(std::floor(wl / 2.0 - 1));
    auto centres = [&](int64_t size, int64_t d) {
      std::vector<int64_t> c;
      double b = l + d == 1 ? 0.0 : static_cast<double>(size - wl) / (l + d - 1);
      for (int64_t i = 0; i < l + d; ++i) c.push_back(static_cast<int64_t>(std::floor(wl2 + i * b)) - wl2);
      return c;
    };
    for (int64_t top : centres(H, Hd))
      for (int64_t left : centres(W, Wd)) v = v + l2n(region_max(x, top, left, wl, wl), eps);
  }
  return v;
}

PoolingImpl::PoolingImpl(PoolingKind kind, double gem_p, double eps) : kind_(kind), eps_(eps) {
  if (kind == PoolingKind::gem) {
    FUNDUS_CHECK(gem_p > 0, "model.gem_p must be > 0, not " << gem_p);
    p = register_parameter("p", torch::full({1}, gem_p));
  }
}

torch::Tensor PoolingImpl::forward(const torch::Tensor& x) {
  switch (kind_) {
    case PoolingKind::gem:
      return gem_pool(x, p, eps_);
    case PoolingKind::avg:
      return x.mean({2, 3});
    case PoolingKind::max:
      return x.amax({2, 3});
    case PoolingKind::rmac:
      return rmac_pool(x, 3, eps_);
  }
  return {};
}

}  // namespace fundus

#include "fundus/model/sync_batchnorm.h"

#include "fundus/core/error.h"

namespace fundus {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

torch::Tensor per_channel(const torch::Tensor& v) { return v.view({1, -1, 1, 1}); }

// y = (x - mean) * invstd * weight + bias with global (mean, var) computed by the caller; the
// backward reduces its two per-channel sums over the ranks, as PyTorch's SyncBatchNorm does.
// Both directions use ATen's fused CPU BatchNorm kernels (PyTorch's own SyncBatchNorm kernels,
// batch_norm_stats/elemt/backward_reduce, exist only for CUDA): the forward is eval-mode batch_norm
// with the global statistics in place of the running ones (one pass over x), the local sums come from
// native_batch_norm_backward's weight and bias gradients (one pass over x and dy), and dx is two
// fused multiply-adds. Elementwise tensor expressions took ~5x more passes over the activations,
// which on a CPU made a 2-process step twice as slow as the 1-process one (docs/scaling.md).
struct SyncBatchNormFunction : torch::autograd::Function<SyncBatchNormFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, const torch::Tensor& mean, const torch::Tensor& var,
                               const torch::Tensor& invstd, double eps, double count, BatchNormSync* sync) {
    ctx->save_for_backward({x, weight, mean, invstd});
    ctx->saved_data["count"] = count;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["sync"] = int64_t(reinterpret_cast<intptr_t>(sync));
    return torch::batch_norm(x, weight, bias, mean, var, /*training=*/false, 0.0, eps, /*cudnn_enabled=*/false);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3];
    const double count = ctx->saved_data["count"].toDouble();
    auto* sync = reinterpret_cast<BatchNormSync*>(intptr_t(ctx->saved_data["sync"].toInt()));
    const torch::Tensor dy = grad_outputs[0].contiguous(x.suggest_memory_format());
    const int64_t c = mean.size(0);
    // Local sum(dy * x_hat) and sum(dy): the weight and bias gradients of a training-mode BatchNorm
    // whose saved statistics are the global ones.
    const torch::Tensor w = weight.defined() ? weight : torch::ones({c}, x.options());
    const auto sums =
        at::native_batch_norm_backward(dy, x, w, /*running_mean=*/{}, /*running_var=*/{}, mean, invstd, /*train=*/true,
                                       ctx->saved_data["eps"].toDouble(), {false, true, true});
    const torch::Tensor &sum_dy_xhat = std::get<1>(sums), &sum_dy = std::get<2>(sums);
    torch::Tensor global = torch::cat({sum_dy, sum_dy_xhat});
    sync->all_reduce_sum(global);
    const torch::Tensor mean_dy = global.slice(0, 0, c) / count, mean_dy_xhat = global.slice(0, c, 2 * c) / count;
    // dx = (dy - mean_dy - x_hat * mean_dy_xhat) * invstd * weight = dy * a + x * b + k per channel.
    const torch::Tensor a = invstd * w;
    const torch::Tensor b = -a * invstd * mean_dy_xhat;
    const torch::Tensor k = a * (mean * invstd * mean_dy_xhat - mean_dy);
    torch::Tensor dx = torch::addcmul(per_channel(k), x, per_channel(b));
    dx.addcmul_(dy, per_channel(a));
    torch::Tensor d_weight, d_bias;
    if (weight.defined()) {
      d_weight = sum_dy_xhat;
      d_bias = sum_dy;
    }
    return {dx,
            d_weight,
            d_bias,
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

SyncBatchNorm2dImpl::SyncBatchNorm2dImpl(const torch::nn::BatchNormOptions& o) : options(o) { reset(); }

void SyncBatchNorm2dImpl::reset() {
  const int64_t c = options.num_features();
  if (options.affine()) {
    weight = register_parameter("weight", torch::empty({c}));
    bias = register_parameter("bias", torch::empty({c}));
  } else {
    weight = register_parameter("weight", torch::Tensor(), /*requires_grad=*/false);
    bias = register_parameter("bias", torch::Tensor(), /*requires_grad=*/false);
  }
  if (options.track_running_stats()) {
    running_mean = register_buffer("running_mean", torch::zeros({c}));
    running_var = register_buffer("running_var", torch::ones({c}));
    num_batches_tracked = register_buffer("num_batches_tracked", torch::tensor(0, torch::kLong));
  } else {
    running_mean = register_buffer("running_mean", torch::Tensor());
    running_var = register_buffer("running_var", torch::Tensor());
    num_batches_tracked = register_buffer("num_batches_tracked", torch::Tensor());
  }
  reset_parameters();
}

void SyncBatchNorm2dImpl::reset_running_stats() {
  if (!options.track_running_stats()) return;
  torch::NoGradGuard no_grad;
  running_mean.zero_();
  running_var.fill_(1);
  num_batches_tracked.zero_();
}

void SyncBatchNorm2dImpl::reset_parameters() {
  reset_running_stats();
  if (!options.affine()) return;
  torch::NoGradGuard no_grad;
  weight.fill_(1);
  bias.zero_();
}

torch::Tensor SyncBatchNorm2dImpl::forward(const torch::Tensor& input) {
  FUNDUS_CHECK(input.dim() == 4, "SyncBatchNorm2d: expected [N,C,H,W], got " << input.sizes());
  if (!sync_ || !is_training()) {
    // torch::nn::BatchNorm2dImpl::forward, step for step (momentum unset: cumulative average).
    double factor = options.momentum().has_value() ? options.momentum().value() : 0.0;
    if (is_training() && options.track_running_stats()) {
      num_batches_tracked += 1;
      if (!options.momentum().has_value()) factor = 1.0 / num_batches_tracked.item<double>();
    }
    const bool batch_stats = is_training() || !options.track_running_stats();
    FUNDUS_CHECK(!batch_stats || input.numel() / std::max<int64_t>(1, input.size(1)) > 1,
                 "SyncBatchNorm2d: expected more than 1 value per channel when training, got input " << input.sizes());
    return torch::batch_norm(input, weight, bias, running_mean, running_var, batch_stats, factor, options.eps(),
                             at::globalContext().userEnabledCuDNN());
  }
  const int64_t c = input.size(1);
  FUNDUS_CHECK(c == options.num_features(),
               "SyncBatchNorm2d: " << c << " channels, layer has " << options.num_features());

  torch::Tensor mean, var, invstd;
  double count = 0;
  {
    torch::NoGradGuard no_grad;
    torch::Tensor x = input.detach();
    const int64_t n = c > 0 ? x.numel() / c : 0;
    torch::Tensor local = torch::zeros({1 + 2 * c}, x.options().dtype(torch::kFloat64));
    local[0] = double(n);
    if (n > 0) {
      // ATen's vectorised BatchNorm statistics (biased variance); var/var_mean run a scalar Welford
      // loop with a division per element, which took a third of a 2-process training step.
      auto [m, v] = at::batch_norm_update_stats(x, /*running_mean=*/{}, /*running_var=*/{}, 0.0);
      local.slice(0, 1, 1 + c).copy_(m);
      local.slice(0, 1 + c, 1 + 2 * c).copy_(v.to(torch::kFloat64) * double(n));
    }
    // Chan et al.: combine the per-rank (count, mean, M2) into the global mean and biased variance.
    torch::Tensor all = sync_->all_gather(local);          // [world, 1 + 2C]
    torch::Tensor counts = all.select(1, 0).unsqueeze(1);  // [world, 1]
    count = counts.sum().item<double>();
    FUNDUS_CHECK(count > 1, "SyncBatchNorm2d: expected more than 1 value per channel across ranks when training");
    torch::Tensor means = all.slice(1, 1, 1 + c), m2 = all.slice(1, 1 + c, 1 + 2 * c);
    torch::Tensor mean64 = (counts * means).sum(0) / count;
    torch::Tensor var64 = (m2.sum(0) + (counts * (means - mean64).pow(2)).sum(0)) / count;
    mean = mean64.to(x.scalar_type());
    var = var64.to(x.scalar_type());
    invstd = (var64 + options.eps()).rsqrt().to(x.scalar_type());

    if (options.track_running_stats() && running_mean.defined()) {
      // As BatchNorm2d: the unbiased variance, an exponential average (momentum) or, with momentum
      // unset, the cumulative average over the batches seen.
      num_batches_tracked += 1;
      const double factor =
          options.momentum().has_value() ? options.momentum().value() : 1.0 / num_batches_tracked.item<double>();
      running_mean.mul_(1 - factor).add_(mean64.to(running_mean.scalar_type()), factor);
      running_var.mul_(1 - factor).add_((var64 * (count / (count - 1))).to(running_var.scalar_type()), factor);
    }
  }
  return SyncBatchNormFunction::apply(input, weight, bias, mean, var, invstd, options.eps(), count, sync_.get());
}

void SyncBatchNorm2dImpl::pretty_print(std::ostream& stream) const {
  stream << "fundus::SyncBatchNorm2d(" << options.num_features() << ", eps=" << options.eps() << ", momentum=";
  if (options.momentum().has_value()) stream << options.momentum().value();
  else stream << "None";
  stream << ", affine=" << options.affine() << ", track_running_stats=" << options.track_running_stats()
         << (sync_ ? ", synced" : "") << ")";
}

int64_t set_batchnorm_sync(torch::nn::Module& module, const std::shared_ptr<BatchNormSync>& sync) {
  int64_t n = 0;
  auto attach = [&](torch::nn::Module* m) {
    if (auto* bn = dynamic_cast<SyncBatchNorm2dImpl*>(m)) {
      bn->set_sync(sync);
      ++n;
    }
  };
  attach(&module);
  for (const auto& m : module.modules(/*include_self=*/false)) attach(m.get());
  return n;
}

}  // namespace fundus

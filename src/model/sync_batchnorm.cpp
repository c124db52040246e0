#include "fundus/model/sync_batchnorm.h"

#include "fundus/core/error.h"

namespace fundus {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

torch::Tensor per_channel(const torch::Tensor& v) { return v.view({1, -1, 1, 1}); }

// y = (x - mean) * invstd * weight + bias with global (mean, invstd) computed by the caller; the
// backward reduces its two per-channel sums over the ranks, as PyTorch's SyncBatchNorm does.
struct SyncBatchNormFunction : torch::autograd::Function<SyncBatchNormFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, const torch::Tensor& mean, const torch::Tensor& invstd,
                               double count, BatchNormSync* sync) {
    ctx->save_for_backward({x, weight, mean, invstd});
    ctx->saved_data["count"] = count;
    ctx->saved_data["sync"] = int64_t(reinterpret_cast<intptr_t>(sync));
    torch::Tensor y = (x - per_channel(mean)) * per_channel(invstd);
    if (weight.defined()) y = y * per_channel(weight) + per_channel(bias);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3];
    const double count = ctx->saved_data["count"].toDouble();
    auto* sync = reinterpret_cast<BatchNormSync*>(intptr_t(ctx->saved_data["sync"].toInt()));
    const torch::Tensor& dy = grad_outputs[0];
    const int64_t c = mean.size(0);
    torch::Tensor x_hat = (x - per_channel(mean)) * per_channel(invstd);
    torch::Tensor local = torch::cat({dy.sum({0, 2, 3}), (dy * x_hat).sum({0, 2, 3})}).contiguous();
    torch::Tensor global = local.clone();
    sync->all_reduce_sum(global);
    torch::Tensor mean_dy = global.slice(0, 0, c) / count, mean_dy_xhat = global.slice(0, c, 2 * c) / count;
    torch::Tensor scale = weight.defined() ? invstd * weight : invstd;
    torch::Tensor dx = (dy - per_channel(mean_dy) - x_hat * per_channel(mean_dy_xhat)) * per_channel(scale);
    torch::Tensor d_weight, d_bias;
    if (weight.defined()) {
      d_weight = local.slice(0, c, 2 * c);
      d_bias = local.slice(0, 0, c);
    }
    return {dx, d_weight, d_bias, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
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
      local.slice(0, 1, 1 + c).copy_(x.mean({0, 2, 3}));
      local.slice(0, 1 + c, 1 + 2 * c).copy_(x.var({0, 2, 3}, /*unbiased=*/false).to(torch::kFloat64) * double(n));
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
    var = var64;
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
  return SyncBatchNormFunction::apply(input, weight, bias, mean, invstd, count, sync_.get());
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

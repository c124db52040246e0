// Precise BatchNorm (model/batchnorm.h): recomputed running statistics make eval mode agree with
// training mode on the calibration data, from any starting statistics.
#include "fundus/core/error.h"
#include "fundus/model/batchnorm.h"
#include "fundus/model/runtime.h"
#include "fundus/model/sync_batchnorm.h"
#include "model_test_util.h"

namespace fundus {
namespace {

using test::max_abs_diff;

ModelConfig tiny_mirror() {
  ModelConfig c;
  c.backbone = BackboneKind::mobilenet_v2;
  c.input_size = 64;
  return c;
}

torch::Tensor running_var_of_first_bn(RetrievalNetImpl& net) {
  for (const auto& m : net.modules(false))
    if (auto* bn = dynamic_cast<fundus::SyncBatchNorm2dImpl*>(m.get())) return bn->running_var.clone();
  return {};
}

TEST(BatchNorm, RecalibratedEvalModeMatchesTrainingModeOnTheSameBatch) {
  seed_torch(11);
  RetrievalNet net(tiny_mirror());
  torch::Tensor x = torch::rand({6, 3, 64, 64});
  net->train();
  torch::Tensor train_out;
  {
    torch::NoGradGuard no_grad;
    train_out = net->forward(x).descriptor;
  }
  // Stale statistics (fresh init: mean 0, variance 1) make eval mode a different function, and
  // collapse its descriptors: the bug this file exists for.
  net->eval();
  torch::Tensor stale = net->forward(x).descriptor.detach();
  ASSERT_GT(max_abs_diff(stale, train_out), 0.05) << "the test needs stale statistics to matter";
  torch::Tensor stale_cos = stale.mm(stale.t());
  EXPECT_GT(stale_cos.min().item<double>(), 0.999) << "fresh statistics collapse the descriptors";

  int calls = 0;
  BatchNormRecalibration r = recalibrate_batchnorm(*net, [&] { return calls++ == 0 ? x : torch::Tensor(); });
  EXPECT_EQ(r.batches, 1);
  EXPECT_EQ(r.images, 6);
  EXPECT_EQ(r.layers, count_batchnorm_layers(*net));
  EXPECT_GT(r.layers, 50);  // MobileNetV2 (52) + the attention block's three
  EXPECT_FALSE(net->is_training());
  torch::Tensor calibrated = net->forward(x).descriptor.detach();
  // Eval mode now normalises with this batch's statistics (unbiased variance instead of biased: a
  // relative difference of 1/(n-1) per channel, n >= 3 * 6 * 2 * 2 values).
  EXPECT_LT(max_abs_diff(calibrated, train_out), 0.02);
  torch::Tensor cos = calibrated.mm(calibrated.t());
  EXPECT_LT(cos.min().item<double>(), 0.99) << "recalibrated descriptors must differ between images";
}

TEST(BatchNorm, StatisticsAreTheAverageOverBatchesAndMomentumIsRestored) {
  seed_torch(12);
  RetrievalNet net(tiny_mirror());
  torch::Tensor a = torch::rand({4, 3, 64, 64}), b = torch::rand({4, 3, 64, 64}) * 0.5;
  // Reference: the first layer's batch variance for each batch alone, averaged.
  auto var_after = [&](const std::vector<torch::Tensor>& batches) {
    size_t i = 0;
    recalibrate_batchnorm(*net, [&] { return i < batches.size() ? batches[i++] : torch::Tensor(); });
    return running_var_of_first_bn(*net);
  };
  torch::Tensor va = var_after({a}), vb = var_after({b}), vab = var_after({a, b});
  EXPECT_LT(max_abs_diff(vab, (va + vb) / 2), 1e-5) << "cumulative average, not an exponential one";
  for (const auto& m : net->modules(false))
    if (auto* bn = dynamic_cast<fundus::SyncBatchNorm2dImpl*>(m.get())) {
      ASSERT_TRUE(bn->options.momentum().has_value());
      EXPECT_DOUBLE_EQ(*bn->options.momentum(), 0.1);
    }
}

TEST(BatchNorm, NoDataIsAnErrorAndChangesNothing) {
  seed_torch(13);
  RetrievalNet net(tiny_mirror());
  torch::Tensor before = running_var_of_first_bn(*net);
  {
    torch::NoGradGuard no_grad;
    fundus::SyncBatchNorm2dImpl* first = nullptr;
    for (const auto& m : net->modules(false))
      if ((first = dynamic_cast<fundus::SyncBatchNorm2dImpl*>(m.get()))) break;
    first->running_var.fill_(3.0);
  }
  EXPECT_THROW(recalibrate_batchnorm(*net, [] { return torch::Tensor(); }), Error);
  EXPECT_DOUBLE_EQ(running_var_of_first_bn(*net)[0].item<double>(), 3.0);
  EXPECT_EQ(before.size(0), running_var_of_first_bn(*net).size(0));
}

}  // namespace
}  // namespace fundus

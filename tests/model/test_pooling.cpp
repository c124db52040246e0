// Pooling: hand-computed GeM/avg/max, finite differences for GeM (input and p), R-MAC against
// cirtorch's rmac() written out in Python (square and non-square maps).
#include "fundus/core/error.h"
#include "fundus/model/pooling.h"
#include "fundus/model/state_dict.h"
#include "gradient_check.h"
#include "model_test_util.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::get;
using test::max_abs_diff;

TEST(Pooling, HandComputedValues) {
  // One channel holding 1,2,3,4 and one holding 0.5 everywhere.
  torch::Tensor x =
      torch::stack({torch::tensor({1.0, 2.0, 3.0, 4.0}).view({2, 2}), torch::full({2, 2}, 0.5, torch::kDouble)})
          .unsqueeze(0);
  Pooling gem(PoolingKind::gem);
  gem->to(torch::kDouble);
  EXPECT_EQ(gem->p.sizes(), (std::vector<int64_t>{1}));
  EXPECT_EQ(gem->p.item<double>(), 3.0);
  torch::Tensor g = gem(x);
  // ((1 + 8 + 27 + 64) / 4)^(1/3) = 25^(1/3) = 2.9240177382...; a constant map pools to itself.
  EXPECT_NEAR(g[0][0].item<double>(), 2.9240177382128660, 1e-12);
  EXPECT_NEAR(g[0][1].item<double>(), 0.5, 1e-12);
  EXPECT_NEAR(Pooling(PoolingKind::avg)(x)[0][0].item<double>(), 2.5, 1e-12);
  EXPECT_NEAR(Pooling(PoolingKind::max)(x)[0][0].item<double>(), 4.0, 1e-12);
  // Negative inputs are clamped at eps before the power.
  torch::Tensor neg = torch::full({1, 1, 2, 2}, -1.0, torch::kDouble);
  EXPECT_NEAR(gem(neg).item<double>(), 1e-6, 1e-12);
  // p = 1 is average pooling of the clamped map.
  EXPECT_NEAR(gem_pool(x, torch::ones({1}, torch::kDouble))[0][0].item<double>(), 2.5, 1e-12);
  EXPECT_TRUE(Pooling(PoolingKind::avg)->parameters().empty());
  EXPECT_EQ(pooling_choices().parse("rmac", "model.pooling"), PoolingKind::rmac);
  EXPECT_THROW(pooling_choices().parse("spoc", "model.pooling"), Error);
  // pooling_name is the inverse of parsing for every kind (what ModelConfig::to_json writes).
  for (PoolingKind kind : {PoolingKind::gem, PoolingKind::avg, PoolingKind::max, PoolingKind::rmac})
    EXPECT_EQ(pooling_choices().parse(pooling_name(kind), "model.pooling"), kind);
  EXPECT_STREQ(pooling_name(PoolingKind::rmac), "rmac");
  EXPECT_THROW(Pooling(PoolingKind::gem, 0.0), Error);
}

TEST(FiniteDifferences, GeMInputAndExponent) {
  torch::manual_seed(2);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  torch::Tensor x = (torch::rand({2, 3, 4, 5}, opts) + 0.1).requires_grad_(true);
  torch::Tensor p = torch::full({1}, 3.0, opts).requires_grad_(true);
  torch::Tensor r = torch::randn({2, 3}, opts);
  auto f = [&] { return (gem_pool(x, p) * r).sum(); };
  test::expect_gradient_matches(f, x, 1e-6, 20);
  test::expect_gradient_matches(f, p, 1e-6, 1);
}

TEST(Pooling, RmacMatchesCirtorch) {
  FUNDUS_REQUIRE_PYTHON_ORACLE();
  torch::manual_seed(4);
  StateDict in;
  const std::vector<std::vector<int64_t>> shapes{
      {2, 5, 8, 8}, {1, 3, 7, 7}, {2, 4, 8, 12}, {1, 4, 12, 8}, {1, 2, 5, 5}};
  for (size_t k = 0; k < shapes.size(); ++k) in.insert("x" + std::to_string(k), torch::rand(shapes[k], torch::kDouble));
  test::TempDir dir;
  write_state_dict(dir.file("in.pth"), in);
  // cirtorch.layers.functional.rmac (Radenovic et al.), verbatim apart from formatting.
  auto r = test::run_python(R"PY(
import sys, math, torch, torch.nn.functional as F
def rmac(x, L=3, eps=1e-6):
    ovr = 0.4
    steps = torch.Tensor([2, 3, 4, 5, 6, 7])
    W = x.size(3); H = x.size(2)
    w = min(W, H)
    b = (max(H, W) - w) / (steps - 1)
    (tmp, idx) = torch.min(torch.abs(((w ** 2 - w * b) / w ** 2) - ovr), 0)
    Wd = 0; Hd = 0
    if H < W: Wd = idx.item() + 1
    elif H > W: Hd = idx.item() + 1
    v = F.max_pool2d(x, (x.size(-2), x.size(-1)))
    v = v / (torch.norm(v, p=2, dim=1, keepdim=True) + eps).expand_as(v)
    for l in range(1, L + 1):
        wl = math.floor(2 * w / (l + 1))
        wl2 = math.floor(wl / 2 - 1)
        b = 0 if l + Wd == 1 else (W - wl) / (l + Wd - 1)
        cenW = torch.floor(wl2 + torch.Tensor(range(l - 1 + Wd + 1)) * b) - wl2
        b = 0 if l + Hd == 1 else (H - wl) / (l + Hd - 1)
        cenH = torch.floor(wl2 + torch.Tensor(range(l - 1 + Hd + 1)) * b) - wl2
        for i_ in cenH.tolist():
            for j_ in cenW.tolist():
                if wl == 0: continue
                R = x[:, :, (int(i_) + torch.Tensor(range(wl)).long()).tolist(), :]
                R = R[:, :, :, (int(j_) + torch.Tensor(range(wl)).long()).tolist()]
                vt = F.max_pool2d(R, (R.size(-2), R.size(-1)))
                vt = vt / (torch.norm(vt, p=2, dim=1, keepdim=True) + eps).expand_as(vt)
                v += vt
    return v
inp = torch.load(sys.argv[1])
torch.save({k: rmac(v).flatten(1) for k, v in inp.items()}, sys.argv[2])
)PY",
                            dir.file("in.pth") + " " + dir.file("out.pth"));
  ASSERT_EQ(r.exit_code, 0);
  StateDict ref = read_state_dict(dir.file("out.pth"));
  Pooling rmac(PoolingKind::rmac);
  for (size_t k = 0; k < shapes.size(); ++k) {
    std::string key = "x" + std::to_string(k);
    EXPECT_LE(max_abs_diff(rmac(get(in, key)), get(ref, key)), 1e-12) << key;
  }
  // 8x8: the global max + 1 + 4 + 9 regions, each L2-normalised: a constant map gives 15/sqrt(C).
  torch::Tensor ones = torch::ones({1, 4, 8, 8}, torch::kDouble);
  EXPECT_NEAR(rmac(ones)[0][0].item<double>(), 15.0 / 2.0, 1e-5);
}

}  // namespace
}  // namespace fundus

// Attention modules: parity of forward AND gradients with a float64 reference written in Python
// from the formulas of method.md 2.4 (both aggregations), finite differences, identity at init.
#include <cmath>
#include <memory>

#include "fundus/core/error.h"
#include "fundus/model/attention.h"
#include "fundus/model/runtime.h"
#include "fundus/model/state_dict.h"
#include "gradient_check.h"
#include "model_test_util.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::expect_gradient_matches;
using test::get;
using test::max_abs_diff;

// Reference implementation: einsum spelled out index by index from the method text.
const char* kReference = R"PY(
import sys, math, torch, torch.nn.functional as F
inp = torch.load(sys.argv[1])
P = {k: v.clone().requires_grad_(True) for k, v in inp.items() if v.is_floating_point()}
def conv(x, pre):
    return F.conv2d(x, P[pre + ".weight"], P.get(pre + ".bias"))
def cbr(x, pre):  # conv1x1 + BN (batch statistics, training mode) + ReLU
    y = F.conv2d(x, P[pre + ".0.weight"], P[pre + ".0.bias"])
    y = F.batch_norm(y, None, None, P[pre + ".1.weight"], P[pre + ".1.bias"], training=True, eps=1e-5)
    return F.relu(y)
def mirror(literal):
    xa = P["x_a"]; B, C, H, W = xa.shape
    fa = cbr(xa, "mirror.theta_a").flatten(2)
    Cp = fa.shape[1]
    ys, maps = [], []
    for br in ("h", "v"):
        fm = cbr(P["x_" + br], "mirror.theta_" + br).flatten(2)
        s = torch.einsum("bci,bcj->bij", fm, fa) / math.sqrt(Cp)   # row i mirrored, column j original
        a = torch.softmax(s, dim=2) if literal else torch.softmax(s, dim=1)
        g = conv(xa, "mirror.g_" + br).flatten(2)
        o = torch.einsum("bij,bci->bcj", a, g)                       # O[:, j] = sum_i A[i,j] G[:, i]
        ys.append(conv(o.reshape(B, Cp, H, W), "mirror.w_" + br) + xa)
        maps.append(torch.softmax(s, dim=2).sum(1).reshape(B, H, W))
    return ys, maps
def self_attention():
    x = P["x_a"]; B, C, H, W = x.shape
    t = conv(x, "self.theta").flatten(2); p = conv(x, "self.phi").flatten(2); g = conv(x, "self.g").flatten(2)
    a = torch.softmax(torch.einsum("bci,bcj->bij", t, p) / math.sqrt(t.shape[1]), dim=2)
    o = torch.einsum("bij,bcj->bci", a, g)                          # O[:, i] = sum_j A[i,j] G[:, j]
    return conv(o.reshape(B, -1, H, W), "self.w") + x, a.sum(1).reshape(B, H, W)
def spatial():
    x = P["x_a"]
    s = torch.sigmoid(F.conv2d(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1),
                               P["spatial.conv.weight"], padding=1))
    return x * s
out = {}
def grads(tag, loss):
    for k, v in P.items():
        v.grad = None
    loss.backward()
    for k, v in P.items():
        if v.grad is not None:
            out[tag + ".grad." + k] = v.grad
for tag, literal in (("literal", True), ("standard", False)):
    (yh, yv), (mh, mv) = mirror(literal)
    out[tag + ".y_h"] = yh.detach(); out[tag + ".y_v"] = yv.detach()
    out[tag + ".att_h"] = mh.detach(); out[tag + ".att_v"] = mv.detach()
    grads(tag, (yh * P["r_h"]).sum() + (yv * P["r_v"]).sum())
y, m = self_attention()
out["self.y"] = y.detach(); out["self.att"] = m.detach()
grads("self", (y * P["r_h"]).sum())
y = spatial()
out["spatial.y"] = y.detach()
grads("spatial", (y * P["r_h"]).sum())
torch.save(out, sys.argv[2])
)PY";

/// Replaces every parameter and buffer-free BN affine by seeded random values (so W is not zero).
void randomize(torch::nn::Module& m, double scale = 0.4) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.named_parameters()) {
    if (p.key().find(".1.weight") != std::string::npos) p.value().uniform_(0.5, 1.5);  // BN gamma
    else p.value().normal_(0.0, scale);
  }
}

void add_prefixed(StateDict& out, const std::string& prefix, const torch::nn::Module& m) {
  for (const auto& p : m.named_parameters()) out.insert(prefix + p.key(), p.value().detach());
}

TEST(MirrorAttention, MatchesPythonReferenceForwardAndGradients) {
  FUNDUS_REQUIRE_PYTHON_ORACLE();
  seed_torch(11);
  const int64_t B = 2, C = 8, H = 3, W = 4;  // non-square: catches H/W mix-ups
  MirrorAttention literal(C, 2, Aggregation::literal), standard(C, 2, Aggregation::standard);
  SelfAttention self(C, 2);
  SpatialAttention spatial;
  for (torch::nn::Module* m : std::initializer_list<torch::nn::Module*>{literal.get(), self.get(), spatial.get()}) {
    m->to(torch::kDouble);
    randomize(*m);
  }
  standard->to(torch::kDouble);
  load_into(*standard, module_state_dict(*literal));
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  std::map<std::string, torch::Tensor> in{{"x_a", torch::randn({B, C, H, W}, opts)},
                                          {"x_h", torch::randn({B, C, H, W}, opts)},
                                          {"x_v", torch::randn({B, C, H, W}, opts)},
                                          {"r_h", torch::randn({B, C, H, W}, opts)},
                                          {"r_v", torch::randn({B, C, H, W}, opts)}};
  StateDict file;
  for (auto& [k, v] : in) file.insert(k, v);
  add_prefixed(file, "mirror.", *literal);
  add_prefixed(file, "self.", *self);
  add_prefixed(file, "spatial.", *spatial);
  test::TempDir dir;
  write_state_dict(dir.file("in.pth"), file);
  auto r = test::run_python(kReference, dir.file("in.pth") + " " + dir.file("out.pth"));
  ASSERT_EQ(r.exit_code, 0);
  StateDict ref = read_state_dict(dir.file("out.pth"));

  auto leaf = [&](const char* name) { return in[name].clone().requires_grad_(true); };
  for (auto [tag, module] : {std::pair<std::string, MirrorAttention>{"literal", literal}, {"standard", standard}}) {
    SCOPED_TRACE(tag);
    module->zero_grad();
    torch::Tensor xa = leaf("x_a"), xh = leaf("x_h"), xv = leaf("x_v");
    auto out = module(xa, xh, xv, /*with_attention=*/true);
    EXPECT_LE(max_abs_diff(out.y_h, get(ref, tag + ".y_h")), 1e-5);
    EXPECT_LE(max_abs_diff(out.y_v, get(ref, tag + ".y_v")), 1e-5);
    EXPECT_LE(max_abs_diff(out.attention_h, get(ref, tag + ".att_h")), 1e-5);
    EXPECT_LE(max_abs_diff(out.attention_v, get(ref, tag + ".att_v")), 1e-5);
    ((out.y_h * in["r_h"]).sum() + (out.y_v * in["r_v"]).sum()).backward();
    EXPECT_LE(max_abs_diff(xa.grad(), get(ref, tag + ".grad.x_a")), 1e-5);
    EXPECT_LE(max_abs_diff(xh.grad(), get(ref, tag + ".grad.x_h")), 1e-5);
    EXPECT_LE(max_abs_diff(xv.grad(), get(ref, tag + ".grad.x_v")), 1e-5);
    int compared = 0;
    for (const auto& p : module->named_parameters()) {
      EXPECT_LE(max_abs_diff(p.value().grad(), get(ref, tag + ".grad.mirror." + p.key())), 1e-5) << p.key();
      ++compared;
    }
    EXPECT_EQ(compared, 3 * 4 + 4 * 2);  // theta_{a,h,v}: conv w,b + bn w,b; g_{h,v}, w_{h,v}: w,b
    // The two aggregations really differ (the test would not catch a swapped softmax otherwise).
    EXPECT_GT(max_abs_diff(get(ref, "literal.y_h"), get(ref, "standard.y_h")), 1e-3);
  }
  {
    torch::Tensor x = leaf("x_a");
    auto out = self(x, true);
    EXPECT_LE(max_abs_diff(out.y, get(ref, "self.y")), 1e-5);
    EXPECT_LE(max_abs_diff(out.attention, get(ref, "self.att")), 1e-5);
    (out.y * in["r_h"]).sum().backward();
    EXPECT_LE(max_abs_diff(x.grad(), get(ref, "self.grad.x_a")), 1e-5);
    for (const auto& p : self->named_parameters())
      EXPECT_LE(max_abs_diff(p.value().grad(), get(ref, "self.grad.self." + p.key())), 1e-5) << p.key();
  }
  {
    torch::Tensor x = leaf("x_a");
    torch::Tensor y = spatial(x);
    EXPECT_LE(max_abs_diff(y, get(ref, "spatial.y")), 1e-5);
    (y * in["r_h"]).sum().backward();
    EXPECT_LE(max_abs_diff(x.grad(), get(ref, "spatial.grad.x_a")), 1e-5);
    EXPECT_LE(max_abs_diff(spatial->conv->weight.grad(), get(ref, "spatial.grad.spatial.conv.weight")), 1e-5);
  }
}

TEST(MirrorAttention, IsTheIdentityAtInitAndStillLearns) {
  seed_torch(1);
  MirrorAttention m(16);
  torch::Tensor xa = torch::randn({2, 16, 4, 4}, torch::requires_grad()), xh = torch::randn({2, 16, 4, 4}),
                xv = torch::randn({2, 16, 4, 4});
  auto out = m(xa, xh, xv, true);
  EXPECT_TRUE(out.y_h.equal(xa));
  EXPECT_TRUE(out.y_v.equal(xa));
  (out.y_h.sum() + out.y_v.sum()).backward();
  EXPECT_GT(m->w_h->weight.grad().abs().sum().item<double>(), 0) << "W receives gradient at init";
  EXPECT_EQ(m->theta_h->conv->weight.grad().abs().sum().item<double>(), 0) << "W = 0 blocks theta's gradient";
  // Attention maps: column sums of a row-softmax; all rows sum to 1, so each map sums to N.
  EXPECT_EQ(out.attention_h.sizes(), (std::vector<int64_t>{2, 4, 4}));
  EXPECT_NEAR(out.attention_h[0].sum().item<double>(), 16.0, 1e-4);
  for (int64_t b = 0; b < 2; ++b) {
    EXPECT_NEAR(out.attention_h[b].sum().item<double>(), 16.0, 1e-4) << b;
    EXPECT_NEAR(out.attention_v[b].sum().item<double>(), 16.0, 1e-4) << b;
  }
  EXPECT_GE(out.attention_v.min().item<double>(), 0.0);  // sums of probabilities
  EXPECT_FALSE(m(xa, xh, xv).attention_h.defined());
  // Init as specified: W weight and bias zero, theta/g biases zero, Kaiming weights (std sqrt(2/C)).
  EXPECT_EQ(m->w_v->bias.abs().sum().item<double>(), 0);
  EXPECT_EQ(m->g_h->bias.abs().sum().item<double>(), 0);
  EXPECT_NEAR(m->g_h->weight.std().item<double>(), std::sqrt(2.0 / 16), 0.05);

  SelfAttention s(16);
  auto so = s(xa, true);
  EXPECT_TRUE(so.y.equal(xa));
  EXPECT_NEAR(so.attention[1].sum().item<double>(), 16.0, 1e-4);
}

TEST(MirrorAttention, RejectsBadShapesAndReductions) {
  EXPECT_THROW(MirrorAttention(10, 3), Error);
  MirrorAttention m(8);
  EXPECT_THROW(m(torch::zeros({1, 8, 2, 2}), torch::zeros({1, 8, 2, 3}), torch::zeros({1, 8, 2, 2})), Error);
  EXPECT_THROW(aggregation_choices().parse("sum", "model.aggregation"), Error);
}

TEST(FiniteDifferences, MirrorAttentionBothAggregations) {
  seed_torch(3);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  for (Aggregation agg : {Aggregation::literal, Aggregation::standard}) {
    MirrorAttention m(4, 2, agg);
    m->to(torch::kDouble);
    randomize(*m);
    torch::Tensor xa = torch::randn({2, 4, 3, 3}, opts).requires_grad_(true);
    torch::Tensor xh = torch::randn({2, 4, 3, 3}, opts).requires_grad_(true);
    torch::Tensor xv = torch::randn({2, 4, 3, 3}, opts).requires_grad_(true);
    torch::Tensor rh = torch::randn({2, 4, 3, 3}, opts), rv = torch::randn({2, 4, 3, 3}, opts);
    auto f = [&] {
      auto o = m(xa, xh, xv);
      return (o.y_h * rh).sum() + (o.y_v * rv).sum();
    };
    for (torch::Tensor t :
         {xa, xh, xv, m->theta_h->conv->weight, m->theta_a->bn->weight, m->g_v->weight, m->w_h->weight, m->w_v->bias}) {
      SCOPED_TRACE(aggregation_name(agg));
      expect_gradient_matches(f, t, 1e-6);
    }
  }
}

TEST(FiniteDifferences, SpatialAttention) {
  seed_torch(4);
  SpatialAttention s;
  s->to(torch::kDouble);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  torch::Tensor x = torch::randn({2, 3, 5, 4}, opts).requires_grad_(true);
  torch::Tensor r = torch::randn({2, 3, 5, 4}, opts);
  auto f = [&] { return (s(x) * r).sum(); };
  expect_gradient_matches(f, x, 1e-6, 20);
  expect_gradient_matches(f, s->conv->weight, 1e-6, 18);
  // The map has one channel and is, at every position, the sigmoid of the zero-padded convolution
  // of [channel mean, channel max] (CBAM's spatial attention), evaluated here by hand.
  torch::NoGradGuard no_grad;
  torch::Tensor m = s->scores(x);
  EXPECT_EQ(m.sizes(), (std::vector<int64_t>{2, 1, 5, 4}));
  const torch::Tensor w = s->conv->weight, mean = x.mean(1), mx = std::get<0>(x.max(1));
  const int64_t K = w.size(2), pad = K / 2;
  ASSERT_EQ(w.sizes(), (std::vector<int64_t>{1, 2, K, K}));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 5; ++h)
      for (int64_t c = 0; c < 4; ++c) {
        double z = s->conv->bias.defined() ? s->conv->bias[0].item<double>() : 0.0;
        for (int64_t i = 0; i < K; ++i)
          for (int64_t j = 0; j < K; ++j) {
            const int64_t hh = h + i - pad, cc = c + j - pad;
            if (hh < 0 || hh >= 5 || cc < 0 || cc >= 4) continue;
            z += w[0][0][i][j].item<double>() * mean[b][hh][cc].item<double>() +
                 w[0][1][i][j].item<double>() * mx[b][hh][cc].item<double>();
          }
        EXPECT_NEAR(m[b][0][h][c].item<double>(), 1.0 / (1.0 + std::exp(-z)), 1e-12) << b << "," << h << "," << c;
      }
}

}  // namespace
}  // namespace fundus

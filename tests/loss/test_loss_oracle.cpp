// Parity with an independent Python reference (Debian's torch via FUNDUS_PYTHON): loss values and
// gradients w.r.t. the descriptors, float64, max abs diff <= 1e-5 (in practice ~1e-15).
// The reference is written the naive way (explicit pair loops, log(1 + sum exp * sum exp)) so it
// shares no code path with the masked logsumexp implementation.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fundus/core/json.h"
#include "fundus/core/rng.h"
#include "fundus/core/strings.h"
#include "fundus/loss/baseline_losses.h"
#include "fundus/loss/fine_triplet.h"
#include "test_support.h"

namespace fundus {
namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

std::string py_list(const torch::Tensor& t) {
  auto flat = t.contiguous().to(torch::kFloat64).reshape(-1);
  std::string s = "[";
  for (int64_t i = 0; i < flat.numel(); ++i) s += strprintf("%s%.17g", i ? "," : "", flat[i].item<double>());
  return s + "]";
}

const char* kReference = R"PY(
import json, math, sys
import torch
import torch.nn.functional as F
torch.set_default_dtype(torch.float64)

def cos_matrix(x):
    n = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return n @ n.T

def ftl(x, r, g, margin, gamma, degree, detach):
    s = cos_matrix(x)
    B = x.shape[0]
    sum_p = 0.0; sum_n = 0.0; np_ = 0; nn_ = 0
    for i in range(B):
        for j in range(i + 1, B):
            if g[i] == g[j]:
                ap = torch.relu(1 + margin - s[i, j])
                if detach: ap = ap.detach()
                if degree == 'none': w = gamma
                elif degree == 'ratio': w = r[j] / r[i]
                else: w = gamma * min(r[i], r[j]) / max(r[i], r[j])
                sum_p = sum_p + torch.exp(-w * ap * (s[i, j] - (1 - margin))); np_ += 1
            else:
                an = torch.relu(s[i, j] + margin)
                if detach: an = an.detach()
                sum_n = sum_n + torch.exp(gamma * an * (s[i, j] - margin)); nn_ += 1
    if np_ == 0 or nn_ == 0:
        return (x * 0).sum()
    return torch.log(1 + sum_p * sum_n)

def batch_hard(x, g, margin):
    d = 1 - cos_matrix(x)
    terms = []
    for a in range(x.shape[0]):
        pos = [d[a, j] for j in range(x.shape[0]) if j != a and g[j] == g[a]]
        neg = [d[a, j] for j in range(x.shape[0]) if g[j] != g[a]]
        if pos and neg:
            terms.append(torch.relu(torch.stack(pos).max() - torch.stack(neg).min() + margin))
    return torch.stack(terms).mean()

def contrastive(x, g, margin):
    s = cos_matrix(x); P = []; Q = []
    for i in range(x.shape[0]):
        for j in range(i + 1, x.shape[0]):
            (P if g[i] == g[j] else Q).append(s[i, j])
    return (1 - torch.stack(P)).mean() + torch.relu(torch.stack(Q) - margin).mean()

spec = json.load(open(sys.argv[1]))
B, D, C = spec['B'], spec['D'], spec['C']
g = spec['grades']
r = [float(v) for v in spec['relevance']]
out = {}
def run(name, fn, source):
    x = torch.tensor(source).reshape(B, -1).requires_grad_(True)
    loss = fn(x)
    loss.backward()
    out[name] = {'loss': loss.item(), 'grad': x.grad.reshape(-1).tolist()}

for degree in ['none', 'ratio', 'minmax']:
    for detach in [False, True]:
        for margin, gamma in [(0.25, 1.0), (0.4, 2.5)]:
            name = 'ftl/%s/%d/%g/%g' % (degree, detach, margin, gamma)
            run(name, lambda x: ftl(x, r, g, margin, gamma, degree, detach), spec['x'])
run('batch_hard', lambda x: batch_hard(x, g, 0.3), spec['x'])
run('contrastive', lambda x: contrastive(x, g, 0.2), spec['x'])
run('ce', lambda z: F.cross_entropy(z, torch.tensor(g)), spec['logits'])
run('bce', lambda z: F.binary_cross_entropy_with_logits(z, F.one_hot(torch.tensor(g), C).double()), spec['logits'])
h = torch.tensor(spec['h']).reshape(B, -1); v = torch.tensor(spec['v']).reshape(B, -1)
out['relevance'] = F.cosine_similarity(h, v, dim=1).clamp_min(1e-6).tolist()
print(json.dumps(out))
)PY";

TEST(LossOracle, MatchesPythonReferenceValuesAndGradients) {
  FUNDUS_REQUIRE_PYTHON_ORACLE();
  const int64_t B = 12, D = 8, C = 5;
  Rng rng(2024);
  auto rand = [&](int64_t n, double lo, double hi, bool normal) {
    std::vector<double> v(static_cast<size_t>(n));
    for (auto& x : v) x = normal ? rng.normal() : rng.uniform(lo, hi);
    return torch::tensor(v, kF64);
  };
  auto x = torch::nn::functional::normalize(rand(B * D, 0, 0, true).reshape({B, D}),
                                            torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto r = rand(B, 0.2, 1.0, false);
  auto logits = rand(B * C, 0, 0, true).reshape({B, C}) * 2;
  auto h = rand(B * 6, 0.0, 1.0, false).reshape({B, 6}), v = rand(B * 6, 0.0, 1.0, false).reshape({B, 6});
  std::vector<int64_t> gv = {0, 1, 2, 0, 1, 0, 3, 2, 0, 4, 1, 0};
  auto g = torch::tensor(gv, torch::kLong);

  test::TempDir dir;
  Json spec = {{"B", B}, {"D", D}, {"C", C}, {"grades", gv}};
  auto put = [&](const char* key, const torch::Tensor& t) { spec[key] = Json::parse(py_list(t)); };
  put("x", x);
  put("relevance", r);
  put("logits", logits);
  put("h", h);
  put("v", v);
  save_json_file(dir.file("spec.json"), spec);
  auto result = test::run_python(kReference, dir.file("spec.json"));
  ASSERT_EQ(result.exit_code, 0);
  Json ref = Json::parse(result.output.substr(result.output.find('{')));

  auto compare = [&](const std::string& name, const torch::Tensor& input,
                     const std::function<torch::Tensor(const torch::Tensor&)>& fn) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(ref.contains(name));
    auto xi = input.clone().requires_grad_(true);
    auto loss = fn(xi);
    loss.backward();
    EXPECT_LE(std::abs(loss.item<double>() - ref[name]["loss"].get<double>()), 1e-5);
    auto grad = torch::tensor(ref[name]["grad"].get<std::vector<double>>(), kF64);
    double diff = (xi.grad().reshape(-1) - grad).abs().max().item<double>();
    EXPECT_LE(diff, 1e-5);
    EXPECT_GT(grad.abs().max().item<double>(), 1e-4);  // a zero gradient would make parity vacuous
  };
  for (Degree deg : {Degree::none, Degree::ratio, Degree::minmax})
    for (bool detach : {false, true})
      for (auto [margin, gamma] : {std::pair{0.25, 1.0}, std::pair{0.4, 2.5}}) {
        FtlOptions o{margin, gamma, deg, detach};
        compare(strprintf("ftl/%s/%d/%g/%g", degree_name(deg), int(detach), margin, gamma), x,
                [&](const torch::Tensor& d) { return fine_triplet_loss(d, r, g, o); });
      }
  compare("batch_hard", x, [&](const torch::Tensor& d) { return batch_hard_triplet_loss(d, g, 0.3); });
  compare("contrastive", x, [&](const torch::Tensor& d) { return contrastive_loss(d, g, 0.2); });
  compare("ce", logits, [&](const torch::Tensor& z) { return softmax_cross_entropy_loss(z, g); });
  compare("bce", logits, [&](const torch::Tensor& z) { return sigmoid_bce_loss(z, g); });
  auto rel = torch::tensor(ref["relevance"].get<std::vector<double>>(), kF64);
  EXPECT_LE((relevance_degree(h, v) - rel).abs().max().item<double>(), 1e-12);
}

}  // namespace
}  // namespace fundus

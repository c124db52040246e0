#include "fundus/loss/loss.h"

#include <cmath>
#include <vector>

#include "fundus/core/error.h"
#include "fundus/loss/baseline_losses.h"

namespace fundus {

namespace {

const Json& section(const Json& loss, const char* key, std::initializer_list<const char*> known,
                    const std::string& context) {
  static const Json empty = Json::object();
  auto it = loss.find(key);
  if (it == loss.end() || it->is_null()) return empty;
  FUNDUS_CHECK(it->is_object(), context << "." << key << ": expected an object");
  check_known_keys(*it, known, context + "." + key);
  return *it;
}

double weight_of(const Json& sec, double fallback, const std::string& context) {
  double w = json_value<double>(sec, "weight", fallback, context);
  FUNDUS_CHECK(std::isfinite(w) && w >= 0, context << ".weight: " << w << " must be a finite number >= 0");
  return w;
}

}  // namespace

LossConfig LossConfig::from_json(const Json& loss, const std::string& context) {
  FUNDUS_CHECK(loss.is_object(), context << ": expected an object");
  check_known_keys(loss, {"ftl", "batch_hard", "contrastive", "ce", "bce"}, context);
  LossConfig c;
  {
    std::string ctx = context + ".ftl";
    const Json& s = section(loss, "ftl", {"weight", "margin", "gamma", "degree", "detach_alpha"}, context);
    c.ftl_weight = weight_of(s, c.ftl_weight, ctx);
    c.ftl.margin = json_value<double>(s, "margin", c.ftl.margin, ctx);
    c.ftl.gamma = json_value<double>(s, "gamma", c.ftl.gamma, ctx);
    c.ftl.degree = parse_degree(json_value<std::string>(s, "degree", degree_name(c.ftl.degree), ctx));
    c.ftl.detach_alpha = json_value<bool>(s, "detach_alpha", c.ftl.detach_alpha, ctx);
    FUNDUS_CHECK(c.ftl.margin >= 0 && c.ftl.margin < 1, ctx << ".margin: " << c.ftl.margin << " outside [0, 1)");
    FUNDUS_CHECK(c.ftl.gamma > 0 && std::isfinite(c.ftl.gamma), ctx << ".gamma: " << c.ftl.gamma << " must be > 0");
  }
  {
    std::string ctx = context + ".batch_hard";
    const Json& s = section(loss, "batch_hard", {"weight", "margin"}, context);
    c.batch_hard_weight = weight_of(s, c.batch_hard_weight, ctx);
    c.batch_hard_margin = json_value<double>(s, "margin", c.batch_hard_margin, ctx);
    FUNDUS_CHECK(c.batch_hard_margin >= 0, ctx << ".margin: " << c.batch_hard_margin << " must be >= 0");
  }
  {
    std::string ctx = context + ".contrastive";
    const Json& s = section(loss, "contrastive", {"weight", "margin"}, context);
    c.contrastive_weight = weight_of(s, c.contrastive_weight, ctx);
    c.contrastive_margin = json_value<double>(s, "margin", c.contrastive_margin, ctx);
    FUNDUS_CHECK(c.contrastive_margin > -1 && c.contrastive_margin < 1,
                 ctx << ".margin: " << c.contrastive_margin << " outside (-1, 1)");
  }
  c.ce_weight = weight_of(section(loss, "ce", {"weight"}, context), c.ce_weight, context + ".ce");
  c.bce_weight = weight_of(section(loss, "bce", {"weight"}, context), c.bce_weight, context + ".bce");
  FUNDUS_CHECK(c.ftl_weight + c.batch_hard_weight + c.contrastive_weight + c.ce_weight + c.bce_weight > 0,
               context << ": every loss weight is 0 (set e.g. " << context << ".ftl.weight to 1)");
  return c;
}

Json LossConfig::to_json() const {
  return Json{{"ftl",
               {{"weight", ftl_weight},
                {"margin", ftl.margin},
                {"gamma", ftl.gamma},
                {"degree", degree_name(ftl.degree)},
                {"detach_alpha", ftl.detach_alpha}}},
              {"batch_hard", {{"weight", batch_hard_weight}, {"margin", batch_hard_margin}}},
              {"contrastive", {{"weight", contrastive_weight}, {"margin", contrastive_margin}}},
              {"ce", {{"weight", ce_weight}}},
              {"bce", {{"weight", bce_weight}}}};
}

namespace {

// Same-grade (|P|) and different-grade (|Q|) pairs i < j of a batch.
std::pair<int64_t, int64_t> count_grade_pairs(const torch::Tensor& grades) {
  auto g = grades.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t* p = g.data_ptr<int64_t>();
  std::map<int64_t, int64_t> per_grade;
  for (int64_t i = 0; i < g.numel(); ++i) ++per_grade[p[i]];
  int64_t n = g.numel(), positives = 0;
  for (const auto& kv : per_grade) positives += kv.second * (kv.second - 1) / 2;
  return {positives, n * (n - 1) / 2 - positives};
}

// Mean cosine over the distinct pairs of rows: (|sum of unit rows|^2 - B) / (B (B - 1)).
torch::Tensor mean_pair_cosine(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  auto u = F::normalize(x, F::NormalizeFuncOptions().p(2).dim(1).eps(1e-12));
  const double b = double(x.size(0));
  return (u.sum(0).pow(2).sum() - b) / (b * (b - 1));
}

}  // namespace

LossResult compute_loss(const LossConfig& config, const LossInputs& in) {
  FUNDUS_CHECK(in.descriptor.defined(), "loss: descriptor is undefined");
  FUNDUS_CHECK(!config.needs_logits() || in.logits.defined(),
               "loss: ce/bce weight > 0 but the model has no classifier head (logits undefined); "
               "enable the head or set loss.ce.weight and loss.bce.weight to 0");
  LossResult result;
  torch::Tensor total;
  std::vector<std::string> names;
  std::vector<torch::Tensor> values;  // read back in one device sync at the end
  auto add = [&](const char* name, double weight, const torch::Tensor& value) {
    names.push_back(name);
    values.push_back(value.detach().to(torch::kFloat64));
    auto term = value * weight;
    total = total.defined() ? total + term : term;
  };
  if (config.ftl_weight > 0) {
    torch::Tensor r;
    if (config.needs_branches()) {
      FUNDUS_CHECK(in.branch_h.defined() && in.branch_v.defined(),
                   "loss: ftl.degree=" << degree_name(config.ftl.degree)
                                       << " needs the mirror branches (branch_h, branch_v); use degree none "
                                          "for models without them");
      r = relevance_degree(in.branch_h, in.branch_v);
      FUNDUS_CHECK(r.size(0) == in.descriptor.size(0),
                   "loss: branches have " << r.size(0) << " rows, descriptor " << in.descriptor.size(0));
      if (r.numel() > 0) {
        names.push_back("relevance_mean");
        values.push_back(r.mean().to(torch::kFloat64));
      }
    }
    add("ftl", config.ftl_weight, fine_triplet_loss(in.descriptor, r, in.grades, config.ftl));
    auto [positives, negatives] = count_grade_pairs(in.grades);
    result.parts["ftl_blind"] = ftl_label_blind_reference(positives, negatives, config.ftl);
  }
  if (in.descriptor.size(0) >= 2) {
    names.push_back("mean_cos");
    values.push_back(mean_pair_cosine(in.descriptor.detach()).to(torch::kFloat64));
  }
  if (config.batch_hard_weight > 0)
    add("batch_hard", config.batch_hard_weight,
        batch_hard_triplet_loss(in.descriptor, in.grades, config.batch_hard_margin));
  if (config.contrastive_weight > 0)
    add("contrastive", config.contrastive_weight,
        contrastive_loss(in.descriptor, in.grades, config.contrastive_margin));
  if (config.ce_weight > 0) add("ce", config.ce_weight, softmax_cross_entropy_loss(in.logits, in.grades));
  if (config.bce_weight > 0) add("bce", config.bce_weight, sigmoid_bce_loss(in.logits, in.grades));
  FUNDUS_CHECK(total.defined(), "loss: every loss weight is 0");
  result.total = total;
  names.push_back("total");
  values.push_back(total.detach().to(torch::kFloat64));
  auto host = torch::stack(values).cpu();
  for (size_t i = 0; i < names.size(); ++i) result.parts[names[i]] = host[int64_t(i)].item<double>();
  return result;
}

}  // namespace fundus

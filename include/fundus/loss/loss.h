// The training objective: a weighted sum of FTL and the comparison losses, configured by the JSON
// "loss" section, e.g.
//   {"ftl": {"weight": 1, "margin": 0.25, "gamma": 1, "degree": "minmax", "detach_alpha": false},
//    "batch_hard": {"weight": 0, "margin": 0.1}, "contrastive": {"weight": 0, "margin": 0.5},
//    "ce": {"weight": 0}, "bce": {"weight": 0}}
// Absent keys keep their defaults (the values above); unknown keys, negative weights and all-zero
// weights are errors naming the key.
#pragma once

#include <map>
#include <string>

#include <torch/torch.h>

#include "fundus/core/json.h"
#include "fundus/loss/fine_triplet.h"

namespace fundus {

struct LossConfig {
  double ftl_weight = 1.0;
  FtlOptions ftl;
  double batch_hard_weight = 0.0;
  double batch_hard_margin = 0.1;
  double contrastive_weight = 0.0;
  double contrastive_margin = 0.5;
  double ce_weight = 0.0;
  double bce_weight = 0.0;

  /// Reads the "loss" object (context names it in errors, e.g. "train.json: loss").
  static LossConfig from_json(const Json& loss, const std::string& context = "loss");
  Json to_json() const;  // the complete section; from_json(to_json()) round-trips
  bool needs_logits() const { return ce_weight > 0 || bce_weight > 0; }
  bool needs_branches() const { return ftl_weight > 0 && ftl.degree != Degree::none; }
};

struct LossInputs {
  torch::Tensor descriptor;  // [B, dim] floating, L2-normalised
  torch::Tensor branch_h;    // [B, C] GeM output of the horizontal-mirror branch (for the relevance degree)
  torch::Tensor branch_v;    // [B, C] vertical-mirror branch
  torch::Tensor logits;      // [B, num_classes] or undefined (no classifier head)
  torch::Tensor grades;      // [B] int64
};

struct LossResult {
  torch::Tensor total;                  // scalar, attached to the graph
  std::map<std::string, double> parts;  // unweighted value of every active loss ("ftl", "batch_hard",
                                        // "contrastive", "ce", "bce"), "total", "relevance_mean"
                                        // when the relevance degree was computed, and two collapse
                                        // guards: "mean_cos" (mean cosine of the distinct pairs of
                                        // the batch; -> 1 when every descriptor is the same) and,
                                        // with FTL, "ftl_blind" (ftl_label_blind_reference of the
                                        // batch: what FTL is without using the grades)
};

/// Throws fundus::Error when an active loss lacks its input (ce/bce without logits, FTL with a
/// relevance degree but no branches) or shapes disagree.
LossResult compute_loss(const LossConfig& config, const LossInputs& inputs);

}  // namespace fundus

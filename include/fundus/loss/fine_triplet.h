// Fine triplet loss (FTL) of Fang et al. 2023 and its "relevance degree" (docs: method.md section 3).
//
// For a batch of descriptors D [B, dim] with grades y [B], over all pairs i<j:
//   s_ij = cos(D_i, D_j); P = {i<j: y_i == y_j}, Q = {i<j: y_i != y_j}
//   alpha_p = relu(1 + m - s_ij), alpha_n = relu(s_ij + m)   (optionally detached)
//   L = softplus( logsumexp_P(-w_ij * alpha_p * (s_ij - (1 - m))) + logsumexp_Q(gamma * alpha_n * (s_ij - m)) )
// which equals log(1 + sum_P exp(.) * sum_Q exp(.)) without ever overflowing (any gamma).
// Pair weight w_ij from the relevance degrees r (Degree):
//   none:   w_ij = gamma
//   ratio:  w_ij = r_j / r_i           (the authors' literal form, no gamma; asymmetric, so the loss
//                                        changes when the batch order changes)
//   minmax: w_ij = gamma * min(r_i, r_j) / max(r_i, r_j)   (default; symmetric, order-invariant)
// When P or Q is empty (e.g. a single-grade batch or B = 1) the loss is exactly 0 and still attached
// to the graph, with zero (finite) gradients.
//
// Thread safety: pure functions of their inputs. Work for any floating dtype and device.
#pragma once

#include <string>

#include <torch/torch.h>

namespace fundus {

enum class Degree { none, ratio, minmax };
Degree parse_degree(const std::string& name);  // "none" | "ratio" | "minmax"; throws otherwise
const char* degree_name(Degree degree);

struct FtlOptions {
  double margin = 0.25;
  double gamma = 1.0;
  Degree degree = Degree::minmax;
  bool detach_alpha = false;  // true: alpha_p / alpha_n act as constants in backward
};

/// r_i = cos(branch_h_i, branch_v_i) clamped at 1e-6, detached. branch_h, branch_v: [B, C] floating,
/// same shape. Returns [B] of their dtype. Throws fundus::Error on shape mismatch.
torch::Tensor relevance_degree(const torch::Tensor& branch_h, const torch::Tensor& branch_v);

/// Cosine similarity matrix [B, B] of the rows of x [B, dim] (rows are normalised here, so inputs
/// need not be unit length; for unit rows this is x x^T).
torch::Tensor cosine_matrix(const torch::Tensor& x);

/// The label-blind reference value of FTL for a batch with `positives` = |P| and `negatives` = |Q|
/// pairs: the loss when every pair has one common similarity s, minimised over s in [-1, 1] with
/// equal relevance degrees (w = gamma; 1 for degree=ratio). An embedding reaches it without using
/// a single label (for m = 0.25, gamma = 1: ln|P| + ln|Q| + 2s^2 - 2s + 0.875, least at s = 0.5;
/// 8.851 for a batch of 5 grades x 4). A training loss that stays near it has learned nothing about
/// grades. 0 when P or Q is empty (the loss is 0 there too).
double ftl_label_blind_reference(int64_t positives, int64_t negatives, const FtlOptions& options = {});

/// descriptors [B, dim] floating; relevance [B] (ignored, may be undefined, for Degree::none;
/// detached and clamped at 1e-6 here); grades [B] int64. One device sync (the empty-set test). Returns a scalar of the
/// descriptors' dtype. Throws fundus::Error on bad shapes, dtypes or options (margin outside [0, 1), gamma <= 0).
torch::Tensor fine_triplet_loss(const torch::Tensor& descriptors, const torch::Tensor& relevance,
                                const torch::Tensor& grades, const FtlOptions& options = {});

}  // namespace fundus

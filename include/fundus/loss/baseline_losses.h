// Comparison losses for the ablations of method.md section 3: batch-hard triplet and contrastive
// (pair losses on cosine similarity of descriptors), softmax cross-entropy and one-hot sigmoid BCE
// (on classifier logits; BCE mimics the authors' training).
//
// Shapes: descriptors [B, dim] floating (normalised internally, see cosine_matrix), grades [B] int64,
// logits [B, num_classes] floating. Every function returns a scalar of the input's dtype that is
// attached to the graph; a pair loss with no valid pair/anchor returns exactly 0 with zero gradients.
// Bad shapes, dtypes or grades outside [0, num_classes) throw fundus::Error.
#pragma once

#include <torch/torch.h>

namespace fundus {

/// Batch-hard triplet (Hermans et al. 2017) on cosine distance d = 1 - s: for every anchor with at
/// least one positive (same grade, other sample) and one negative, relu(max_pos d - min_neg d + margin);
/// mean over those anchors.
torch::Tensor batch_hard_triplet_loss(const torch::Tensor& descriptors, const torch::Tensor& grades, double margin);

/// Contrastive on cosine similarity over pairs i<j: positives are pulled to s = 1, negatives pushed
/// below `margin`: mean_P (1 - s_ij) + mean_Q relu(s_ij - margin); an empty set contributes 0.
torch::Tensor contrastive_loss(const torch::Tensor& descriptors, const torch::Tensor& grades, double margin);

/// Mean softmax cross-entropy of logits against grades.
torch::Tensor softmax_cross_entropy_loss(const torch::Tensor& logits, const torch::Tensor& grades);

/// Mean sigmoid binary cross-entropy of logits against one-hot(grades) (mean over B x num_classes).
torch::Tensor sigmoid_bce_loss(const torch::Tensor& logits, const torch::Tensor& grades);

}  // namespace fundus

// Explanations: where in the fundus photograph the model looks.
//
// mirror attention (models with attention = mirror): the mirror block's per-position scores
//   (ModelOutput::attention_h / attention_v: the attention each ORIGINAL position receives from the
//   horizontally / vertically mirrored view, [H',W'] on the backbone grid), upsampled bilinearly
//   (align_corners = false: each feature cell covers its patch of the input) to the preprocessed
//   image. heat = the mean of the two branch maps, min-max normalised to [0,1]; each branch is also
//   shown on its own (normalised separately).
// grad-cam (attention none/self, or method = "gradcam"): Grad-CAM of a similarity score with respect
//   to the backbone feature map F [C,H',W'] of the original view: channel weights a_c = mean over
//   positions of dS/dF_c, map = ReLU(sum_c a_c F_c), upsampled and normalised as above.
//   S = cos(d, r) for a reference descriptor r (a gallery case: "why are these two similar");
//   without a reference S = <d, stopgrad(d / |d|)> = |d| (d the descriptor before L2 normalisation):
//   the cosine of a descriptor with itself is constant, so its gradient would vanish.
// A constant map (e.g. an untrained attention block, which is exactly uniform) normalises to zeros.
//
// The overlay is the JET colour map of the heat blended over the preprocessed image; the panel puts
// preprocessed | overlay | horizontal | vertical (mirror) or preprocessed | overlay | heat (grad-cam)
// side by side with labels.
//
// Both methods run the network's one forward pass (RetrievalNetImpl::forward_detailed): the map and the
// descriptor come from it, so an explanation's descriptor is the one ModelRunner::embed returns.
//
// The header is torch-free (the model is only forward-declared); explain_image needs the torch
// library. Not thread-safe per net: one forward at a time per RetrievalNetImpl instance.
#pragma once

#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace fundus {

class RetrievalNetImpl;

struct ExplainOptions {
  std::string method = "auto";  // auto (mirror attention when the model has it, else grad-cam) | attention | gradcam
  double alpha = 0.45;          // heat-map opacity in the overlay, 0..1
};

struct Explanation {
  std::string method;      // "mirror-attention" or "grad-cam"
  cv::Mat heat;            // CV_32FC1, size x size of the preprocessed image, values in [0,1]
  cv::Mat heat_h, heat_v;  // mirror attention: each branch (same size, [0,1]); empty for grad-cam
  cv::Mat overlay;         // RGB CV_8UC3
  cv::Mat panel;           // RGB CV_8UC3, the tiles above side by side with captions
  cv::Size feature_grid;   // resolution of the underlying map (W', H')
  // The image's descriptor from the same forward pass (what ModelRunner::embed returns for it, float
  // rounding aside for grad-cam, which runs with autograd), so a query that shows its map needs no
  // second pass.
  std::vector<float> descriptor;
};

/// Explains one preprocessed image (RGB CV_8UC3, the model's input size) with `net` (eval mode).
/// `reference` (descriptor_dim floats, unit norm) selects the grad-cam similarity target; ignored by
/// mirror attention. Throws fundus::Error for a wrong image, reference size or method.
Explanation explain_image(RetrievalNetImpl& net, const cv::Mat& preprocessed, const ExplainOptions& options = {},
                          const std::vector<float>& reference = {});

// ---- torch-free helpers ----------------------------------------------------------------------

/// Min-max normalisation to [0,1] (CV_32FC1); a constant or empty-range map gives zeros.
cv::Mat normalize_heat(const cv::Mat& map);
/// JET colour map of a [0,1] heat map, RGB CV_8UC3.
cv::Mat colorize_heat(const cv::Mat& heat);
/// (1 - alpha) * image + alpha * colorize_heat(heat); heat must have the image's size.
cv::Mat heatmap_overlay(const cv::Mat& rgb, const cv::Mat& heat, double alpha);
/// Tiles (RGB, same height) side by side, each with a caption strip above it.
cv::Mat labelled_panel(const std::vector<cv::Mat>& tiles, const std::vector<std::string>& labels);

}  // namespace fundus

// torchvision's ImageNet channel statistics (RGB, for [0,1] inputs): the one definition used by the
// network's own input normalisation (model/retrieval_net.h) and by the data pipeline's
// Normalization::imagenet(). Torch-free.
#pragma once

#include <array>

namespace fundus {

constexpr std::array<double, 3> kImageNetMean{0.485, 0.456, 0.406};
constexpr std::array<double, 3> kImageNetStd{0.229, 0.224, 0.225};

}  // namespace fundus

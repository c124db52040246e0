// Explanation maps (mirror attention, Grad-CAM) and their lesion-localisation metrics.
#include <cmath>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/error.h"
#include "fundus/data/image_io.h"
#include "fundus/data/preprocess.h"
#include "fundus/data/synth.h"
#include "fundus/model/retrieval_net.h"
#include "fundus/model/runtime.h"
#include "fundus/retrieval/localisation.h"
#include "fundus/retrieval/model_runner.h"
#include "retrieval_fixture.h"

using namespace fundus;

namespace {

cv::Mat preprocessed(ModelRunner& m, size_t i) {
  return preprocess_fundus_file(test::retrieval_data().dataset.records.at(i).image_path, m.preprocess()).image;
}

void expect_unit_map(const cv::Mat& heat, int size) {
  ASSERT_EQ(heat.type(), CV_32FC1);
  ASSERT_EQ(heat.size(), cv::Size(size, size));
  double lo = 0, hi = 0;
  cv::minMaxLoc(heat, &lo, &hi);
  // Min-max normalised: the lowest value maps to 0 and the highest to 1, or a constant map to zeros
  // (upsampled from the feature grid, so the extremes are met to interpolation precision).
  EXPECT_GE(lo, 0.0);
  EXPECT_LE(lo, 1e-5);
  if (hi != 0.0) {
    EXPECT_NEAR(hi, 1.0, 1e-5);
  }
}

}  // namespace

TEST(Explain, MirrorAttentionMapsHaveTheImageSizeAndAreNonNegative) {
  ModelRunner m(test::retrieval_data().ckpt_mirror);
  cv::Mat x = preprocessed(m, 3);
  Explanation e = m.explain(x);
  EXPECT_EQ(e.method, "mirror-attention");
  expect_unit_map(e.heat, 64);
  expect_unit_map(e.heat_h, 64);
  expect_unit_map(e.heat_v, 64);
  EXPECT_EQ(e.feature_grid, cv::Size(2, 2));  // MobileNetV2 at 64 px
  double hi = 0;
  cv::minMaxLoc(e.heat, nullptr, &hi);
  EXPECT_NEAR(hi, 1.0, 1e-6);  // random theta convs give a non-uniform map
  EXPECT_EQ(e.overlay.size(), x.size());
  EXPECT_EQ(e.overlay.type(), CV_8UC3);
  EXPECT_EQ(e.panel.cols, 4 * 64 + 5 * 4);  // four tiles and their gaps
  // The same image gives the same map.
  Explanation again = m.explain(x);
  EXPECT_EQ(cv::norm(e.heat, again.heat, cv::NORM_INF), 0.0);
  // The map's forward pass also yields the descriptor: the very vector embed() gives (queries with
  // an attention map rely on this to run the network once).
  std::vector<float> d = m.embed(x);
  ASSERT_EQ(e.descriptor.size(), d.size());
  for (size_t i = 0; i < d.size(); ++i) ASSERT_NEAR(e.descriptor[i], d[i], 1e-6f) << i;
  // Grad-CAM on demand for a mirror model as well.
  Explanation g = m.explain(x, {"gradcam", 0.5});
  EXPECT_EQ(g.method, "grad-cam");
  expect_unit_map(g.heat, 64);
}

TEST(Explain, GradCamForModelsWithoutAttention) {
  ModelRunner m(test::retrieval_data().ckpt_none);
  cv::Mat x = preprocessed(m, 5), other = preprocessed(m, 12);
  EXPECT_THROW(m.explain(x, {"attention", 0.5}), Error);
  Explanation self = m.explain(x);
  EXPECT_EQ(self.method, "grad-cam");
  expect_unit_map(self.heat, 64);
  EXPECT_TRUE(self.heat_h.empty());
  // Grad-CAM's forward pass is the network's forward as well: its descriptor is embed()'s.
  std::vector<float> d = m.embed(x);
  ASSERT_EQ(self.descriptor.size(), d.size());
  for (size_t i = 0; i < d.size(); ++i) ASSERT_NEAR(self.descriptor[i], d[i], 1e-6f) << i;
  double hi = 0;
  cv::minMaxLoc(self.heat, nullptr, &hi);
  EXPECT_GT(hi, 0.5);  // a real map, not the all-zero fallback
  EXPECT_EQ(self.panel.cols, 3 * 64 + 4 * 4);
  // With a gallery case as the target the map changes.
  Explanation ref = m.explain(x, {}, m.embed(other));
  expect_unit_map(ref.heat, 64);
  EXPECT_GT(cv::norm(self.heat, ref.heat, cv::NORM_L1), 0.0);
  EXPECT_THROW(m.explain(x, {}, std::vector<float>(3, 0.f)), Error);
  EXPECT_THROW(m.explain(cv::Mat::zeros(32, 32, CV_8UC3)), Error);
}

// Issue 12: explanations and descriptors share the network's one forward pass. For the model
// configuration of every preset (on the small convnet4 backbone, with every parameter perturbed so
// that the attention blocks are not the identity they start as), plus the other poolings, frozen
// stages and channels-last, the descriptor an explanation carries equals forward()'s.
TEST(Explain, DescriptorEqualsForwardForEveryPresetConfiguration) {
  std::vector<std::pair<std::string, ModelConfig>> configs;
  for (const std::string& name : model_preset_names()) {
    ModelConfig c = ModelConfig::from_json(model_preset(name));
    c.backbone = BackboneKind::convnet4;
    c.input_size = 64;
    c.pretrained = "";
    configs.emplace_back(name, c);
  }
  for (PoolingKind pooling : {PoolingKind::avg, PoolingKind::max, PoolingKind::rmac}) {
    ModelConfig c = configs.front().second;
    c.pooling = pooling;
    c.combine = Combine::sum;
    configs.emplace_back(std::string("paper/") + pooling_name(pooling) + "/sum", c);
  }
  ModelConfig frozen = configs.front().second;
  frozen.spatial_attention = false;
  frozen.frozen_stages = 2;
  configs.emplace_back("paper/frozen_stages=2", frozen);
  ASSERT_GE(configs.size(), 9u);

  cv::Mat image(64, 64, CV_8UC3);
  cv::randu(image, cv::Scalar::all(0), cv::Scalar::all(256));
  // explain_image's input: [0,1] RGB (float(v) / 255, as image_to_tensor computes it).
  torch::Tensor x =
      torch::from_blob(image.data, {1, 64, 64, 3}, torch::kUInt8).permute({0, 3, 1, 2}).to(torch::kFloat32).div(255);
  for (bool channels_last : {false, true}) {
    for (const auto& [label, config] : configs) {
      SCOPED_TRACE(label + (channels_last ? " channels-last" : ""));
      seed_torch(5);
      RetrievalNet net(config);
      {
        torch::NoGradGuard no_grad;
        for (auto& p : net->parameters()) p.add_(torch::randn_like(p) * 0.05);
      }
      if (channels_last) net->use_channels_last(true);
      net->eval();
      torch::Tensor expected;
      {
        torch::NoGradGuard no_grad;
        expected = net->forward(x).descriptor;
      }
      std::vector<std::string> methods{"gradcam"};
      if (net->mirror || net->self_attention) methods.push_back("attention");
      for (const std::string& method : methods) {
        Explanation e = explain_image(*net, image, {method, 0.5});
        ASSERT_EQ(int64_t(e.descriptor.size()), expected.numel()) << method;
        torch::Tensor got = torch::from_blob(e.descriptor.data(), {1, int64_t(e.descriptor.size())}, torch::kFloat32);
        EXPECT_LE((got - expected).abs().max().item<double>(), 1e-6) << method;
      }
    }
  }
}

TEST(Explain, NormalisationAndOverlayArithmetic) {
  cv::Mat map = (cv::Mat_<float>(2, 2) << 1, 3, 5, 9);
  cv::Mat n = normalize_heat(map);
  EXPECT_FLOAT_EQ(n.at<float>(0, 0), 0.f);
  EXPECT_FLOAT_EQ(n.at<float>(0, 1), 0.25f);
  EXPECT_FLOAT_EQ(n.at<float>(1, 1), 1.f);
  EXPECT_EQ(cv::countNonZero(normalize_heat(cv::Mat(3, 3, CV_32F, cv::Scalar(2.f)))), 0);
  cv::Mat img(2, 2, CV_8UC3, cv::Scalar(100, 100, 100));
  cv::Mat o = heatmap_overlay(img, n, 0.0);
  EXPECT_EQ(cv::norm(o, img, cv::NORM_INF), 0.0);
  cv::Mat jet = colorize_heat(n);
  EXPECT_EQ(cv::norm(heatmap_overlay(img, n, 1.0), jet, cv::NORM_INF), 0.0);
  EXPECT_GT(jet.at<cv::Vec3b>(1, 1)[0], jet.at<cv::Vec3b>(1, 1)[2]);  // hot = red in RGB
  EXPECT_THROW(heatmap_overlay(img, n, 1.5), Error);
}

TEST(Localisation, HandMadeHeatMapAndMask) {
  cv::Mat heat = cv::Mat::zeros(10, 10, CV_32F), lesion = cv::Mat::zeros(10, 10, CV_8U);
  lesion(cv::Rect(2, 2, 2, 2)).setTo(1);
  heat(cv::Rect(2, 2, 2, 2)).setTo(1.f);
  LocalisationScore s = localisation_score(heat, lesion, cv::Mat(), 0);
  EXPECT_DOUBLE_EQ(s.attention_in_lesion, 1.0);
  EXPECT_DOUBLE_EQ(s.lesion_share, 0.04);
  EXPECT_DOUBLE_EQ(s.ratio, 25.0);
  EXPECT_TRUE(s.pointing_hit);
  EXPECT_DOUBLE_EQ(s.pointing_distance, 0.0);
  EXPECT_DOUBLE_EQ(s.pointing_chance, 0.04);

  // Half the mass on the lesion: heat 1 on 4 lesion pixels and 4/96 elsewhere.
  heat.setTo(4.f / 96);
  heat(cv::Rect(2, 2, 2, 2)).setTo(1.f);
  s = localisation_score(heat, lesion, cv::Mat(), 0);
  EXPECT_NEAR(s.attention_in_lesion, 0.5, 1e-6);
  EXPECT_NEAR(s.ratio, 12.5, 1e-5);

  // Uniform heat: ratio 1.
  s = localisation_score(cv::Mat(10, 10, CV_32F, cv::Scalar(0.3f)), lesion, cv::Mat(), 0);
  EXPECT_NEAR(s.ratio, 1.0, 1e-9);

  // Pointing game: peak 5 px right of the lesion's right edge (x = 3 -> x = 8).
  heat = cv::Mat::zeros(10, 10, CV_32F);
  heat.at<float>(3, 8) = 1.f;
  s = localisation_score(heat, lesion, cv::Mat(), 4.9);
  EXPECT_FALSE(s.pointing_hit);
  EXPECT_NEAR(s.pointing_distance, 5.0, 1e-3);
  EXPECT_DOUBLE_EQ(s.attention_in_lesion, 0.0);
  EXPECT_TRUE(localisation_score(heat, lesion, cv::Mat(), 5.0).pointing_hit);

  // A single lesion pixel, tolerance 1: the pixel and its 4 neighbours (diagonals are 1.41 away).
  cv::Mat one = cv::Mat::zeros(10, 10, CV_8U);
  one.at<uint8_t>(5, 5) = 1;
  EXPECT_DOUBLE_EQ(localisation_score(heat, one, cv::Mat(), 1.0).pointing_chance, 0.05);

  // The FOV restricts everything: only the left half counts.
  cv::Mat fov = cv::Mat::zeros(10, 10, CV_8U);
  fov(cv::Rect(0, 0, 5, 10)).setTo(255);
  heat = cv::Mat::zeros(10, 10, CV_32F);
  heat(cv::Rect(2, 2, 2, 2)).setTo(1.f);
  heat(cv::Rect(7, 7, 3, 3)).setTo(5.f);  // outside the FOV: ignored
  s = localisation_score(heat, lesion, fov, 0);
  EXPECT_DOUBLE_EQ(s.attention_in_lesion, 1.0);
  EXPECT_DOUBLE_EQ(s.lesion_share, 0.08);
  EXPECT_TRUE(s.pointing_hit);

  // No mass at all counts as uniform; no lesion is an error.
  s = localisation_score(cv::Mat::zeros(10, 10, CV_32F), lesion, cv::Mat(), 2);
  EXPECT_DOUBLE_EQ(s.ratio, 1.0);
  EXPECT_FALSE(s.pointing_hit);
  EXPECT_THROW(localisation_score(heat, cv::Mat::zeros(10, 10, CV_8U), cv::Mat(), 1), Error);
  // Fractional coverage counts by area.
  cv::Mat cover = cv::Mat::zeros(10, 10, CV_32F);
  cover.at<float>(0, 0) = 0.5f;
  s = localisation_score(cv::Mat(10, 10, CV_32F, cv::Scalar(1.f)), cover, cv::Mat(), 0);
  EXPECT_DOUBLE_EQ(s.lesion_share, 0.005);
  EXPECT_DOUBLE_EQ(s.attention_in_lesion, 0.005);
}

TEST(Localisation, MaskGeometryFollowsThePreprocessing) {
  // An off-centre field of view, so the FOV crop matters: map the photograph itself through the
  // geometry and compare with what preprocess_fundus made of it.
  SynthCaseSpec spec;
  spec.size = 512;
  spec.grade = 3;
  spec.layout_seed = 9;
  SynthCase c = render_synthetic_fundus(spec);
  for (bool crop : {true, false})
    for (int size : {64, 160}) {
      PreprocessOptions o;
      o.size = size;
      o.crop_fov = crop;
      o.mask = false;
      PreprocessResult r = preprocess_fundus(c.image, o);
      cv::Mat mapped, u8;
      map_to_preprocessed(c.image, r, o).convertTo(u8, CV_8U);
      EXPECT_LE(cv::norm(u8, r.image, cv::NORM_INF), 1.0) << "crop " << crop << " size " << size;
      // A mask shifted by a few pixels would be visibly off: the test can tell.
      cv::Mat shifted = cv::Mat::zeros(c.image.size(), c.image.type());
      c.image(cv::Rect(0, 0, 500, 512)).copyTo(shifted(cv::Rect(12, 0, 500, 512)));
      map_to_preprocessed(shifted, r, o).convertTo(mapped, CV_8U);
      EXPECT_GT(cv::norm(mapped, r.image, cv::NORM_L1) / (size * size * 3), 2.0);
    }
  // Reduced JPEG decoding (the decoded image is 1/4 of the file): the original-resolution mask still
  // lands where the decoded pixels are.
  std::vector<uint8_t> jpeg;
  cv::Mat bgr;
  cv::cvtColor(c.image, bgr, cv::COLOR_RGB2BGR);
  cv::imencode(".jpg", bgr, jpeg, {cv::IMWRITE_JPEG_QUALITY, 95});
  PreprocessOptions o;
  o.size = 64;
  o.mask = false;
  PreprocessResult r =
      preprocess_fundus_bytes(std::string_view(reinterpret_cast<const char*>(jpeg.data()), jpeg.size()), "x.jpg", o);
  ASSERT_GT(r.reduce, 1);
  cv::Mat mapped;
  map_to_preprocessed(c.image, r, o).convertTo(mapped, CV_8U);
  EXPECT_LT(cv::norm(mapped, r.image, cv::NORM_L1) / (64 * 64 * 3), 2.0);
}

TEST(Localisation, EndToEndOnTheSyntheticSet) {
  const auto& data = test::retrieval_data();
  ModelRunner m(data.ckpt_mirror);
  LocalisationOptions o;
  o.data = data.manifest;
  o.splits = "";
  o.masks_dir = data.synth_dir + "/masks";
  o.progress = false;
  o.limit = 8;
  LocalisationReport r = evaluate_localisation(m, o);
  EXPECT_EQ(r.method, "mirror-attention");
  EXPECT_EQ(r.evaluated(), 8);
  EXPECT_EQ(r.evaluated() + r.without_lesions, r.images);
  size_t healthy = 0;  // grade 0 has no lesions
  for (size_t i = 0; i < size_t(r.images); ++i) healthy += data.dataset.records[i].grade == 0;
  EXPECT_GE(r.without_lesions, int64_t(healthy));
  for (const LocalisationImage& i : r.per_image) EXPECT_NE(i.grade, 0) << i.id;
  EXPECT_GT(r.mean_lesion_share, 0.0);
  EXPECT_LT(r.mean_lesion_share, 0.5);
  double hits = 0;  // the hit rate is the share of evaluated images whose attention peak hits a lesion
  for (const LocalisationImage& i : r.per_image) hits += i.score.pointing_hit ? 1 : 0;
  EXPECT_NEAR(r.pointing_hit_rate, hits / double(r.per_image.size()), 1e-12);
  EXPECT_NEAR(r.ratio_of_means, r.mean_attention_in_lesion / r.mean_lesion_share, 1e-12);
  EXPECT_EQ(r.to_json()["per_image"].size(), size_t(r.evaluated()));
  o.masks_dir = data.synth_dir;  // no masks there
  EXPECT_THROW(evaluate_localisation(m, o), Error);
}

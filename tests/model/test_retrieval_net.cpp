// RetrievalNet: configuration, output contract, the single 3B batch, determinism, weight loading,
// and the `fundus model` CLI.
#include "fundus/core/error.h"
#include "fundus/model/retrieval_net.h"
#include "fundus/model/runtime.h"
#include "model_test_util.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::max_abs_diff;

ModelConfig small(const std::string& attention, const std::string& combine = "concat", int head = 0) {
  ModelConfig c;
  c.backbone = BackboneKind::mobilenet_v2;
  c.input_size = 64;
  c.attention = attention_choices().parse(attention, "attention");
  c.combine = combine_choices().parse(combine, "combine");
  c.head_classes = head;
  return c;
}

TEST(ModelConfig, DefaultsPresetsAndErrors) {
  ModelConfig d = ModelConfig::from_json(Json::object());
  EXPECT_EQ(d.backbone, BackboneKind::densenet121);
  EXPECT_EQ(d.input_size, 256);
  EXPECT_EQ(d.attention, AttentionKind::mirror);
  EXPECT_EQ(d.aggregation, Aggregation::literal);
  EXPECT_EQ(d.to_json(), model_preset("paper"));
  for (const auto& name : model_preset_names()) {
    ModelConfig c = ModelConfig::from_json(model_preset(name));
    EXPECT_EQ(c.to_json(), model_preset(name)) << name;
  }
  EXPECT_EQ(model_preset("cpu")["backbone"], "mobilenet_v2");
  EXPECT_EQ(model_preset("self-attention")["head_classes"], 5);
  EXPECT_EQ(model_preset("self-attention")["combine"], "sum");
  EXPECT_EQ(model_preset("baseline-gem")["attention"], "none");
  EXPECT_EQ(model_section(Json{{"model", {{"backbone", "resnet18"}}}, {"loss", Json::object()}})["backbone"],
            "resnet18");

  auto error = [](const Json& j) {
    try {
      ModelConfig::from_json(j, "run.json: model");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(error({{"backbon", "resnet18"}}).find("run.json: model: unknown key 'backbon'"), std::string::npos);
  EXPECT_NE(error({{"attention", "cross"}}).find("run.json: model.attention: 'cross' is not one of none, mirror, self"),
            std::string::npos);
  EXPECT_NE(error({{"input_size", "big"}}).find("model.input_size"), std::string::npos);
  EXPECT_NE(error({{"pooling", "spoc"}}).find("run.json: model.pooling: 'spoc' is not one of gem, avg, max, rmac"),
            std::string::npos);
  EXPECT_NE(error({{"combine", "mean"}}).find("run.json: model.combine: 'mean' is not one of concat, sum"),
            std::string::npos);
  EXPECT_NE(error({{"backbone", "vgg16"}}).find("run.json: model.backbone: 'vgg16' is not one of mobilenet_v2"),
            std::string::npos);
  EXPECT_NE(error({{"aggregation", 2}}).find("run.json: model.aggregation"), std::string::npos);
  // A misspelt key names the closest valid one.
  EXPECT_NE(error({{"poling", "gem"}}).find("run.json: model: unknown key 'poling' (did you mean 'pooling'?"),
            std::string::npos);
  // Every choice round-trips through its spelling.
  ModelConfig every = ModelConfig::from_json({{"backbone", "convnet4"},
                                              {"attention", "self"},
                                              {"aggregation", "standard"},
                                              {"pooling", "rmac"},
                                              {"combine", "sum"}});
  EXPECT_EQ(every.backbone, BackboneKind::convnet4);
  EXPECT_EQ(every.attention, AttentionKind::self);
  EXPECT_EQ(every.aggregation, Aggregation::standard);
  EXPECT_EQ(every.pooling, PoolingKind::rmac);
  EXPECT_EQ(every.combine, Combine::sum);
  EXPECT_EQ(ModelConfig::from_json(every.to_json()).to_json(), every.to_json());
  EXPECT_EQ(every.to_json()["pooling"], "rmac");
  EXPECT_THROW(model_preset("huge"), Error);
}

TEST(RetrievalNet, OutputContractForEveryAttention) {
  seed_torch(1);
  torch::Tensor x = torch::rand({2, 3, 64, 64});
  struct Case {
    std::string attention, combine;
    int64_t dim;
    bool maps;
  };
  for (const Case& k : {Case{"mirror", "concat", 2560, true}, Case{"mirror", "sum", 1280, true},
                        Case{"self", "concat", 1280, true}, Case{"none", "concat", 1280, false}}) {
    SCOPED_TRACE(k.attention + "/" + k.combine);
    RetrievalNet net(small(k.attention, k.combine, 5));
    EXPECT_EQ(net->descriptor_dim(), k.dim);
    net->eval();
    torch::NoGradGuard no_grad;
    ModelOutput out = net->forward(x, true);
    EXPECT_EQ(out.descriptor.sizes(), (std::vector<int64_t>{2, k.dim}));
    EXPECT_LE(max_abs_diff(out.descriptor.norm(2, 1), torch::ones({2})), 1e-5);
    EXPECT_EQ(out.branch_h.sizes(), (std::vector<int64_t>{2, 1280}));
    EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 5}));
    EXPECT_EQ(out.attention_h.defined(), k.maps);
    if (k.maps) EXPECT_EQ(out.attention_v.sizes(), (std::vector<int64_t>{2, 2, 2}));
    // Identity at init: both branches pool the same map, so the relevance degree starts at 1.
    EXPECT_TRUE(out.branch_h.equal(out.branch_v));
    EXPECT_FALSE(net->forward(x).attention_h.defined());
  }
  EXPECT_FALSE(RetrievalNet(small("none"))->forward(x).logits.defined());
  EXPECT_THROW(RetrievalNet(small("none"))->forward(torch::rand({2, 1, 64, 64})), Error);
}

TEST(RetrievalNet, OneBatchOfThreeViewsEqualsThreeCallsInEvalMode) {
  seed_torch(2);
  ModelConfig c = small("mirror");
  c.imagenet_normalize = false;
  RetrievalNet net(c);
  // Make the backbone's features and the block non-trivial so that the views matter.
  test::randomize_batchnorm(*net);
  {
    torch::NoGradGuard no_grad;
    net->mirror->w_h->weight.normal_(0, 0.05);
    net->mirror->w_v->weight.normal_(0, 0.05);
  }
  net->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::rand({2, 3, 64, 64});
  ModelOutput out = net->forward(x);
  auto view = [&](const torch::Tensor& v) { return net->backbone->forward(net->spatial_attention(v)); };
  torch::Tensor x_a = view(x);
  ASSERT_GT(x_a.std().item<double>(), 0.01) << "features are degenerate; the test would prove nothing";
  auto m = net->mirror(x_a, view(x.flip({3})), view(x.flip({2})));
  torch::Tensor expected = torch::cat({net->pool(m.y_h), net->pool(m.y_v)}, 1);
  expected = expected / expected.norm(2, 1, true);
  EXPECT_LE(max_abs_diff(out.descriptor, expected), 1e-5);
  EXPECT_GT(max_abs_diff(out.branch_h, out.branch_v), 1e-4) << "the mirror branches differ once W != 0";
}

TEST(RetrievalNet, FrozenStagesSplitTheForwardAndNeverTrain) {
  for (const std::string backbone : {"mobilenet_v2", "resnet18", "densenet121", "convnet4"}) {
    seed_torch(4);
    ModelConfig c = small("mirror");
    c.backbone = backbone_choices().parse(backbone, "backbone");
    c.spatial_attention = false;
    RetrievalNet full(c);
    c.frozen_stages = 2;
    RetrievalNet frozen(c);
    load_into(*frozen, module_state_dict(*full));
    full->eval();
    frozen->eval();
    torch::NoGradGuard no_grad;
    torch::Tensor x = torch::rand({2, 3, 64, 64});
    // Splitting the forward at the frozen stages changes nothing.
    EXPECT_LE(max_abs_diff(frozen->forward(x).descriptor, full->forward(x).descriptor), 1e-6) << backbone;
    torch::Tensor f = frozen->frozen_features(x);
    EXPECT_EQ(f.size(0), 6) << "three views of two images";
    EXPECT_LE(max_abs_diff(frozen->forward_from_frozen(f, 2).descriptor, full->forward(x).descriptor), 1e-6)
        << backbone;
  }
  // Training mode: the frozen stages stay in eval mode and get no gradient; the rest trains.
  seed_torch(5);
  ModelConfig c = small("mirror");
  c.spatial_attention = false;
  c.frozen_stages = 14;
  RetrievalNet net(c);
  net->train();
  auto frozen_modules = net->backbone->stage_modules(0, 14), live = net->backbone->stage_modules(14, 19);
  for (auto& m : frozen_modules) EXPECT_FALSE(m->is_training());
  for (auto& m : live) EXPECT_TRUE(m->is_training());
  net->forward(torch::rand({4, 3, 64, 64})).descriptor.sum().backward();
  for (auto& m : frozen_modules)
    for (auto& p : m->parameters()) EXPECT_FALSE(p.grad().defined());
  int64_t with_grad = 0;
  for (auto& m : live)
    for (auto& p : m->parameters()) with_grad += p.grad().defined();
  EXPECT_GT(with_grad, 0);
  // Validation: too many stages, or input spatial attention in front of a frozen prefix.
  c.frozen_stages = 19;
  EXPECT_THROW(RetrievalNet{c}, Error);
  c.frozen_stages = 2;
  c.spatial_attention = true;
  EXPECT_THROW(c.validate(), Error);
}

TEST(RetrievalNet, EvalDescriptorsAreBitIdenticalAndSeeded) {
  seed_torch(3);
  RetrievalNet a(small("mirror"));
  seed_torch(3);
  RetrievalNet b(small("mirror"));
  a->eval();
  b->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::rand({3, 3, 64, 64});
  torch::Tensor d1 = a->forward(x).descriptor;
  EXPECT_TRUE(d1.equal(a->forward(x).descriptor));
  EXPECT_TRUE(d1.equal(b->forward(x).descriptor)) << "same seed, same network";
}

TEST(RetrievalNet, ChannelsLastGivesTheSameResults) {
  seed_torch(6);
  RetrievalNet net(small("mirror", "concat", 5));
  test::randomize_batchnorm(*net);
  // float64: float32 train-mode gradients of this net differ by ~1% between memory formats (and
  // between thread counts), so only float64 can show that the formats compute the same function.
  net->to(torch::kDouble);
  torch::Tensor x = torch::rand({2, 3, 64, 64}, torch::kDouble);
  net->train();
  ModelOutput a = net->forward(x);
  a.descriptor.sum().backward();
  torch::Tensor grad = net->backbone->parameters().front().grad().clone();
  net->zero_grad();
  net->use_channels_last();
  EXPECT_TRUE(net->backbone->parameters().front().is_contiguous(torch::MemoryFormat::ChannelsLast));
  ModelOutput b = net->forward(x);
  b.descriptor.sum().backward();
  EXPECT_LE(max_abs_diff(a.descriptor, b.descriptor), 1e-10);
  EXPECT_LE(max_abs_diff(a.logits, b.logits), 1e-10);
  EXPECT_LE(max_abs_diff(grad, net->backbone->parameters().front().grad()), 1e-8 * grad.abs().max().item<double>());
  // Weights save and load as usual.
  test::TempDir dir;
  write_state_dict(dir.file("cl.pth"), module_state_dict(*net));
  EXPECT_TRUE(
      read_state_dict(dir.file("cl.pth"))["backbone.features.0.0.weight"].equal(net->backbone->parameters().front()));
  net->use_channels_last(false);
  EXPECT_TRUE(net->backbone->parameters().front().is_contiguous());
}

TEST(RetrievalNet, TrainsEndToEnd) {
  seed_torch(4);
  RetrievalNet net(small("mirror", "concat", 5));
  net->train();
  ModelOutput out = net->forward(torch::rand({2, 3, 64, 64}));
  (out.descriptor.sum() + out.logits.sum() + out.branch_h.sum()).backward();
  for (const auto& p : net->named_parameters())
    EXPECT_TRUE(p.value().grad().defined()) << p.key() << " gets no gradient";
  EXPECT_NE(net->pool->p.grad().item<float>(), 0.0f);
  EXPECT_NE(net->spatial_attention->conv->weight.grad().abs().sum().item<float>(), 0.0f);
  EXPECT_NE(net->mirror->w_h->weight.grad().abs().sum().item<float>(), 0.0f);
}

TEST(RetrievalNet, WeightsRoundTripAndPretrainedBackbone) {
  seed_torch(5);
  test::TempDir dir;
  RetrievalNet a(small("mirror", "concat", 5));
  {
    torch::NoGradGuard no_grad;
    a->mirror->w_h->weight.normal_(0, 0.05);
    a->pool->p.fill_(2.5);
  }
  write_state_dict(dir.file("net.pth"), module_state_dict(*a));
  ModelConfig c = small("mirror", "concat", 5);
  c.pretrained = dir.file("net.pth");
  RetrievalNet b(c);  // a full RetrievalNet file: every entry required
  a->eval();
  b->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::rand({1, 3, 64, 64});
  EXPECT_TRUE(a->forward(x).descriptor.equal(b->forward(x).descriptor));

  // A wrong backbone fails naming the file.
  ModelConfig r = small("mirror");
  r.backbone = BackboneKind::resnet18;
  r.pretrained = dir.file("net.pth");
  try {
    RetrievalNet bad(r);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("net.pth: cannot load into the resnet18 model"), std::string::npos)
        << e.what();
  }

  std::string weights = test::shared_model("mobilenet_v2_imagenet1k.pth");
  if (weights.empty()) GTEST_SKIP() << "shared model mobilenet_v2_imagenet1k.pth not found";
  RetrievalNet cpu(ModelConfig::from_json(model_preset("cpu")), false);
  LoadReport report = cpu->load_pretrained(weights);
  EXPECT_EQ(report.loaded.size(), 312u);
  EXPECT_EQ(report.ignored, (std::vector<std::string>{"classifier.1.weight", "classifier.1.bias"}));
  EXPECT_EQ(report.allowed_missing.size(), module_state_dict(*cpu).size() - 312);
  EXPECT_TRUE(report.missing.empty());
}

TEST(RetrievalNet, SummaryCountsParameters) {
  RetrievalNet net(ModelConfig::from_json(model_preset("cpu")), false);
  Json s = net->summary();
  EXPECT_EQ(s["parameters"]["backbone"], 2223872);  // torchvision mobilenet_v2 without the classifier
  EXPECT_EQ(s["parameters"]["spatial_attention"], 18);
  EXPECT_EQ(s["parameters"]["pool"], 1);
  EXPECT_EQ(s["feature_map"], Json::array({7, 7}));
  EXPECT_EQ(s["descriptor_dim"], 2560);
  // Mirror block: 3 x (1280*640 + 640 + 2*640) + 2 x (1280*640 + 640) + 2 x (640*1280 + 1280).
  EXPECT_EQ(s["parameters"]["attention"],
            3 * (1280 * 640 + 640 + 1280) + 2 * (1280 * 640 + 640) + 2 * (640 * 1280 + 1280));
  EXPECT_TRUE(net->is_training()) << "summary restores the mode";
  EXPECT_NE(format_model_summary(s).find("descriptor:    2560-d"), std::string::npos) << format_model_summary(s);
}

TEST(ModelCli, PresetsAndInfo) {
  auto presets = test::run_cli("model presets");
  ASSERT_EQ(presets.exit_code, 0) << presets.output;
  Json p = Json::parse(presets.output);
  EXPECT_EQ(p.size(), 5u);
  EXPECT_EQ(p["paper"]["backbone"], "densenet121");
  EXPECT_EQ(p["scratch"]["backbone"], "convnet4");

  auto info = test::run_cli("model info --preset baseline-gem --json --set pooling=rmac");
  ASSERT_EQ(info.exit_code, 0) << info.output;
  Json s = Json::parse(info.output);
  EXPECT_EQ(s["descriptor_dim"], 1280);
  EXPECT_EQ(s["config"]["pooling"], "rmac");

  auto text = test::run_cli("model info --preset cpu");
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_NE(text.output.find("feature map:   1280 x 7 x 7"), std::string::npos) << text.output;

  auto bad = test::run_cli("model info --preset huge");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("error: unknown model preset 'huge'"), std::string::npos) << bad.output;

  std::string weights = test::shared_model("mobilenet_v2_imagenet1k.pth");
  if (weights.empty()) GTEST_SKIP() << "shared model mobilenet_v2_imagenet1k.pth not found";
  auto loaded = test::run_cli("model info --preset cpu --pretrained " + test::shell_quote(weights));
  EXPECT_EQ(loaded.exit_code, 0) << loaded.output;
  EXPECT_NE(loaded.output.find("loaded 312 tensors"), std::string::npos) << loaded.output;
  EXPECT_NE(loaded.output.find("classifier.1.weight"), std::string::npos) << loaded.output;
}

}  // namespace
}  // namespace fundus

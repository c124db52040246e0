// Backbone parity with torchvision: torchvision models with random init and non-default BatchNorm
// statistics are saved as OrderedDict state_dicts (the real-file format) together with their feature
// maps for a fixed input, loaded here and compared; train-mode forward + input/weight gradients too.
// Also the real ImageNet MobileNetV2 file, and our writer feeding torchvision.
#include <memory>

#include "fundus/core/error.h"
#include "fundus/model/backbone.h"
#include "fundus/model/runtime.h"
#include "fundus/model/state_dict.h"
#include "model_test_util.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::get;
using test::max_abs_diff;

struct Spec {
  const char* name;
  int size;
  const char* first_conv;
};
// ResNet-50 and DenseNet-121 at 64 px keep the suite fast.
const Spec kSpecs[] = {{"mobilenet_v2", 96, "features.0.0.weight"},
                       {"resnet18", 96, "conv1.weight"},
                       {"resnet34", 64, "conv1.weight"},
                       {"resnet50", 64, "conv1.weight"},
                       {"densenet121", 64, "features.conv0.weight"}};

const char* kTorchvisionFixtures = R"PY(
import sys, torch, torchvision
d = sys.argv[1]
torch.manual_seed(0)
specs = [("mobilenet_v2", 96, "features.0.0.weight"), ("resnet18", 96, "conv1.weight"),
         ("resnet34", 64, "conv1.weight"), ("resnet50", 64, "conv1.weight"),
         ("densenet121", 64, "features.conv0.weight")]
def features(name, m, x):
    if name.startswith("resnet"):
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return m.features(x)  # densenet: ends at norm5 (no ReLU)
for name, size, first in specs:
    m = getattr(torchvision.models, name)()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5); mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5); mod.bias.uniform_(-0.2, 0.2)
    torch.save(m.state_dict(), "%s/%s.pth" % (d, name))
    m.eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        f_eval = features(name, m, x)
    # Train mode in float64: float32 train-mode gradients of these deep BN networks differ by up to
    # 1.4% between 1 and 2 threads of the SAME library, so only float64 can tell bugs from rounding.
    m.double().train()
    xg = x.double().requires_grad_(True)
    f_train = features(name, m, xg)
    w = torch.rand_like(f_train)
    (f_train * w).sum().backward()
    torch.save({"x": x, "features": f_eval, "train_features": f_train.detach(), "w": w,
                "x_grad": xg.grad, "conv_grad": dict(m.named_parameters())[first].grad},
               "%s/%s_io.pth" % (d, name))
)PY";

class TorchvisionParity : public ::testing::Test {
 protected:
  void SetUp() override { FUNDUS_REQUIRE_PYTHON_ORACLE(); }
  test::TempDir dir_;
};

double relative_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return max_abs_diff(a, b) / std::max(1e-12, b.abs().max().item<double>());
}

TEST_F(TorchvisionParity, FeatureMapsAndGradientsMatchTorchvision) {
  ASSERT_EQ(test::run_python(kTorchvisionFixtures, test::shell_quote(dir_.path())).exit_code, 0);
  for (const Spec& spec : kSpecs) {
    SCOPED_TRACE(spec.name);
    Backbone net = make_backbone(spec.name);
    StateDict state = read_state_dict(dir_.file(std::string(spec.name) + ".pth"));
    LoadOptions options;
    options.ignore_unexpected_prefixes = torchvision_head_prefixes();
    LoadReport report = load_into(*net, state, options);  // strict: every backbone entry present
    EXPECT_TRUE(report.ok()) << report.summary();
    EXPECT_EQ(report.loaded.size(), module_state_dict(*net).size());
    EXPECT_EQ(report.ignored.size(), 2u) << "exactly the head's weight and bias are unused";

    StateDict io = read_state_dict(dir_.file(std::string(spec.name) + "_io.pth"));
    torch::Tensor x = get(io, "x");
    net->eval();
    {
      torch::NoGradGuard no_grad;
      torch::Tensor f = net->forward(x);
      EXPECT_EQ(f.size(1), net->out_channels());
      // float32: 1e-4 absolute, relative to the feature scale where it exceeds 1 (ResNet-50's layer4
      // reaches ~120 with these random BN statistics).
      torch::Tensor ref = get(io, "features");
      EXPECT_LE(max_abs_diff(f, ref), 1e-4 * std::max(1.0, ref.abs().max().item<double>()));
    }
    // Train mode (batch statistics, in-place ReLUs under autograd), float64: features, gradients
    // w.r.t. the input and the first convolution.
    net->to(torch::kDouble);
    net->train();
    torch::Tensor xg = x.to(torch::kDouble).requires_grad_(true);
    torch::Tensor f = net->forward(xg);
    EXPECT_LE(relative_diff(f.detach(), get(io, "train_features")), 1e-9);
    (f * get(io, "w")).sum().backward();
    EXPECT_LE(relative_diff(xg.grad(), get(io, "x_grad")), 1e-8);
    torch::Tensor conv_grad;
    for (const auto& p : net->named_parameters())
      if (p.key() == spec.first_conv) conv_grad = p.value().grad();
    ASSERT_TRUE(conv_grad.defined());
    EXPECT_LE(relative_diff(conv_grad, get(io, "conv_grad")), 1e-8);
  }
}

TEST_F(TorchvisionParity, OurWeightFilesLoadIntoTorchvision) {
  seed_torch(5);
  for (const char* name : {"mobilenet_v2", "resnet50", "densenet121"}) {
    Backbone net = make_backbone(name);
    net->eval();
    torch::Tensor x = torch::rand({1, 3, 64, 64});
    torch::Tensor f;
    {
      torch::NoGradGuard no_grad;
      f = net->forward(x);
    }
    write_state_dict(dir_.file(std::string("ours_") + name + ".pth"), module_state_dict(*net));
    StateDict io;
    io.insert("x", x);
    io.insert("features", f);
    write_state_dict(dir_.file(std::string("ours_") + name + "_io.pth"), io);
  }
  auto r = test::run_python(R"PY(
import sys, torch, torchvision
d = sys.argv[1]
def features(name, m, x):
    if name.startswith("resnet"):
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return m.features(x)
for name in ["mobilenet_v2", "resnet50", "densenet121"]:
    m = getattr(torchvision.models, name)()
    res = m.load_state_dict(torch.load("%s/ours_%s.pth" % (d, name)), strict=False)
    assert res.unexpected_keys == [], res.unexpected_keys
    assert all(k.startswith(("classifier.", "fc.")) for k in res.missing_keys), res.missing_keys
    assert len(res.missing_keys) == 2, res.missing_keys
    io = torch.load("%s/ours_%s_io.pth" % (d, name))
    m.eval()
    with torch.no_grad():
        diff = float((features(name, m, io["x"]) - io["features"]).abs().max())
    assert diff <= 1e-4, (name, diff)
print("PYTHON-OK")
)PY",
                            test::shell_quote(dir_.path()));
  EXPECT_NE(r.output.find("PYTHON-OK"), std::string::npos) << r.output;
}

TEST_F(TorchvisionParity, ImageNetMobileNetV2FileLoadsAndMatches) {
  std::string weights = test::shared_model("mobilenet_v2_imagenet1k.pth");
  if (weights.empty()) GTEST_SKIP() << "shared model mobilenet_v2_imagenet1k.pth not found";
  auto r = test::run_python(R"PY(
import sys, torch, torchvision
torch.manual_seed(3)
m = torchvision.models.mobilenet_v2()
m.load_state_dict(torch.load(sys.argv[1]))
m.eval()
x = torch.rand(1, 3, 224, 224)
with torch.no_grad():
    f = m.features(x)
torch.save({"x": x, "features": f}, sys.argv[2])
)PY",
                            test::shell_quote(weights) + " " + test::shell_quote(dir_.file("imagenet_io.pth")));
  ASSERT_EQ(r.exit_code, 0);
  Backbone net = make_backbone("mobilenet_v2");
  LoadOptions options;
  options.ignore_unexpected_prefixes = torchvision_head_prefixes();
  LoadReport report = load_into(*net, read_state_dict(weights), options);
  EXPECT_TRUE(report.ok()) << report.summary();
  EXPECT_EQ(report.loaded.size(), 312u);
  EXPECT_EQ(report.ignored, (std::vector<std::string>{"classifier.1.weight", "classifier.1.bias"}));
  StateDict io = read_state_dict(dir_.file("imagenet_io.pth"));
  net->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor f = net->forward(get(io, "x"));
  EXPECT_EQ(f.sizes(), (std::vector<int64_t>{1, 1280, 7, 7}));
  EXPECT_LE(max_abs_diff(f, get(io, "features")), 1e-4);
}

TEST(Backbones, NamesShapesAndErrors) {
  const std::pair<const char*, int64_t> expected[] = {{"mobilenet_v2", 1280}, {"resnet18", 512},     {"resnet34", 512},
                                                      {"resnet50", 2048},     {"densenet121", 1024}, {"convnet4", 256}};
  ASSERT_EQ(backbone_names().size(), 6u);
  for (const auto& [name, channels] : expected) {
    Backbone b = make_backbone(name);
    EXPECT_EQ(b->name(), name);
    EXPECT_EQ(b->out_channels(), channels);
  }
  try {
    make_backbone("vgg16");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("backbone: 'vgg16' is not one of mobilenet_v2, resnet18"), std::string::npos);
  }
}

}  // namespace
}  // namespace fundus

// Reading and writing PyTorch .pth files; load_into reports. The Python oracle writes files with
// torch.save in every flavour we must read (OrderedDict state_dicts, plain dicts, parameters, views
// sharing storage, all dtypes, protocol 4, nested checkpoints, the legacy non-zip format) and the
// ones we must reject.
#include <fstream>
#include <memory>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/model/state_dict.h"
#include "fundus/model/zip_archive.h"
#include "model_test_util.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::get;
using test::max_abs_diff;

// Every tensor of the small model is filled with arange(numel) * 0.5 - 1 so C++ knows the values.
const char* kWriteFixtures = R"PY(
import sys, torch, torch.nn as nn
d = sys.argv[1]
m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
with torch.no_grad():
    for k, v in m.state_dict().items():
        if v.is_floating_point():
            v.copy_((torch.arange(v.numel(), dtype=torch.float32) * 0.5 - 1).reshape(v.shape))
        else:
            v.fill_(7)
torch.save(m.state_dict(), d + "/od.pth")                       # OrderedDict with _metadata
torch.save(dict(m.named_parameters()), d + "/params.pth")       # _rebuild_parameter
torch.save({"model": m.state_dict(), "epoch": 3, "lr": 1e-3, "name": "run",
            "betas": (0.9, 0.999), "flags": [True, None]}, d + "/ckpt.pth")
a = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
t = {
    "f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4,
    "f64": torch.arange(6, dtype=torch.float64) / 3,
    "f16": (torch.arange(6) / 4).half(),
    "bf16": (torch.arange(6) / 4).bfloat16(),
    "i64": torch.tensor([-3, 0, 5, 2 ** 40]),
    "i32": torch.arange(6, dtype=torch.int32) - 3,
    "i16": torch.arange(6, dtype=torch.int16) - 300,
    "i8": torch.arange(6, dtype=torch.int8) - 3,
    "u8": torch.arange(6, dtype=torch.uint8) * 40,
    "bool": torch.tensor([True, False, True]),
    "scalar": torch.tensor(2.5),
    "empty": torch.zeros(0, 3),
    "view": a[1, :, 1:3],
    "view_t": a.transpose(0, 2),
}
torch.save(t, d + "/dtypes.pth")
torch.save(t, d + "/p4.pth", pickle_protocol=4)
torch.save({"t%d" % i: torch.full((1,), float(i)) for i in range(300)}, d + "/many.pth")
# The legacy format (PyTorch < 1.6; older torchvision files): pickles followed by raw storages.
torch.save(t, d + "/legacy.pth", _use_new_zipfile_serialization=False)
torch.save(t, d + "/legacy_p4.pth", _use_new_zipfile_serialization=False, pickle_protocol=4)
torch.save(m.state_dict(), d + "/legacy_od.pth", _use_new_zipfile_serialization=False)
torch.jit.script(nn.Linear(2, 2)).save(d + "/script.pt")
torch.save({"c": torch.zeros(2, dtype=torch.complex64)}, d + "/complex.pth")
)PY";

class StateDictFiles : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::python_oracle_available()) return;
    dir_ = std::make_unique<test::TempDir>();
    auto r = test::run_python(kWriteFixtures, test::shell_quote(dir_->path()));
    ok_ = r.exit_code == 0;
  }
  static void TearDownTestSuite() { dir_.reset(); }
  void SetUp() override {
    FUNDUS_REQUIRE_PYTHON_ORACLE();
    ASSERT_TRUE(ok_) << "fixture script failed";
  }
  static std::string file(const std::string& name) { return dir_->file(name); }
  static std::unique_ptr<test::TempDir> dir_;
  static bool ok_;
};
std::unique_ptr<test::TempDir> StateDictFiles::dir_;
bool StateDictFiles::ok_ = false;

torch::Tensor pattern(c10::IntArrayRef shape) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return (torch::arange(n, torch::kFloat) * 0.5 - 1).reshape(shape);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST_F(StateDictFiles, ReadsOrderedDictStateDictInFileOrder) {
  StateDict s = read_state_dict(file("od.pth"));
  std::vector<std::string> expected{
      "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"};
  EXPECT_EQ(s.keys(), expected);
  for (const auto& item : s) {
    if (item.key() == "1.num_batches_tracked") {
      EXPECT_EQ(item.value().scalar_type(), torch::kLong);
      EXPECT_EQ(item.value().dim(), 0);
      EXPECT_EQ(item.value().item<int64_t>(), 7);
    } else {
      EXPECT_EQ(item.value().scalar_type(), torch::kFloat);
      EXPECT_EQ(max_abs_diff(item.value(), pattern(item.value().sizes())), 0.0) << item.key();
    }
  }
  EXPECT_EQ(get(s, "0.weight").sizes(), (std::vector<int64_t>{4, 3, 3, 3}));
}

TEST_F(StateDictFiles, ReadsParametersAndNestedCheckpoints) {
  StateDict p = read_state_dict(file("params.pth"));
  EXPECT_EQ(p.keys(), (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias"}));
  EXPECT_EQ(max_abs_diff(get(p, "0.weight"), pattern({4, 3, 3, 3})), 0.0);
  // Nested dicts are flattened with "."; non-tensor leaves (epoch, lr, name, tuples, lists) skipped.
  StateDict c = read_state_dict(file("ckpt.pth"));
  EXPECT_EQ(c.size(), 7u);
  EXPECT_EQ(c.keys().front(), "model.0.weight");
  EXPECT_EQ(max_abs_diff(get(c, "model.1.running_var"), pattern({4})), 0.0);
}

void check_dtypes(const StateDict& s) {
  EXPECT_EQ(s.size(), 14u);
  EXPECT_EQ(max_abs_diff(get(s, "f32"), torch::arange(6, torch::kFloat).reshape({2, 3}) / 4), 0.0);
  EXPECT_EQ(get(s, "f64").scalar_type(), torch::kDouble);
  EXPECT_EQ(max_abs_diff(get(s, "f64"), torch::arange(6, torch::kDouble) / 3), 0.0);
  EXPECT_EQ(get(s, "f16").scalar_type(), torch::kHalf);
  EXPECT_EQ(max_abs_diff(get(s, "f16"), torch::arange(6) / 4.0), 0.0);
  EXPECT_EQ(get(s, "bf16").scalar_type(), torch::kBFloat16);
  EXPECT_EQ(max_abs_diff(get(s, "bf16"), torch::arange(6) / 4.0), 0.0);
  EXPECT_TRUE(get(s, "i64").equal(torch::tensor({int64_t{-3}, int64_t{0}, int64_t{5}, int64_t{1} << 40})));
  EXPECT_TRUE(get(s, "i32").equal(torch::arange(6, torch::kInt) - 3));
  EXPECT_TRUE(get(s, "i16").equal(torch::arange(6, torch::kShort) - 300));
  EXPECT_TRUE(get(s, "i8").equal(torch::arange(6, torch::kChar) - 3));
  EXPECT_TRUE(get(s, "u8").equal(torch::arange(6, torch::kByte) * 40));
  EXPECT_TRUE(get(s, "bool").equal(torch::tensor({true, false, true})));
  EXPECT_EQ(get(s, "scalar").dim(), 0);
  EXPECT_EQ(get(s, "scalar").item<float>(), 2.5f);
  EXPECT_EQ(get(s, "empty").sizes(), (std::vector<int64_t>{0, 3}));
  // Views keep their offset and strides into the shared storage.
  torch::Tensor a = torch::arange(24, torch::kFloat).reshape({2, 3, 4});
  torch::Tensor view = get(s, "view");
  EXPECT_EQ(view.storage_offset(), 13);
  EXPECT_EQ(view.strides(), (std::vector<int64_t>{4, 1}));
  EXPECT_TRUE(view.equal(a[1].narrow(1, 1, 2)));
  EXPECT_TRUE(get(s, "view_t").equal(a.transpose(0, 2)));
  EXPECT_EQ(get(s, "view_t").data_ptr(), view.storage().data()) << "one storage shared by both views";
}

TEST_F(StateDictFiles, ReadsEveryDtypeAndViews) { check_dtypes(read_state_dict(file("dtypes.pth"))); }
TEST_F(StateDictFiles, ReadsPickleProtocol4) { check_dtypes(read_state_dict(file("p4.pth"))); }

TEST_F(StateDictFiles, ReadsTheLegacyFormat) {
  check_dtypes(read_state_dict(file("legacy.pth")));
  check_dtypes(read_state_dict(file("legacy_p4.pth")));
  StateDict od = read_state_dict(file("legacy_od.pth"));
  EXPECT_EQ(od.keys(), read_state_dict(file("od.pth")).keys());
  EXPECT_EQ(max_abs_diff(get(od, "0.weight"), pattern({4, 3, 3, 3})), 0.0);
  EXPECT_EQ(get(od, "1.num_batches_tracked").item<int64_t>(), 7);
}

TEST_F(StateDictFiles, RejectsTruncatedOrDamagedLegacyFiles) {
  std::string bytes = read_file(file("legacy_od.pth"));
  for (size_t cut : {size_t{5}, size_t{40}, bytes.size() / 2, bytes.size() - 9}) {
    std::string e = error_of([&] { parse_state_dict(bytes.substr(0, cut), "cut.pth"); });
    EXPECT_NE(e.find("cut.pth: "), std::string::npos) << e;
    EXPECT_NE(e.find("truncated"), std::string::npos) << "cut at " << cut << ": " << e;
  }
  std::string bad_magic = bytes;
  bad_magic[5] ^= 0x40;
  EXPECT_NE(
      error_of([&] { parse_state_dict(bad_magic, "m.pth"); }).find("m.pth: a pickle without torch.save's magic number"),
      std::string::npos);
  std::string tar(1024, '\0');
  tar.replace(0, 7, "sys_info");
  tar.replace(257, 5, "ustar");
  EXPECT_NE(error_of([&] { parse_state_dict(tar, "old.tar"); }).find("old.tar: PyTorch's tar format"),
            std::string::npos);
}

TEST_F(StateDictFiles, ReadsManyEntriesWithLongMemoKeys) {
  StateDict s = read_state_dict(file("many.pth"));
  ASSERT_EQ(s.size(), 300u);
  EXPECT_EQ(get(s, "t299").item<float>(), 299.f);
  EXPECT_EQ(s.keys()[150], "t150");
}

TEST_F(StateDictFiles, RejectsTorchScriptAndUnsupportedDtypes) {
  EXPECT_NE(error_of([] { read_state_dict(file("script.pt")); }).find("TorchScript archive, not a state_dict"),
            std::string::npos);
  std::string e = error_of([] { read_state_dict(file("complex.pth")); });
  EXPECT_NE(e.find("unsupported tensor storage type 'torch.ComplexFloatStorage'"), std::string::npos) << e;
  EXPECT_NE(e.find("complex.pth"), std::string::npos) << "the error names the file";
}

TEST_F(StateDictFiles, RejectsTruncatedAndCorruptFiles) {
  std::string bytes = read_file(file("od.pth"));
  for (size_t cut : {size_t{0}, size_t{10}, bytes.size() / 2, bytes.size() - 30}) {
    std::string e = error_of([&] { parse_state_dict(bytes.substr(0, cut), "cut.pth"); });
    EXPECT_NE(e.find("cut.pth"), std::string::npos) << e;
    EXPECT_NE(e.find("truncated"), std::string::npos) << "cut at " << cut << ": " << e;
  }
  // A flipped byte inside a data record: CRC mismatch.
  ZipReader zip(bytes, "od.pth");
  std::string_view rec = zip.read("od/data/0");
  std::string corrupt = bytes;
  corrupt[static_cast<size_t>(rec.data() - bytes.data()) + 5] ^= 0x40;
  EXPECT_NE(error_of([&] { parse_state_dict(corrupt, "bad.pth"); }).find("CRC mismatch"), std::string::npos);
  EXPECT_NE(error_of([&] { parse_state_dict("hello world", "x.txt"); }).find("not a PyTorch weight file"),
            std::string::npos);
}

TEST_F(StateDictFiles, ReportsMissingDataRecords) {
  std::string bytes = read_file(file("od.pth"));
  ZipReader zip(bytes, "od.pth");
  ZipWriter w;
  for (const auto& name : zip.names())
    if (name != "od/data/3") w.add(name, zip.read(name));
  std::string e = error_of([&] { parse_state_dict(w.finish(), "partial.pth"); });
  EXPECT_NE(e.find("missing data record 'od/data/3'"), std::string::npos) << e;
}

// Hand-written pickles for hostile files (no Python needed): a torch.save-style archive holding
// {"w": _rebuild_tensor_v2(storage(FloatStorage, "0", numel), offset, sizes, strides, False, OrderedDict())}.
std::string pickle_int(int64_t v) {  // LONG1 with 8 bytes: any int64
  std::string s = "\x8a\x08";
  for (int k = 0; k < 8; ++k) s += char((uint64_t(v) >> (8 * k)) & 0xff);
  return s;
}
std::string pickle_str(const std::string& v) {
  std::string s = "X";
  for (int k = 0; k < 4; ++k) s += char((v.size() >> (8 * k)) & 0xff);
  return s + v;
}
std::string pickle_ints(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (int64_t x : v) s += pickle_int(x);
  return s + "t";
}
std::string tensor_pickle(int64_t numel, int64_t offset, const std::vector<int64_t>& sizes,
                          const std::vector<int64_t>& strides) {
  return "\x80\x02}(" + pickle_str("w") + "ctorch._utils\n_rebuild_tensor_v2\n((" + pickle_str("storage") +
         "ctorch\nFloatStorage\n" + pickle_str("0") + pickle_str("cpu") + pickle_int(numel) + "tQ" +
         pickle_int(offset) + pickle_ints(sizes) + pickle_ints(strides) +
         "\x89"
         "ccollections\nOrderedDict\n)RtRu.";
}
std::string archive(const std::string& pickle, const std::string& data = std::string(16, '\0')) {
  ZipWriter w;
  w.add("a/data.pkl", pickle);
  w.add("a/data/0", data);
  w.add("a/version", "3\n");
  return w.finish();
}

// Issue 10 item 11: absurd sizes are refused from what the file holds, before LibTorch allocates,
// with a message naming the file and no LibTorch stack trace.
TEST(StateDictHostile, AbsurdSizesAreRefusedBeforeAllocating) {
  ASSERT_EQ(parse_state_dict(archive(tensor_pickle(4, 0, {2, 2}, {2, 1})), "ok.pth").size(),
            1u);  // the well-formed base
  const std::vector<std::pair<std::string, std::string>> cases = {
      {tensor_pickle(int64_t(1) << 40, 0, {4}, {1}),
       "storage '0' declares 1099511627776 elements of 4 bytes, but its data record 'a/data/0' holds 16 bytes"},
      {tensor_pickle(-5, 0, {4}, {1}), "storage '0' declares -5 elements"},
      {tensor_pickle(4, 0, {int64_t(1) << 32, int64_t(1) << 32}, {0, 0}), "outside its storage of 4 elements"},
      {tensor_pickle(4, 0, {int64_t(1) << 62, 4}, {1, 1}), "outside its storage of 4 elements"},
      {tensor_pickle(4, 0, {-3}, {1}), "negative tensor size or stride"},
      {tensor_pickle(4, 9, {1}, {1}), "tensor offset 9 outside its storage of 4 elements"},
      {tensor_pickle(4, 0, std::vector<int64_t>(100, 1), std::vector<int64_t>(100, 1)),
       "tensor with 100 dimensions (at most 32)"},
  };
  for (const auto& entry : cases) {
    const auto& pickle = entry.first;  // a structured binding cannot be captured in C++17 (clang)
    const auto& expected = entry.second;
    std::string e = error_of([&] { parse_state_dict(archive(pickle), "hostile.pth"); });
    EXPECT_NE(e.find(expected), std::string::npos) << e;
    EXPECT_EQ(e.rfind("hostile.pth: ", 0), 0u) << e;
    EXPECT_EQ(e.find("Exception raised from"), std::string::npos) << e;
    EXPECT_EQ(e.find("frame #"), std::string::npos) << e;
  }
}

// A dict that contains itself (the memo allows it) and dicts nested 200000 deep: an error, no
// unbounded recursion while flattening or destroying.
TEST(StateDictHostile, CyclesAndDeepNestingAreErrors) {
  const std::string cycle = std::string("\x80\x02}q\x00", 5) + pickle_str("x") + std::string("h\x00s.", 4);
  std::string e = error_of([&] { parse_state_dict(archive(cycle), "cycle.pth"); });
  EXPECT_NE(e.find("cycle.pth: dicts nested deeper than 64 levels"), std::string::npos) << e;
  std::string deep = "\x80\x02";
  const int n = 200000;
  for (int i = 0; i < n; ++i) deep += "}" + pickle_str("k");
  deep += "}" + std::string(size_t(n), 's') + ".";
  e = error_of([&] { parse_state_dict(archive(deep), "deep.pth"); });
  EXPECT_NE(e.find("deep.pth: dicts nested deeper than 64 levels"), std::string::npos) << e;
}

// Found by fuzz/fuzz_checkpoint: TUPLE2 popped items from below a MARK, so the next TUPLE built a
// vector from a MARK above the stack's top (std::length_error in the zip and the legacy format).
TEST(StateDictHostile, StackOpsRespectTheMark) {
  const std::string below_mark = "\x80\x02K\x01K\x02(\x86t.";
  for (const std::string& bytes : {archive(below_mark), below_mark}) {
    std::string e = error_of([&] { parse_state_dict(bytes, "mark.pth"); });
    EXPECT_NE(e.find("stack underflow"), std::string::npos) << e;
    EXPECT_EQ(e.rfind("mark.pth: ", 0), 0u) << e;
  }
}

TEST_F(StateDictFiles, WrittenFilesLoadInPython) {
  StateDict s;
  s.insert("f32", torch::arange(6, torch::kFloat).reshape({2, 3}) / 4);
  s.insert("transposed", torch::arange(6, torch::kFloat).reshape({2, 3}).t());  // non-contiguous input
  s.insert("f64", torch::arange(4, torch::kDouble) / 3);
  s.insert("f16", (torch::arange(4) / 4.0).to(torch::kHalf));
  s.insert("i64", torch::tensor({int64_t{-5}, int64_t{1} << 40}));
  s.insert("bool", torch::tensor({true, false}));
  s.insert("scalar", torch::tensor(7L));
  s.insert("layer.0.weight", torch::full({300, 400}, 0.25));  // large sizes use BININT2
  std::string path = dir_->file("cpp.pth");
  write_state_dict(path, s);
  // Our reader returns exactly what was written.
  StateDict back = read_state_dict(path);
  ASSERT_EQ(back.keys(), s.keys());
  for (const auto& item : s) EXPECT_TRUE(back[item.key()].equal(item.value())) << item.key();
  // Python's torch.load sees a plain dict with the same contents.
  auto r = test::run_python(R"PY(
import sys, torch
s = torch.load(sys.argv[1])
assert type(s) is dict, type(s)
assert list(s) == ["f32", "transposed", "f64", "f16", "i64", "bool", "scalar", "layer.0.weight"], list(s)
assert torch.equal(s["f32"], torch.arange(6.).reshape(2, 3) / 4)
assert torch.equal(s["transposed"], torch.arange(6.).reshape(2, 3).t())
assert s["f64"].dtype == torch.float64 and torch.equal(s["f64"], torch.arange(4, dtype=torch.float64) / 3)
assert s["f16"].dtype == torch.float16 and torch.equal(s["f16"].float(), torch.arange(4.) / 4)
assert s["i64"].tolist() == [-5, 2 ** 40]
assert s["bool"].tolist() == [True, False]
assert s["scalar"].dim() == 0 and s["scalar"].item() == 7
assert s["layer.0.weight"].shape == (300, 400) and float(s["layer.0.weight"].sum()) == 30000.0
print("PYTHON-OK")
)PY",
                            test::shell_quote(path));
  EXPECT_NE(r.output.find("PYTHON-OK"), std::string::npos) << r.output;
  // Deterministic bytes: the same content serialises identically.
  EXPECT_EQ(serialize_state_dict(s), read_file(path));
}

// ---- load_into --------------------------------------------------------------------------------

struct Tiny : torch::nn::Module {
  Tiny() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 3, 1)));
    bn = register_module("bn", torch::nn::BatchNorm2d(3));
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};

TEST(LoadInto, CopiesByNameAndReportsProblems) {
  Tiny m;
  StateDict full = module_state_dict(m);
  EXPECT_EQ(full.keys(), (std::vector<std::string>{"conv.weight", "conv.bias", "bn.weight", "bn.bias",
                                                   "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}));
  StateDict s;
  s.insert("conv.weight", torch::full({3, 2, 1, 1}, 0.5, torch::kDouble));  // converted to float
  s.insert("bn.running_mean", torch::full({4}, 1.0));                       // wrong shape
  s.insert("fc.weight", torch::ones({2}));                                  // unexpected
  s.insert("classifier.1.bias", torch::ones({2}));                          // ignored by allowance
  LoadOptions o;
  o.strict = false;
  o.ignore_unexpected_prefixes = {"classifier."};
  o.allow_missing_prefixes = {"bn.num_batches"};
  LoadReport r = load_into(m, s, o);
  EXPECT_EQ(r.loaded, std::vector<std::string>{"conv.weight"});
  EXPECT_EQ(r.unexpected, std::vector<std::string>{"fc.weight"});
  EXPECT_EQ(r.ignored, std::vector<std::string>{"classifier.1.bias"});
  EXPECT_EQ(r.mismatched, std::vector<std::string>{"bn.running_mean: file [4] vs module [3]"});
  EXPECT_EQ(r.missing, (std::vector<std::string>{"conv.bias", "bn.weight", "bn.bias", "bn.running_var"}));
  EXPECT_EQ(r.allowed_missing, std::vector<std::string>{"bn.num_batches_tracked"});
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(m.conv->weight.eq(0.5).all().item<bool>());
  EXPECT_EQ(m.conv->weight.scalar_type(), torch::kFloat);
  EXPECT_TRUE(m.bn->running_mean.eq(0).all().item<bool>()) << "mis-shaped entries are not copied";

  // Strict: throws listing the names and copies nothing.
  Tiny fresh;
  auto before = fresh.conv->weight.clone();
  o.strict = true;
  std::string e = error_of([&] { load_into(fresh, s, o); });
  for (const char* name : {"fc.weight", "bn.running_mean: file [4] vs module [3]", "conv.bias"})
    EXPECT_NE(e.find(name), std::string::npos) << e;
  EXPECT_TRUE(fresh.conv->weight.equal(before));

  // A complete state loads strictly and reproduces the tensors (buffers included).
  Tiny target;
  LoadReport ok = load_into(target, full);
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.loaded.size(), 7u);
  EXPECT_TRUE(target.conv->weight.equal(m.conv->weight));
}

}  // namespace
}  // namespace fundus

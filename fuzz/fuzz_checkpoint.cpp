// PyTorch weight files (model/state_dict.h, model/zip_archive.h): torch.save's zip format and the
// legacy pickle format, parsed from bytes. Every tensor returned is read completely (a view outside
// its storage would be read here), and the zip reader is run on its own over every entry.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fundus/model/state_dict.h"
#include "fundus/model/zip_archive.h"
#include "fuzz_support.h"

using namespace fundus;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  torch::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  fuzz::expect_only_fundus_errors([&] {
    ZipReader zip(bytes, "fuzz.pth");
    for (const std::string& name : zip.names()) fuzz::expect_only_fundus_errors([&] { (void)zip.read(name); });
  });
  fuzz::expect_only_fundus_errors([&] {
    StateDict state = parse_state_dict(bytes, "fuzz.pth");
    for (const auto& item : state) {
      torch::Tensor t = item.value();
      if (t.numel() > 0) (void)t.to(torch::kDouble).sum().item<double>();
    }
  });
  return 0;
}

// The image policy (data/image_io.h) on hostile bytes: format sniffing, the structure check, the
// header size and pixel cap, the JPEG entropy check, and decoding at every DCT reduction. The first
// byte picks the reduction; the rest is the file. Decoding is capped at 4 MP (the default cap is
// 40 MP) so that one execution stays fast; the cap logic is the same.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fundus/data/image_io.h"
#include "fuzz_support.h"

using namespace fundus;
using fuzz::finding;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int reduce = 1 << (data[0] & 3);
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  ImageLimits limits;
  limits.max_pixels = 1 << 22;

  (void)sniff_image_format(bytes);
  const std::string structure = image_structure_problem(bytes);
  fuzz::expect_only_fundus_errors([&] { (void)image_info_from_bytes(bytes, "fuzz.img"); });
  bool header_ok = false;
  fuzz::expect_only_fundus_errors([&] {
    (void)check_image_bytes(bytes, "fuzz.img", limits);
    header_ok = true;
  });
  if (header_ok && !structure.empty()) finding("check_image_bytes accepted bytes with a structure problem");
  fuzz::expect_only_fundus_errors([&] { (void)jpeg_data_problem(bytes); });
  fuzz::expect_only_fundus_errors([&] {
    ImageInfo info;
    cv::Mat rgb = decode_image_rgb_bytes(bytes, "fuzz.img", reduce, limits, &info);
    // One policy: nothing decodes that the header checks refuse.
    if (!header_ok) finding("decoded bytes that check_image_bytes refused");
    if (rgb.empty() || rgb.type() != CV_8UC3) finding("decoded image is empty or not 8-bit RGB");
    if (rgb.cols > info.width || rgb.rows > info.height) finding("decoded image larger than its header");
  });
  return 0;
}

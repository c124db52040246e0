// Image files: header-only inspection, structural integrity checks and decoding to RGB.
// Every function is thread-safe and never crashes on hostile bytes: problems become fundus::Error
// naming the file ("x.jpg: truncated JPEG (no end-of-image marker)").
#pragma once

#include <string>
#include <string_view>

#include <opencv2/core.hpp>

namespace fundus {

enum class ImageFormat { jpeg, png, tiff, bmp, unknown };
const char* image_format_name(ImageFormat f);

struct ImageInfo {
  ImageFormat format = ImageFormat::unknown;
  int width = 0;
  int height = 0;
};

/// Format and size from the header only (JPEG SOF, PNG IHDR; other formats are decoded).
ImageInfo read_image_info(const std::string& path);
ImageInfo image_info_from_bytes(std::string_view bytes, const std::string& source);

/// Structural check of the whole file: JPEG SOI...EOI, PNG signature + IHDR + IEND, known magic for
/// TIFF/BMP. Returns "" when sound, else a short description ("truncated JPEG (no end-of-image marker)").
/// libjpeg silently pads truncated JPEGs with grey, so decoding alone does not detect truncation.
std::string image_structure_problem(std::string_view bytes);

/// Entropy-data check of a JPEG that passed image_structure_problem: decodes it with libjpeg-turbo at
/// 1/8 scale (all coefficients are still entropy-decoded, ~1/3 of a full decode) and returns "" when
/// clean, else the problem ("corrupt JPEG data (Corrupt JPEG data: bad Huffman code)"). A file whose
/// middle is damaged but which still ends with an end-of-image marker decodes "successfully" in
/// OpenCV (grey or smeared blocks, a warning on stderr); this catches it. Extraneous bytes before a
/// marker (common in camera files, no pixel lost) are not a problem. "" for non-JPEG bytes.
std::string jpeg_data_problem(std::string_view bytes);

/// Decodes to 8-bit RGB (CV_8UC3). `reduce` in {1, 2, 4, 8}: JPEGs are decoded DCT-scaled by that
/// factor (libjpeg-turbo, ~3x less work), other formats are decoded and downscaled with INTER_AREA.
/// Throws for missing files, structural problems and undecodable bytes.
cv::Mat decode_image_rgb(const std::string& path, int reduce = 1);
cv::Mat decode_image_rgb_bytes(std::string_view bytes, const std::string& source, int reduce = 1);

/// Largest factor in {1, 2, 4, 8} that keeps the shorter side >= 2 * target (so the final INTER_AREA
/// resize still averages at least 2x2 source pixels per output pixel).
int choose_reduce_factor(int width, int height, int target);

/// Encodes RGB (CV_8UC3) or grey (CV_8UC1) by extension (.jpg/.jpeg/.png) and writes atomically.
void write_image_rgb(const std::string& path, const cv::Mat& image, int jpeg_quality = 95);

}  // namespace fundus

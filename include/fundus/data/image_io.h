// Image files: the one policy that decides whether bytes are an acceptable image, header-only
// inspection, and decoding to RGB.
//
// The policy, applied by decode_image_rgb* (and so by preprocessing, validation, the cache, the loader,
// embedding, queries, explanations, store additions and the server, which all decode through it):
//   1. a file is a regular, readable, non-empty file: "x.jpg: is a directory, not an image file",
//      "x.jpg: image file not found", "x.jpg: empty file (0 bytes)" (read_image_file);
//   2. the format is sniffed from the bytes (JPEG, PNG, TIFF, BMP), never from the name;
//   3. structure (image_structure_problem): a JPEG's marker segments are walked from SOI through
//      every scan's entropy data to the end-of-image marker (any number of bytes may follow it);
//      a PNG has its signature, a well-formed IHDR first and an IEND chunk;
//   4. size from the header, before a single pixel is decoded (image_info_from_bytes): width and height
//      must be >= 1 and fit the format ("PNG header: invalid size 2147483648x100"), and width * height
//      must not exceed ImageLimits::max_pixels ("60000x60000 = 3600000000 pixels exceeds the limit of
//      40000000"), so a decompression bomb of a few kB is refused before it allocates;
//   5. decoding: JPEG and PNG through libjpeg-turbo and libpng directly (the same pixels as OpenCV's
//      imdecode with IMREAD_COLOR, EXIF orientation applied), TIFF and BMP through OpenCV. A libjpeg
//      warning that means lost or wrong pixels (corrupt entropy data, a scan cut short with the end
//      marker re-appended, premature end) rejects the file ("corrupt JPEG data (...)"); a libpng error
//      rejects it. Warnings that lose no pixel (extraneous bytes before a marker, a bad ICC profile,
//      an unknown JFIF revision; libpng's ancillary-chunk warnings) are logged as
//      "x.jpg: libjpeg warning: ..." — no decoder message ever appears without the file's name, and
//      OpenCV's internal assertion text never reaches a message.
// Every failure throws ImageError (a fundus::Error) whose message starts with the source name and
// whose problem() lets callers map it (HTTP status codes, dataset problem kinds).
//
// Thread-safe: no shared state (libjpeg/libpng contexts are per call).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <opencv2/core.hpp>

#include "fundus/core/error.h"

namespace fundus {

enum class ImageFormat { jpeg, png, tiff, bmp, unknown };
const char* image_format_name(ImageFormat f);

/// Why an image was refused.
enum class ImageProblem {
  missing,           // no such file
  not_a_file,        // a directory (or another non-regular file) where an image was expected
  unreadable,        // permissions, I/O error
  empty,             // 0 bytes
  not_an_image,      // no known image signature
  truncated,         // structure incomplete (no end-of-image marker, no IEND)
  corrupt,           // damaged or invalid header, corrupt pixel data, undecodable
  too_many_pixels,   // width * height above ImageLimits::max_pixels
  no_field_of_view,  // decodes, but shows no fundus field of view (preprocess.h, fov.h)
};
/// Stable lower-case name: "missing", "not_a_file", ..., "no_field_of_view".
const char* image_problem_name(ImageProblem problem);

class ImageError : public Error {
 public:
  ImageError(ImageProblem problem, const std::string& message, const char* file, int line)
      : Error(message, file, line), problem_(problem) {}
  ImageProblem problem() const { return problem_; }

 private:
  ImageProblem problem_;
};

#define FUNDUS_IMAGE_ERROR(problem, msg) \
  throw ::fundus::ImageError(problem, (::fundus::detail::MessageBuilder{} << msg).str(), __FILE__, __LINE__)

/// Default pixel cap: far above any fundus camera (5184 x 3456 = 18 MP), far below a bomb.
constexpr int64_t kDefaultMaxImagePixels = 40000000;

struct ImageLimits {
  int64_t max_pixels = kDefaultMaxImagePixels;  // width * height of the file, before any DCT reduction
};

struct ImageInfo {
  ImageFormat format = ImageFormat::unknown;
  int width = 0;  // as displayed: EXIF orientations 5-8 (transposed) swap the stored sides
  int height = 0;
  int orientation = 1;  // EXIF orientation 1-8 (JPEG APP1, PNG eXIf), 1 when absent
};

/// The format from the signature bytes alone (no validation).
ImageFormat sniff_image_format(std::string_view bytes);

/// Policy step 1: the bytes of an image file. Throws ImageError naming the path (missing, a
/// directory, unreadable, empty).
std::string read_image_file(const std::string& path);

/// Format, size and orientation from the header only, for every format (policy steps 2-4 without the
/// pixel cap). Throws ImageError (not_an_image, truncated, corrupt) naming `source`.
ImageInfo image_info_from_bytes(std::string_view bytes, const std::string& source);
ImageInfo read_image_info(const std::string& path);

/// Policy steps 2-4: format, structure, valid header size, pixel cap; nothing is decoded. Returns the
/// header info; throws ImageError naming `source`.
ImageInfo check_image_bytes(std::string_view bytes, const std::string& source, const ImageLimits& limits = {});

/// The structure check alone: "" when sound, else a short description ("truncated JPEG (no
/// end-of-image marker)", "empty file", "not an image (unknown format)"). libjpeg pads a truncated
/// JPEG with grey, so decoding alone does not detect truncation.
std::string image_structure_problem(std::string_view bytes);

/// Entropy-data check of a JPEG: decodes it with libjpeg-turbo at 1/8 scale (all coefficients are
/// still entropy-decoded) and returns "" when no pixel is lost, else the problem ("corrupt JPEG data
/// (Corrupt JPEG data: bad Huffman code)"). "" for non-JPEG bytes. decode_image_rgb* include this
/// check; it is for callers that need the verdict without the pixels.
std::string jpeg_data_problem(std::string_view bytes);

/// The whole policy, then decodes to 8-bit RGB (CV_8UC3). `reduce` in {1, 2, 4, 8}: JPEGs are
/// decoded DCT-scaled by that factor (libjpeg-turbo, ~3x less work; sides rounded up), other formats
/// are decoded and downscaled with INTER_AREA. `info`, when given, receives the header info.
cv::Mat decode_image_rgb(const std::string& path, int reduce = 1, const ImageLimits& limits = {});
cv::Mat decode_image_rgb_bytes(std::string_view bytes, const std::string& source, int reduce = 1,
                               const ImageLimits& limits = {}, ImageInfo* info = nullptr);

/// Largest factor in {1, 2, 4, 8} that keeps the shorter side >= 2 * target (so the final INTER_AREA
/// resize still averages at least 2x2 source pixels per output pixel).
int choose_reduce_factor(int width, int height, int target);

/// Encodes RGB (CV_8UC3) or grey (CV_8UC1) by extension (.jpg/.jpeg/.png) and writes atomically.
void write_image_rgb(const std::string& path, const cv::Mat& image, int jpeg_quality = 95);

}  // namespace fundus

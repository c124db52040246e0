#include "fundus/data/image_io.h"

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/strings.h"

// libjpeg's C API (after <cstdio>: jpeglib.h needs FILE).
#include <jerror.h>
#include <jpeglib.h>

namespace fundus {

const char* image_format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::jpeg: return "jpeg";
    case ImageFormat::png: return "png";
    case ImageFormat::tiff: return "tiff";
    case ImageFormat::bmp: return "bmp";
    default: return "unknown";
  }
}

namespace {
ImageFormat sniff(std::string_view b) {
  auto u = [&](size_t i) { return i < b.size() ? uint8_t(b[i]) : 0; };
  if (u(0) == 0xFF && u(1) == 0xD8) return ImageFormat::jpeg;
  if (b.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8)) return ImageFormat::png;
  if (b.substr(0, 4) == std::string_view("II*\0", 4) || b.substr(0, 4) == std::string_view("MM\0*", 4))
    return ImageFormat::tiff;
  if (b.substr(0, 2) == "BM") return ImageFormat::bmp;
  return ImageFormat::unknown;
}

uint32_t be32(std::string_view b, size_t i) {
  return (uint32_t(uint8_t(b[i])) << 24) | (uint32_t(uint8_t(b[i + 1])) << 16) | (uint32_t(uint8_t(b[i + 2])) << 8) |
         uint8_t(b[i + 3]);
}
uint16_t be16(std::string_view b, size_t i) { return uint16_t((uint8_t(b[i]) << 8) | uint8_t(b[i + 1])); }

// Walks JPEG marker segments up to the first start-of-frame; false if the header is malformed.
bool jpeg_size(std::string_view b, int& w, int& h) {
  size_t i = 2;
  while (i + 4 <= b.size()) {
    if (uint8_t(b[i]) != 0xFF) return false;
    uint8_t m = uint8_t(b[i + 1]);
    if (m == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) {
      i += 2;
      continue;
    }
    uint16_t len = be16(b, i + 2);
    if (len < 2) return false;
    bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof) {
      if (i + 9 > b.size()) return false;
      h = be16(b, i + 5);
      w = be16(b, i + 7);
      return w > 0 && h > 0;
    }
    i += 2 + len;
  }
  return false;
}
}  // namespace

std::string image_structure_problem(std::string_view b) {
  switch (sniff(b)) {
    case ImageFormat::jpeg: {
      // The end-of-image marker may be followed by padding or trailing metadata from some cameras.
      size_t tail_start = b.size() > 4096 ? b.size() - 4096 : 0;
      auto tail = b.substr(tail_start);
      if (tail.rfind(std::string_view("\xFF\xD9", 2)) == std::string_view::npos)
        return "truncated JPEG (no end-of-image marker)";
      int w = 0, h = 0;
      if (!jpeg_size(b, w, h)) return "corrupt JPEG header (no valid start-of-frame)";
      return "";
    }
    case ImageFormat::png: {
      if (b.size() < 33 || b.substr(12, 4) != "IHDR") return "corrupt PNG header";
      if (b.size() < 12 || b.substr(b.size() - 8, 4) != "IEND") return "truncated PNG (no IEND chunk)";
      return "";
    }
    case ImageFormat::tiff:
    case ImageFormat::bmp:
      return b.size() < 64 ? "truncated image file" : "";
    default:
      return b.empty() ? "empty file" : "not an image (unknown format)";
  }
}

ImageInfo image_info_from_bytes(std::string_view bytes, const std::string& source) {
  ImageInfo info;
  info.format = sniff(bytes);
  if (info.format == ImageFormat::jpeg) {
    FUNDUS_CHECK(jpeg_size(bytes, info.width, info.height), source << ": corrupt JPEG header (no valid start-of-frame)");
  } else if (info.format == ImageFormat::png) {
    FUNDUS_CHECK(bytes.size() >= 24 && bytes.substr(12, 4) == "IHDR", source << ": corrupt PNG header");
    info.width = int(be32(bytes, 16));
    info.height = int(be32(bytes, 20));
  } else {
    cv::Mat m = decode_image_rgb_bytes(bytes, source, 1);
    info.width = m.cols;
    info.height = m.rows;
  }
  return info;
}

ImageInfo read_image_info(const std::string& path) {
  FUNDUS_CHECK(file_exists(path), path << ": image file not found");
  // Headers sit in the first few KB except for JPEGs with large EXIF thumbnails: read all, it is cheap.
  return image_info_from_bytes(read_file(path), path);
}

int choose_reduce_factor(int width, int height, int target) {
  int shorter = std::min(width, height);
  int f = 1;
  while (f < 8 && shorter / (f * 2) >= 2 * target) f *= 2;
  return f;
}

namespace {

// libjpeg reports through callbacks: a fatal error must not return to the library (longjmp back to
// jpeg_check_entropy), a warning is remembered when it means lost image data.
struct JpegCheckErrors {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char fatal[JMSG_LENGTH_MAX];
  char corrupt[JMSG_LENGTH_MAX];
  bool has_corrupt;
};

void jpeg_check_error_exit(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegCheckErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->fatal);
  std::longjmp(e->jump, 1);
}

void jpeg_check_emit_message(j_common_ptr cinfo, int level) {
  if (level != -1) return;  // trace output, not a warning
  auto* e = reinterpret_cast<JpegCheckErrors*>(cinfo->err);
  cinfo->err->num_warnings++;
  if (cinfo->err->msg_code == JWRN_EXTRANEOUS_DATA || e->has_corrupt) return;
  (*cinfo->err->format_message)(cinfo, e->corrupt);
  e->has_corrupt = true;
}

// C-style on purpose: no object with a destructor lives between setjmp and a longjmp to it.
// Returns 0 when clean, 1 for a fatal error (message in fatal), 2 for corrupt data (in corrupt).
int jpeg_check_entropy(const unsigned char* data, size_t size, JpegCheckErrors* errors) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&errors->mgr);
  errors->mgr.error_exit = jpeg_check_error_exit;
  errors->mgr.emit_message = jpeg_check_emit_message;
  errors->has_corrupt = false;
  JSAMPARRAY row = nullptr;
  if (setjmp(errors->jump)) {
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  cinfo.scale_num = 1;
  cinfo.scale_denom = 8;
  cinfo.do_fancy_upsampling = FALSE;
  cinfo.dct_method = JDCT_IFAST;
  jpeg_start_decompress(&cinfo);
  row = (*cinfo.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE,
                                   cinfo.output_width * cinfo.output_components, 1);
  while (cinfo.output_scanline < cinfo.output_height) jpeg_read_scanlines(&cinfo, row, 1);
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return errors->has_corrupt ? 2 : 0;
}

}  // namespace

std::string jpeg_data_problem(std::string_view bytes) {
  if (sniff(bytes) != ImageFormat::jpeg) return "";
  JpegCheckErrors errors{};
  int r = jpeg_check_entropy(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), &errors);
  if (r == 1) return std::string("cannot decode JPEG (") + errors.fatal + ")";
  if (r == 2) return std::string("corrupt JPEG data (") + errors.corrupt + ")";
  return "";
}

cv::Mat decode_image_rgb_bytes(std::string_view bytes, const std::string& source, int reduce) {
  FUNDUS_CHECK(reduce == 1 || reduce == 2 || reduce == 4 || reduce == 8, "reduce factor must be 1, 2, 4 or 8");
  std::string problem = image_structure_problem(bytes);
  FUNDUS_CHECK(problem.empty(), source << ": " << problem);
  ImageFormat fmt = sniff(bytes);
  int flags = cv::IMREAD_COLOR;
  if (fmt == ImageFormat::jpeg && reduce > 1)
    flags = reduce == 2 ? cv::IMREAD_REDUCED_COLOR_2 : reduce == 4 ? cv::IMREAD_REDUCED_COLOR_4 : cv::IMREAD_REDUCED_COLOR_8;
  cv::Mat raw(1, int(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
  cv::Mat bgr;
  try {
    bgr = cv::imdecode(raw, flags);
  } catch (const cv::Exception& e) {
    FUNDUS_THROW(source << ": cannot decode image (" << e.msg << ")");
  }
  FUNDUS_CHECK(!bgr.empty(), source << ": cannot decode image (" << image_format_name(fmt) << " data is corrupt)");
  if (bgr.depth() != CV_8U) bgr.convertTo(bgr, CV_8U, bgr.depth() == CV_16U ? 1.0 / 257.0 : 1.0);
  if (fmt != ImageFormat::jpeg && reduce > 1)
    cv::resize(bgr, bgr, cv::Size(std::max(1, bgr.cols / reduce), std::max(1, bgr.rows / reduce)), 0, 0, cv::INTER_AREA);
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

cv::Mat decode_image_rgb(const std::string& path, int reduce) {
  FUNDUS_CHECK(file_exists(path), path << ": image file not found");
  return decode_image_rgb_bytes(read_file(path), path, reduce);
}

void write_image_rgb(const std::string& path, const cv::Mat& image, int jpeg_quality) {
  FUNDUS_CHECK(image.type() == CV_8UC3 || image.type() == CV_8UC1, path << ": write_image_rgb expects CV_8UC3 or CV_8UC1");
  std::string ext = to_lower(path.substr(path.find_last_of('.') == std::string::npos ? path.size() : path.find_last_of('.')));
  cv::Mat out;  // a separate buffer: converting in place would swap the caller's channels
  if (image.channels() == 3)
    cv::cvtColor(image, out, cv::COLOR_RGB2BGR);
  else
    out = image;
  std::vector<uchar> buf;
  std::vector<int> params;
  if (ext == ".jpg" || ext == ".jpeg") params = {cv::IMWRITE_JPEG_QUALITY, jpeg_quality};
  FUNDUS_CHECK(ext == ".jpg" || ext == ".jpeg" || ext == ".png", path << ": unsupported image extension (use .jpg or .png)");
  FUNDUS_CHECK(cv::imencode(ext, out, buf, params), path << ": image encoding failed");
  write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(buf.data()), buf.size()));
}

}  // namespace fundus

#include "fundus/data/image_io.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/io.h"
#include "fundus/core/log.h"
#include "fundus/core/strings.h"

// The decoders' C APIs (after <cstdio>: jpeglib.h needs FILE).
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

namespace fundus {

const char* image_format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::jpeg:
      return "jpeg";
    case ImageFormat::png:
      return "png";
    case ImageFormat::tiff:
      return "tiff";
    case ImageFormat::bmp:
      return "bmp";
    default:
      return "unknown";
  }
}

const char* image_problem_name(ImageProblem p) {
  switch (p) {
    case ImageProblem::missing:
      return "missing";
    case ImageProblem::not_a_file:
      return "not_a_file";
    case ImageProblem::unreadable:
      return "unreadable";
    case ImageProblem::empty:
      return "empty";
    case ImageProblem::not_an_image:
      return "not_an_image";
    case ImageProblem::truncated:
      return "truncated";
    case ImageProblem::corrupt:
      return "corrupt";
    case ImageProblem::too_many_pixels:
      return "too_many_pixels";
    case ImageProblem::no_field_of_view:
      return "no_field_of_view";
  }
  return "corrupt";
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
uint32_t be16(std::string_view b, size_t i) { return (uint32_t(uint8_t(b[i])) << 8) | uint8_t(b[i + 1]); }
uint32_t le16(std::string_view b, size_t i) { return uint32_t(uint8_t(b[i])) | (uint32_t(uint8_t(b[i + 1])) << 8); }
uint32_t le32(std::string_view b, size_t i) { return le16(b, i) | (le16(b, i + 2) << 16); }

// Readers of a TIFF structure (TIFF files, EXIF blocks) in its declared byte order; bounds are the caller's.
struct TiffBytes {
  std::string_view b;
  bool little;
  uint32_t u16(size_t i) const { return little ? le16(b, i) : be16(b, i); }
  uint32_t u32(size_t i) const { return little ? le32(b, i) : be32(b, i); }
  bool open() {
    if (b.size() < 8) return false;
    little = b[0] == 'I';
    return (b.substr(0, 2) == "II" || b.substr(0, 2) == "MM") && u16(2) == 42;
  }
  // The values of a SHORT or LONG entry of the first image directory (at most `max` of them); false
  // when absent, of another type or out of bounds.
  bool ifd0_values(uint32_t tag, std::vector<uint32_t>& values, uint32_t max) const {
    uint64_t ifd = u32(4);
    if (ifd + 2 > b.size()) return false;
    uint32_t n = u16(size_t(ifd));
    for (uint32_t k = 0; k < n; ++k) {
      uint64_t e = ifd + 2 + 12ull * k;
      if (e + 12 > b.size()) return false;
      if (u16(size_t(e)) != tag) continue;
      const uint32_t type = u16(size_t(e + 2)), count = u32(size_t(e + 4)), size = type == 3 ? 2 : 4;
      if ((type != 3 && type != 4) || count == 0 || count > max) return false;
      uint64_t at = uint64_t(count) * size <= 4 ? e + 8 : u32(size_t(e + 8));  // inline or at an offset
      if (at + uint64_t(count) * size > b.size()) return false;
      values.resize(count);
      for (uint32_t i = 0; i < count; ++i) values[i] = type == 3 ? u16(size_t(at + 2 * i)) : u32(size_t(at + 4 * i));
      return true;
    }
    return false;
  }
  bool ifd0_value(uint32_t tag, uint32_t& value) const {
    std::vector<uint32_t> v;
    if (!ifd0_values(tag, v, 1)) return false;
    value = v[0];
    return true;
  }
};

// EXIF orientation (tag 0x0112 of IFD0) of a TIFF-structured EXIF block; 1 when absent or invalid.
int exif_orientation(std::string_view tiff) {
  TiffBytes t{tiff, true};
  uint32_t v = 1;
  if (!t.open() || !t.ifd0_value(0x0112, v) || v < 1 || v > 8) return 1;
  return int(v);
}

// What a header walk found: a problem ("" when sound) of some kind, or the size.
struct HeaderWalk {
  std::string problem;
  ImageProblem kind = ImageProblem::corrupt;
  int64_t width = 0, height = 0;  // as stored
  int orientation = 1;
  HeaderWalk& fail(ImageProblem k, std::string p) {
    kind = k;
    problem = std::move(p);
    return *this;
  }
};

constexpr const char* kJpegTruncated = "truncated JPEG (no end-of-image marker)";

// Walks the marker segments of a JPEG. to_end: through every scan's entropy-coded data to the EOI
// marker (any bytes may follow it); else only up to the frame header (works on a prefix of the file).
HeaderWalk walk_jpeg(std::string_view b, bool to_end) {
  HeaderWalk w;
  const size_t n = b.size();
  auto u8 = [&](size_t k) { return uint8_t(b[k]); };
  bool frame = false;
  size_t i = 2;
  while (true) {
    // Bytes before a marker that are not 0xFF are skipped (libjpeg does, with a harmless warning),
    // then any 0xFF fill bytes.
    while (i < n && u8(i) != 0xFF) ++i;
    while (i < n && u8(i) == 0xFF) ++i;
    if (i >= n)
      return w.fail(ImageProblem::truncated, frame ? kJpegTruncated : "truncated JPEG (ends before its frame header)");
    const uint8_t m = u8(i++);
    if (m == 0xD9) {  // EOI
      if (!frame)
        return w.fail(ImageProblem::corrupt, "corrupt JPEG header (end-of-image marker before the frame header)");
      return w;
    }
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // TEM, RSTn: no length
    if (m == 0xD8) return w.fail(ImageProblem::corrupt, "corrupt JPEG structure (a second start-of-image marker)");
    if (n - i < 2) return w.fail(ImageProblem::truncated, kJpegTruncated);
    const size_t len = be16(b, i);
    if (len < 2)
      return w.fail(ImageProblem::corrupt, strprintf("corrupt JPEG header (segment 0x%02X of length %zu)", m, len));
    if (len > n - i)
      return w.fail(ImageProblem::truncated, frame ? kJpegTruncated : "truncated JPEG (ends before its frame header)");
    const std::string_view seg = b.substr(i + 2, len - 2);
    i += len;
    const bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof && !frame) {
      if (seg.size() < 6) return w.fail(ImageProblem::corrupt, "corrupt JPEG header (short start-of-frame segment)");
      w.height = be16(seg, 1);
      w.width = be16(seg, 3);
      if (w.width == 0 || w.height == 0)
        return w.fail(ImageProblem::corrupt,
                      strprintf("JPEG header: invalid size %lldx%lld (a side of 0 is not supported)",
                                (long long)w.width, (long long)w.height));
      frame = true;
      if (!to_end) return w;
    } else if (m == 0xE1 && w.orientation == 1 && seg.substr(0, 6) == std::string_view("Exif\0\0", 6)) {
      w.orientation = exif_orientation(seg.substr(6));
    }
    if (m == 0xDA) {  // start of scan: entropy-coded data up to the next marker other than RSTn
      if (!frame) return w.fail(ImageProblem::corrupt, "corrupt JPEG structure (a scan before the frame header)");
      while (true) {
        const void* p = i < n ? std::memchr(b.data() + i, 0xFF, n - i) : nullptr;
        if (!p) return w.fail(ImageProblem::truncated, kJpegTruncated);
        i = size_t(static_cast<const char*>(p) - b.data());
        if (i + 1 >= n) return w.fail(ImageProblem::truncated, kJpegTruncated);
        const uint8_t next = u8(i + 1);
        if (next == 0x00 || (next >= 0xD0 && next <= 0xD7)) {  // stuffed 0xFF or a restart marker
          i += 2;
          continue;
        }
        break;  // a marker (or fill bytes before one): back to the segment loop
      }
    }
  }
}

// PNG: signature, IHDR first, then chunks up to IEND (to_end) or as far as the bytes go.
HeaderWalk walk_png(std::string_view b, bool to_end) {
  HeaderWalk w;
  const size_t n = b.size();
  if (n < 33) return w.fail(ImageProblem::truncated, "truncated PNG (no complete IHDR chunk)");
  if (be32(b, 8) != 13 || b.substr(12, 4) != "IHDR")
    return w.fail(ImageProblem::corrupt, "corrupt PNG header (IHDR is not the first chunk)");
  w.width = be32(b, 16);
  w.height = be32(b, 20);
  if (w.width == 0 || w.height == 0 || w.width > 0x7fffffff || w.height > 0x7fffffff)
    return w.fail(ImageProblem::corrupt,
                  strprintf("PNG header: invalid size %lldx%lld (each side must be 1 to 2147483647)",
                            (long long)w.width, (long long)w.height));
  for (size_t i = 33;;) {
    if (n - i < 12) {
      if (to_end) return w.fail(ImageProblem::truncated, "truncated PNG (no IEND chunk)");
      return w;
    }
    const uint64_t len = be32(b, i);
    const std::string_view type = b.substr(i + 4, 4);
    if (len > 0x7fffffff) return w.fail(ImageProblem::corrupt, "corrupt PNG chunk (length above 2^31)");
    if (len > n - i - 12) {
      if (to_end) return w.fail(ImageProblem::truncated, "truncated PNG (no IEND chunk)");
      return w;
    }
    if (type == "IEND") return w;
    if (type == "eXIf" && w.orientation == 1) w.orientation = exif_orientation(b.substr(i + 8, size_t(len)));
    i += 12 + size_t(len);
  }
}

// TIFF and BMP: the size from the header (IFD0, BITMAPINFOHEADER); the pixels are OpenCV's job.
HeaderWalk walk_tiff(std::string_view b) {
  HeaderWalk w;
  TiffBytes t{b, true};
  if (b.size() >= 4 && ((b[0] == 'I' && uint8_t(b[2]) == 43) || (b[0] == 'M' && uint8_t(b[3]) == 43)))
    return w.fail(ImageProblem::corrupt, "unsupported TIFF variant (BigTIFF)");
  if (!t.open()) return w.fail(ImageProblem::truncated, "truncated TIFF header");
  uint32_t width = 0, height = 0;
  if (uint64_t(t.u32(4)) + 2 > b.size()) return w.fail(ImageProblem::truncated, "truncated TIFF (no image directory)");
  if (!t.ifd0_value(256, width) || !t.ifd0_value(257, height))
    return w.fail(ImageProblem::corrupt, "corrupt TIFF header (no image width or length in the first directory)");
  w.width = width;
  w.height = height;
  if (width == 0 || height == 0 || width > 0x7fffffff || height > 0x7fffffff)
    return w.fail(ImageProblem::corrupt, strprintf("TIFF header: invalid size %ux%u", width, height));
  // Every strip (or tile) of the first image lies inside the file: a truncated TIFF is reported here
  // instead of by OpenCV's decoder (which prints its own diagnostics).
  std::vector<uint32_t> offsets, counts;
  const bool tiled = t.ifd0_values(324, offsets, 1u << 24);
  if ((tiled || t.ifd0_values(273, offsets, 1u << 24)) && t.ifd0_values(tiled ? 325 : 279, counts, 1u << 24) &&
      offsets.size() == counts.size()) {
    for (size_t i = 0; i < offsets.size(); ++i)
      if (uint64_t(offsets[i]) + counts[i] > b.size())
        return w.fail(ImageProblem::truncated, strprintf("truncated TIFF (%s %zu ends beyond the end of the file)",
                                                         tiled ? "tile" : "strip", i));
  }
  return w;
}

HeaderWalk walk_bmp(std::string_view b) {
  HeaderWalk w;
  if (b.size() < 26) return w.fail(ImageProblem::truncated, "truncated BMP header");
  const uint32_t dib = le32(b, 14);
  if (dib == 12) {  // OS/2 BITMAPCOREHEADER: unsigned 16-bit sides
    w.width = le16(b, 18);
    w.height = le16(b, 20);
  } else {
    w.width = int32_t(le32(b, 18));
    w.height = int32_t(le32(b, 22));
    if (w.height < 0) w.height = -w.height;  // top-down rows
  }
  if (w.width <= 0 || w.height <= 0 || w.width > 0x7fffffff || w.height > 0x7fffffff)
    return w.fail(ImageProblem::corrupt,
                  strprintf("BMP header: invalid size %lldx%lld", (long long)w.width, (long long)w.height));
  return w;
}

HeaderWalk walk_header(std::string_view b, ImageFormat f, bool to_end) {
  switch (f) {
    case ImageFormat::jpeg:
      return walk_jpeg(b, to_end);
    case ImageFormat::png:
      return walk_png(b, to_end);
    case ImageFormat::tiff:
      return walk_tiff(b);
    case ImageFormat::bmp:
      return walk_bmp(b);
    default: {
      HeaderWalk w;
      return b.empty() ? w.fail(ImageProblem::empty, "empty file")
                       : w.fail(ImageProblem::not_an_image, "not an image (unknown format)");
    }
  }
}

ImageInfo info_of(const HeaderWalk& w, ImageFormat f) {
  ImageInfo info;
  info.format = f;
  info.orientation = w.orientation;
  const bool transposed = w.orientation >= 5;
  info.width = int(transposed ? w.height : w.width);
  info.height = int(transposed ? w.width : w.height);
  return info;
}

}  // namespace

ImageFormat sniff_image_format(std::string_view bytes) { return sniff(bytes); }

std::string read_image_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      FUNDUS_IMAGE_ERROR(ImageProblem::missing, path << ": image file not found");
    FUNDUS_IMAGE_ERROR(ImageProblem::unreadable,
                       path << ": cannot access the image file (" << std::strerror(errno) << ")");
  }
  if (S_ISDIR(st.st_mode)) FUNDUS_IMAGE_ERROR(ImageProblem::not_a_file, path << ": is a directory, not an image file");
  if (!S_ISREG(st.st_mode)) FUNDUS_IMAGE_ERROR(ImageProblem::not_a_file, path << ": is not a regular file");
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const Error& e) {
    FUNDUS_IMAGE_ERROR(ImageProblem::unreadable, e.message());
  }
  if (bytes.empty()) FUNDUS_IMAGE_ERROR(ImageProblem::empty, path << ": empty file (0 bytes)");
  return bytes;
}

std::string image_structure_problem(std::string_view b) { return walk_header(b, sniff(b), true).problem; }

ImageInfo image_info_from_bytes(std::string_view bytes, const std::string& source) {
  const ImageFormat f = sniff(bytes);
  HeaderWalk w = walk_header(bytes, f, false);
  if (!w.problem.empty()) FUNDUS_IMAGE_ERROR(w.kind, source << ": " << w.problem);
  return info_of(w, f);
}

ImageInfo read_image_info(const std::string& path) {
  // Headers sit in the first few KB except for JPEGs with large EXIF thumbnails: read all, it is cheap.
  return image_info_from_bytes(read_image_file(path), path);
}

ImageInfo check_image_bytes(std::string_view bytes, const std::string& source, const ImageLimits& limits) {
  const ImageFormat f = sniff(bytes);
  HeaderWalk w = walk_header(bytes, f, true);
  if (!w.problem.empty()) FUNDUS_IMAGE_ERROR(w.kind, source << ": " << w.problem);
  const int64_t pixels = w.width * w.height;  // each side < 2^31: no overflow
  if (pixels > limits.max_pixels)
    FUNDUS_IMAGE_ERROR(ImageProblem::too_many_pixels, source << ": " << w.width << "x" << w.height << " = " << pixels
                                                             << " pixels exceeds the limit of " << limits.max_pixels
                                                             << " pixels");
  return info_of(w, f);
}

int choose_reduce_factor(int width, int height, int target) {
  int shorter = std::min(width, height);
  int f = 1;
  while (f < 8 && shorter / (f * 2) >= 2 * target) f *= 2;
  return f;
}

namespace {

// ---- JPEG through libjpeg-turbo -------------------------------------------------------------------
// libjpeg reports through callbacks that must not return into the library on failure: a fatal error,
// or a warning that means lost pixels, longjmps back to the phase function (begin or rows) that
// called into libjpeg. Those functions are C-style on purpose: no object with a destructor lives
// between a setjmp and the longjmp to it. A JpegJob is plain data, zero-initialised by its owner.
struct JpegJob {
  jpeg_decompress_struct cinfo;
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char problem[JMSG_LENGTH_MAX];   // the fatal error or the pixel-losing warning
  char harmless[JMSG_LENGTH_MAX];  // the first warning that loses no pixel
  int harmless_count;
  bool corrupt;  // problem is a corrupt-data warning, not a fatal error
  bool cmyk;
};

JpegJob* job_of(j_common_ptr c) { return static_cast<JpegJob*>(c->client_data); }

void jpeg_job_error_exit(j_common_ptr c) {
  (*c->err->format_message)(c, job_of(c)->problem);
  std::longjmp(job_of(c)->jump, 1);
}

void jpeg_job_emit(j_common_ptr c, int level) {
  if (level >= 0) return;  // trace output, not a warning
  JpegJob* j = job_of(c);
  const int code = c->err->msg_code;
  // No pixel lost: garbage between segments (common in camera files), a damaged ICC profile (unused),
  // a newer JFIF revision.
  if (code == JWRN_EXTRANEOUS_DATA || code == JWRN_BOGUS_ICC || code == JWRN_JFIF_MAJOR) {
    if (j->harmless_count++ == 0) (*c->err->format_message)(c, j->harmless);
    return;
  }
  (*c->err->format_message)(c, j->problem);
  j->corrupt = true;
  std::longjmp(j->jump, 1);
}

// Header and decompression start at 1/denom scale; output sides in cinfo.output_width/height.
int jpeg_job_begin(JpegJob* j, const unsigned char* data, size_t size, int denom) {
  j->cinfo.err = jpeg_std_error(&j->mgr);
  j->mgr.error_exit = jpeg_job_error_exit;
  j->mgr.emit_message = jpeg_job_emit;
  j->cinfo.client_data = j;  // kept by jpeg_create_decompress
  if (setjmp(j->jump)) return 1;
  jpeg_create_decompress(&j->cinfo);
  jpeg_mem_src(&j->cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&j->cinfo, TRUE);
  j->cinfo.scale_num = 1;
  j->cinfo.scale_denom = static_cast<unsigned int>(denom);
  // OpenCV's choices (grfmt_jpeg.cpp), so that the pixels are the same: RGB out (grey is expanded by
  // libjpeg), 4-component files as CMYK converted below; default DCT method and upsampling.
  j->cmyk = j->cinfo.num_components == 4;
  j->cinfo.out_color_space = j->cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&j->cinfo);
  return 0;
}

// All scanlines into `out` (RGB rows of `step` bytes), then the rest of the file up to EOI.
int jpeg_job_rows(JpegJob* j, unsigned char* out, size_t step) {
  if (setjmp(j->jump)) return 1;
  jpeg_decompress_struct* c = &j->cinfo;
  JSAMPARRAY cmyk_row =
      j->cmyk ? (*c->mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(c), JPOOL_IMAGE, c->output_width * 4, 1)
              : nullptr;
  while (c->output_scanline < c->output_height) {
    unsigned char* dst = out + step * c->output_scanline;
    JSAMPROW row = j->cmyk ? cmyk_row[0] : dst;
    if (jpeg_read_scanlines(c, &row, 1) != 1) {
      std::snprintf(j->problem, sizeof j->problem, "no scanline %u returned", c->output_scanline);
      j->corrupt = true;
      return 1;
    }
    if (j->cmyk)
      for (JDIMENSION x = 0; x < c->output_width; ++x) {  // OpenCV's icvCvt_CMYK2BGR_8u_C4C3R, in RGB order
        const unsigned char* p = row + 4 * x;
        const int k = p[3];
        for (int ch = 0; ch < 3; ++ch) dst[3 * x + ch] = static_cast<unsigned char>(k - (((255 - p[ch]) * k) >> 8));
      }
  }
  jpeg_finish_decompress(c);
  return 0;
}

// Decodes at 1/denom scale into `out`; returns "" or the problem. `harmless` receives the first
// harmless warning (and a count) or stays empty.
std::string jpeg_decode(std::string_view bytes, int denom, cv::Mat& out, std::string& harmless) {
  auto job = std::make_unique<JpegJob>();  // value-initialised: all zero
  struct Destroy {
    JpegJob* j;
    ~Destroy() { jpeg_destroy_decompress(&j->cinfo); }  // safe on a never-created (zeroed) struct
  } destroy{job.get()};
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  int failed = jpeg_job_begin(job.get(), data, bytes.size(), denom);
  if (!failed) {
    out.create(int(job->cinfo.output_height), int(job->cinfo.output_width), CV_8UC3);
    failed = jpeg_job_rows(job.get(), out.data, out.step);
  }
  if (job->harmless_count > 0)
    harmless = job->harmless_count == 1
                   ? std::string(job->harmless)
                   : strprintf("%s (and %d more warnings)", job->harmless, job->harmless_count - 1);
  if (!failed) return "";
  out.release();
  return job->corrupt ? std::string("corrupt JPEG data (") + job->problem + ")"
                      : std::string("cannot decode JPEG (") + job->problem + ")";
}

// ---- PNG through libpng ---------------------------------------------------------------------------
// Same pattern: libpng's error callback longjmps to png_jmpbuf, set in each C-style phase function.
struct PngJob {
  png_structp png;
  png_infop info;
  png_infop end;
  const unsigned char* data;
  size_t size, pos;
  char problem[256];
  char warning[256];  // the first warning
  int warnings;
};

void png_job_error(png_structp png, png_const_charp message) {
  auto* j = static_cast<PngJob*>(png_get_error_ptr(png));
  std::snprintf(j->problem, sizeof j->problem, "%s", message);
  png_longjmp(png, 1);
}

void png_job_warning(png_structp png, png_const_charp message) {
  auto* j = static_cast<PngJob*>(png_get_error_ptr(png));
  if (j->warnings++ == 0) std::snprintf(j->warning, sizeof j->warning, "%s", message);
}

void png_job_read(png_structp png, png_bytep out, size_t n) {
  auto* j = static_cast<PngJob*>(png_get_io_ptr(png));
  if (n > j->size - j->pos) png_error(png, "unexpected end of file");
  std::memcpy(out, j->data + j->pos, n);
  j->pos += n;
}

// Header and transformations (OpenCV's, grfmt_png.cpp, for the same pixels: 16 -> 8 bits by
// stripping, alpha stripped, palette and low-depth grey expanded, grey -> RGB); output 8-bit RGB.
int png_job_begin(PngJob* j) {
  j->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, j, png_job_error, png_job_warning);
  if (!j->png) return 1;
  j->info = png_create_info_struct(j->png);
  j->end = png_create_info_struct(j->png);
  if (!j->info || !j->end) return 1;
  if (setjmp(png_jmpbuf(j->png))) return 1;
  png_set_user_limits(j->png, 0x7fffffff, 0x7fffffff);  // the pixel cap (checked before) is the policy
  png_set_read_fn(j->png, j, png_job_read);
  png_read_info(j->png, j->info);
  const int depth = png_get_bit_depth(j->png, j->info), type = png_get_color_type(j->png, j->info);
  if (depth == 16) png_set_strip_16(j->png);
  png_set_strip_alpha(j->png);
  if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(j->png);
  if ((type & PNG_COLOR_MASK_COLOR) == 0 && depth < 8) png_set_expand_gray_1_2_4_to_8(j->png);
  if ((type & PNG_COLOR_MASK_COLOR) == 0) png_set_gray_to_rgb(j->png);
  png_set_interlace_handling(j->png);
  png_read_update_info(j->png, j->info);
  return 0;
}

int png_job_rows(PngJob* j, png_bytepp rows) {
  if (setjmp(png_jmpbuf(j->png))) return 1;
  png_read_image(j->png, rows);
  png_read_end(j->png, j->end);
  return 0;
}

std::string png_decode(std::string_view bytes, cv::Mat& out, std::string& warning) {
  auto job = std::make_unique<PngJob>();
  job->data = reinterpret_cast<const unsigned char*>(bytes.data());
  job->size = bytes.size();
  struct Destroy {
    PngJob* j;
    ~Destroy() {
      if (j->png) png_destroy_read_struct(&j->png, &j->info, &j->end);
    }
  } destroy{job.get()};
  int failed = png_job_begin(job.get());
  if (!failed) {
    const png_uint_32 w = png_get_image_width(job->png, job->info), h = png_get_image_height(job->png, job->info);
    if (png_get_rowbytes(job->png, job->info) != size_t(w) * 3) {
      std::snprintf(job->problem, sizeof job->problem, "unexpected row layout");
      failed = 1;
    } else {
      out.create(int(h), int(w), CV_8UC3);
      std::vector<png_bytep> rows(h);
      for (png_uint_32 y = 0; y < h; ++y) rows[y] = out.ptr<uint8_t>(int(y));
      failed = png_job_rows(job.get(), rows.data());
    }
  }
  if (job->warnings > 0)
    warning = job->warnings == 1 ? std::string(job->warning)
                                 : strprintf("%s (and %d more warnings)", job->warning, job->warnings - 1);
  if (!failed) return "";
  out.release();
  return std::string("cannot decode PNG (libpng: ") + (job->problem[0] ? job->problem : "out of memory") + ")";
}

// OpenCV's ApplyExifOrientation (loadsave.cpp), so that decoded pixels match imdecode's.
void apply_orientation(cv::Mat& img, int orientation) {
  switch (orientation) {
    case 2:
      cv::flip(img, img, 1);
      break;
    case 3:
      cv::flip(img, img, -1);
      break;
    case 4:
      cv::flip(img, img, 0);
      break;
    case 5:
      cv::transpose(img, img);
      break;
    case 6:
      cv::transpose(img, img);
      cv::flip(img, img, 1);
      break;
    case 7:
      cv::transpose(img, img);
      cv::flip(img, img, -1);
      break;
    case 8:
      cv::transpose(img, img);
      cv::flip(img, img, 0);
      break;
    default:
      break;
  }
}

}  // namespace

std::string jpeg_data_problem(std::string_view bytes) {
  if (sniff(bytes) != ImageFormat::jpeg) return "";
  cv::Mat small;
  std::string harmless;
  return jpeg_decode(bytes, 8, small, harmless);
}

cv::Mat decode_image_rgb_bytes(std::string_view bytes, const std::string& source, int reduce, const ImageLimits& limits,
                               ImageInfo* info_out) {
  FUNDUS_CHECK(reduce == 1 || reduce == 2 || reduce == 4 || reduce == 8, "reduce factor must be 1, 2, 4 or 8");
  const ImageInfo info = check_image_bytes(bytes, source, limits);
  cv::Mat rgb;
  std::string problem, warning;
  if (info.format == ImageFormat::jpeg) {
    problem = jpeg_decode(bytes, reduce, rgb, warning);
    if (!warning.empty()) FUNDUS_WARN(source << ": libjpeg warning: " << warning << " (no pixel lost)");
  } else if (info.format == ImageFormat::png) {
    problem = png_decode(bytes, rgb, warning);
    if (!warning.empty()) FUNDUS_WARN(source << ": libpng warning: " << warning);
  } else {
    // TIFF, BMP: OpenCV. Its exception text is internal, and its log lines about a bad file do not
    // name the file: our message replaces both.
    static std::once_flag quiet;
    std::call_once(quiet, [] { cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR); });
    cv::Mat raw(1, int(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data())), bgr;
    try {
      bgr = cv::imdecode(raw, cv::IMREAD_COLOR);
    } catch (const cv::Exception&) {
      bgr.release();
    }
    if (bgr.empty()) {
      problem = strprintf("cannot decode %s image (corrupt or unsupported data)", image_format_name(info.format));
    } else {
      if (bgr.depth() != CV_8U) bgr.convertTo(bgr, CV_8U, bgr.depth() == CV_16U ? 1.0 / 257.0 : 1.0);
      cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    }
  }
  if (!problem.empty()) FUNDUS_IMAGE_ERROR(ImageProblem::corrupt, source << ": " << problem);
  if (info.format == ImageFormat::jpeg || info.format == ImageFormat::png) apply_orientation(rgb, info.orientation);
  if (info.format != ImageFormat::jpeg && reduce > 1)
    cv::resize(rgb, rgb, cv::Size(std::max(1, rgb.cols / reduce), std::max(1, rgb.rows / reduce)), 0, 0,
               cv::INTER_AREA);
  if (info_out) *info_out = info;
  return rgb;
}

cv::Mat decode_image_rgb(const std::string& path, int reduce, const ImageLimits& limits) {
  return decode_image_rgb_bytes(read_image_file(path), path, reduce, limits);
}

void write_image_rgb(const std::string& path, const cv::Mat& image, int jpeg_quality) {
  FUNDUS_CHECK(image.type() == CV_8UC3 || image.type() == CV_8UC1,
               path << ": write_image_rgb expects CV_8UC3 or CV_8UC1");
  std::string ext =
      to_lower(path.substr(path.find_last_of('.') == std::string::npos ? path.size() : path.find_last_of('.')));
  cv::Mat out;  // a separate buffer: converting in place would swap the caller's channels
  if (image.channels() == 3) cv::cvtColor(image, out, cv::COLOR_RGB2BGR);
  else out = image;
  std::vector<uchar> buf;
  std::vector<int> params;
  if (ext == ".jpg" || ext == ".jpeg") params = {cv::IMWRITE_JPEG_QUALITY, jpeg_quality};
  FUNDUS_CHECK(ext == ".jpg" || ext == ".jpeg" || ext == ".png",
               path << ": unsupported image extension (use .jpg or .png)");
  FUNDUS_CHECK(cv::imencode(ext, out, buf, params), path << ": image encoding failed");
  write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(buf.data()), buf.size()));
}

}  // namespace fundus

// The image policy of image_io.h: our libjpeg/libpng decoders give OpenCV's pixels, structure is
// walked (not guessed from the last bytes), the pixel cap is applied from the header before decoding,
// messages name the file and say what is wrong, and decoder warnings never appear without the name.
#include <csetjmp>
#include <cstdio>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/csv.h"
#include "fundus/core/io.h"
#include "fundus/core/log.h"
#include "fundus/data/image_io.h"
#include "fundus/data/preprocess.h"
#include "test_preprocess_fixtures.h"
#include "test_support.h"

#include <jpeglib.h>

namespace fundus {
namespace {

using test::synthetic_field;

std::string encode(const cv::Mat& bgr_or_grey, const std::string& ext, std::vector<int> params = {}) {
  std::vector<uchar> buf;
  EXPECT_TRUE(cv::imencode(ext, bgr_or_grey, buf, params));
  return std::string(buf.begin(), buf.end());
}

// What OpenCV's imdecode makes of the bytes (IMREAD_COLOR or a reduced variant), in RGB.
cv::Mat opencv_rgb(const std::string& bytes, int reduce = 1) {
  const int flags = reduce == 1   ? cv::IMREAD_COLOR
                    : reduce == 2 ? cv::IMREAD_REDUCED_COLOR_2
                    : reduce == 4 ? cv::IMREAD_REDUCED_COLOR_4
                                  : cv::IMREAD_REDUCED_COLOR_8;
  cv::Mat bgr = cv::imdecode(cv::Mat(1, int(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data())), flags), rgb;
  EXPECT_FALSE(bgr.empty());
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

void expect_same_pixels(const cv::Mat& a, const cv::Mat& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  ASSERT_EQ(a.type(), b.type()) << what;
  EXPECT_EQ(cv::countNonZero(a.reshape(1) != b.reshape(1)), 0) << what;
}

// A textured colour test image (BGR for imencode).
cv::Mat test_bgr(int w, int h) {
  cv::Mat rgb = synthetic_field({w, h}, {w / 2.0, h / 2.0}, 0.45 * std::min(w, h), 1.0, 11), bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

// A JPEG with an EXIF APP1 segment carrying `orientation` (big-endian TIFF, one IFD0 entry).
std::string with_exif_orientation(const std::string& jpeg, int orientation) {
  std::string tiff = std::string("MM\0*\0\0\0\x08", 8) + std::string("\0\x01", 2) +
                     std::string("\x01\x12\0\x03\0\0\0\x01", 8) + std::string(1, '\0') +
                     std::string(1, char(orientation)) + std::string("\0\0", 2) + std::string(4, '\0');
  std::string payload = std::string("Exif\0\0", 6) + tiff;
  size_t len = payload.size() + 2;
  std::string app1 = std::string("\xFF\xE1", 2) + char(len >> 8) + char(len & 0xFF) + payload;
  return jpeg.substr(0, 2) + app1 + jpeg.substr(2);
}

ImageProblem problem_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ImageError& e) {
    return e.problem();
  }
  ADD_FAILURE() << "no ImageError thrown";
  return ImageProblem::corrupt;
}

std::string message_of(const std::function<void()>& f) { return test::error_of(f); }

TEST(ImageIo, JpegDecodingMatchesOpenCvAtEveryReduction) {
  const cv::Mat bgr = test_bgr(333, 250);  // odd sides: DCT-scaled sides round up
  for (const std::string& jpeg :
       {encode(bgr, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 90}), encode(bgr, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}),
        encode(bgr, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 100, cv::IMWRITE_JPEG_CHROMA_QUALITY, 60})})
    for (int reduce : {1, 2, 4, 8})
      expect_same_pixels(decode_image_rgb_bytes(jpeg, "t.jpg", reduce), opencv_rgb(jpeg, reduce),
                         "reduce " + std::to_string(reduce));
  cv::Mat grey;
  cv::cvtColor(bgr, grey, cv::COLOR_BGR2GRAY);
  const std::string grey_jpeg = encode(grey, ".jpg");
  expect_same_pixels(decode_image_rgb_bytes(grey_jpeg, "g.jpg"), opencv_rgb(grey_jpeg), "grey JPEG");
  expect_same_pixels(decode_image_rgb_bytes(grey_jpeg, "g.jpg", 4), opencv_rgb(grey_jpeg, 4), "grey JPEG / 4");
}

TEST(ImageIo, RealPhotographsDecodeLikeOpenCv) {
  FUNDUS_REQUIRE_SHARED_DATASET(dir, "rahim-dr-tiny");
  CsvTable labels = read_csv(dir + "/labels.csv");
  size_t col = labels.require_column("image");
  for (size_t i = 0; i < 3; ++i) {
    const std::string bytes = read_file(dir + "/images/" + labels.field(labels.rows[i], col));
    for (int reduce : {1, 4})
      expect_same_pixels(decode_image_rgb_bytes(bytes, "real.jpg", reduce), opencv_rgb(bytes, reduce), "real image");
  }
}

TEST(ImageIo, CmykJpegDecodesLikeOpenCv) {
  // libjpeg writes an Adobe CMYK JPEG (OpenCV cannot): 4 components, converted like imdecode does.
  const int w = 40, h = 24;
  std::vector<unsigned char> cmyk(size_t(w * h * 4));
  for (int i = 0; i < w * h * 4; ++i) cmyk[size_t(i)] = static_cast<unsigned char>((i * 37) & 255);
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* out = nullptr;
  unsigned long out_size = 0;
  jpeg_mem_dest(&c, &out, &out_size);
  c.image_width = w;
  c.image_height = h;
  c.input_components = 4;
  c.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&c);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = cmyk.data() + size_t(c.next_scanline) * w * 4;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  const std::string bytes(reinterpret_cast<char*>(out), out_size);
  std::free(out);
  expect_same_pixels(decode_image_rgb_bytes(bytes, "cmyk.jpg"), opencv_rgb(bytes), "CMYK JPEG");
}

TEST(ImageIo, ExifOrientationIsAppliedLikeOpenCv) {
  const std::string jpeg = encode(test_bgr(64, 40), ".jpg");
  for (int o = 1; o <= 8; ++o) {
    const std::string oriented = with_exif_orientation(jpeg, o);
    const cv::Mat ours = decode_image_rgb_bytes(oriented, "o.jpg");
    expect_same_pixels(ours, opencv_rgb(oriented), "orientation " + std::to_string(o));
    const ImageInfo info = image_info_from_bytes(oriented, "o.jpg");
    EXPECT_EQ(info.orientation, o);
    EXPECT_EQ(cv::Size(info.width, info.height), ours.size()) << "orientation " << o;  // the displayed size
  }
}

TEST(ImageIo, PngDecodingMatchesOpenCvForEveryLayout) {
  const cv::Mat bgr = test_bgr(61, 37);
  cv::Mat grey, bgra, wide;
  cv::cvtColor(bgr, grey, cv::COLOR_BGR2GRAY);
  cv::cvtColor(bgr, bgra, cv::COLOR_BGR2BGRA);
  bgra.forEach<cv::Vec4b>([](cv::Vec4b& p, const int* pos) { p[3] = uint8_t(pos[1] * 4); });
  bgr.convertTo(wide, CV_16U, 257.0);
  wide += cv::Scalar::all(100);  // low bytes that stripping must drop
  cv::Mat bilevel = grey > 100;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"rgb", encode(bgr, ".png")},
      {"grey", encode(grey, ".png")},
      {"rgba", encode(bgra, ".png")},
      {"16-bit", encode(wide, ".png")},
      {"1-bit", encode(bilevel, ".png", {cv::IMWRITE_PNG_BILEVEL, 1})},
  };
  for (const auto& [what, png] : cases) {
    expect_same_pixels(decode_image_rgb_bytes(png, "t.png"), opencv_rgb(png), what);
    const cv::Mat half = decode_image_rgb_bytes(png, "t.png", 2);
    EXPECT_EQ(half.size(), cv::Size(30, 18)) << what;  // other formats: INTER_AREA after decoding
  }
}

// Issue 10 item 8: a valid JPEG followed by more than 4 kB (camera makernotes, padding) is a JPEG.
TEST(ImageIo, LongTrailerAfterTheEndMarkerIsAccepted) {
  const std::string jpeg = encode(test_bgr(120, 90), ".jpg");
  std::string trailer(10000, 'x');
  trailer.replace(5000, 2, "\xFF\xD8");  // even marker-like bytes in the trailer do not matter
  const std::string padded = jpeg + trailer;
  EXPECT_EQ(image_structure_problem(padded), "");
  expect_same_pixels(decode_image_rgb_bytes(padded, "padded.jpg"), decode_image_rgb_bytes(jpeg, "plain.jpg"),
                     "trailer");
  // An end marker inside the entropy data of a cut file is not taken for the end.
  std::string cut = jpeg.substr(0, jpeg.size() / 2);
  EXPECT_EQ(image_structure_problem(cut), "truncated JPEG (no end-of-image marker)");
  EXPECT_EQ(image_structure_problem(cut + std::string(5000, '\0')), "truncated JPEG (no end-of-image marker)");
}

// Issue 10 item 7: a cut scan with the end marker re-appended passes the structure check; the decoder
// finds it, in every path that decodes (here the raw decoder and preprocessing).
TEST(ImageIo, CutScanWithReappendedEndMarkerIsRejectedEverywhere) {
  test::TempDir dir;
  const std::string jpeg = encode(test_bgr(320, 240), ".jpg");
  const std::string fake = jpeg.substr(0, jpeg.size() * 2 / 3) + "\xFF\xD9";
  EXPECT_EQ(image_structure_problem(fake), "");
  write_file_atomic(dir.file("fake.jpg"), fake);
  std::string m = message_of([&] { decode_image_rgb(dir.file("fake.jpg"), 4); });
  EXPECT_NE(m.find(dir.file("fake.jpg") + ": corrupt JPEG data (Corrupt JPEG data: premature end of data segment)"),
            std::string::npos)
      << m;
  m = message_of([&] { preprocess_fundus_file(dir.file("fake.jpg"), PreprocessOptions{}); });
  EXPECT_NE(m.find("fake.jpg: corrupt JPEG data"), std::string::npos) << m;
  EXPECT_EQ(problem_of([&] { preprocess_fundus_file(dir.file("fake.jpg"), PreprocessOptions{}); }),
            ImageProblem::corrupt);
}

// Patches the sides of a JPEG's frame header.
std::string with_jpeg_size(std::string jpeg, int w, int h) {
  for (size_t i = 2; i + 9 < jpeg.size();) {
    const uint8_t m = uint8_t(jpeg[i + 1]);
    const size_t len = (size_t(uint8_t(jpeg[i + 2])) << 8) | uint8_t(jpeg[i + 3]);
    if (m == 0xC0 || m == 0xC2) {
      jpeg[i + 5] = char(h >> 8), jpeg[i + 6] = char(h & 255), jpeg[i + 7] = char(w >> 8), jpeg[i + 8] = char(w & 255);
      return jpeg;
    }
    i += 2 + len;
  }
  ADD_FAILURE() << "no SOF";
  return jpeg;
}

std::string with_png_size(std::string png, uint32_t w, uint32_t h) {
  for (int k = 0; k < 4; ++k) {
    png[size_t(16 + k)] = char((w >> (24 - 8 * k)) & 255);
    png[size_t(20 + k)] = char((h >> (24 - 8 * k)) & 255);
  }
  return png;
}

// Issue 10 item 7: decompression bombs are refused from the header, before any allocation, by the
// raw decoder, preprocessing and the header check alike (the cap applies to the file's size).
TEST(ImageIo, DecompressionBombsAreRefusedFromTheHeader) {
  test::TempDir dir;
  const std::string bomb_jpeg = with_jpeg_size(encode(test_bgr(64, 64), ".jpg"), 60000, 60000);
  ASSERT_LT(bomb_jpeg.size(), 20000u);
  write_file_atomic(dir.file("bomb.jpg"), bomb_jpeg);
  std::string m = message_of([&] { decode_image_rgb(dir.file("bomb.jpg"), 8); });
  EXPECT_NE(m.find("bomb.jpg: 60000x60000 = 3600000000 pixels exceeds the limit of 40000000 pixels"), std::string::npos)
      << m;
  EXPECT_EQ(problem_of([&] { preprocess_fundus_file(dir.file("bomb.jpg"), PreprocessOptions{}); }),
            ImageProblem::too_many_pixels);

  const std::string bomb_png = with_png_size(encode(test_bgr(64, 64), ".png"), 12000, 12000);
  EXPECT_EQ(problem_of([&] { decode_image_rgb_bytes(bomb_png, "bomb.png"); }), ImageProblem::too_many_pixels);
  EXPECT_EQ(problem_of([&] { check_image_bytes(bomb_png, "bomb.png"); }), ImageProblem::too_many_pixels);
  // A lower cap applies the same way; the header size itself is still readable.
  ImageLimits small;
  small.max_pixels = 64 * 64 - 1;
  EXPECT_EQ(problem_of([&] { decode_image_rgb_bytes(encode(test_bgr(64, 64), ".png"), "p.png", 1, small); }),
            ImageProblem::too_many_pixels);
  EXPECT_EQ(image_info_from_bytes(bomb_png, "bomb.png").width, 12000);

  // TIFF and BMP sizes come from their headers too (OpenCV decodes them only afterwards).
  const std::string tiff = encode(test_bgr(50, 30), ".tiff"), bmp = encode(test_bgr(50, 30), ".bmp");
  EXPECT_EQ(image_info_from_bytes(tiff, "t.tiff").width, 50);
  EXPECT_EQ(image_info_from_bytes(tiff, "t.tiff").height, 30);
  EXPECT_EQ(image_info_from_bytes(bmp, "t.bmp").width, 50);
  EXPECT_EQ(image_info_from_bytes(bmp, "t.bmp").height, 30);
  std::string big_bmp = bmp;
  big_bmp[18] = big_bmp[19] = big_bmp[22] = big_bmp[23] = char(0x7f);  // 32639 x 32639
  EXPECT_EQ(problem_of([&] { decode_image_rgb_bytes(big_bmp, "big.bmp"); }), ImageProblem::too_many_pixels);
  expect_same_pixels(decode_image_rgb_bytes(tiff, "t.tiff"), opencv_rgb(tiff), "tiff");
}

// Issue 10 item 9: messages say what is wrong.
TEST(ImageIo, MessagesSayWhatIsWrong) {
  test::TempDir dir;
  make_dirs(dir.file("x.jpg"));
  for (auto f : std::vector<std::function<void()>>{
           [&] { read_image_file(dir.file("x.jpg")); }, [&] { decode_image_rgb(dir.file("x.jpg")); },
           [&] { preprocess_fundus_file(dir.file("x.jpg"), PreprocessOptions{}); }}) {
    EXPECT_EQ(message_of(f), dir.file("x.jpg") + ": is a directory, not an image file");
    EXPECT_EQ(problem_of(f), ImageProblem::not_a_file);
  }
  EXPECT_EQ(message_of([&] { read_image_file(dir.file("none.jpg")); }),
            dir.file("none.jpg") + ": image file not found");
  write_file_atomic(dir.file("zero.jpg"), "");
  EXPECT_EQ(problem_of([&] { read_image_file(dir.file("zero.jpg")); }), ImageProblem::empty);

  const std::string png = encode(test_bgr(16, 16), ".png");
  std::string m = message_of([&] { decode_image_rgb_bytes(with_png_size(png, 0x80000000u, 16), "wide.png"); });
  EXPECT_EQ(m, "wide.png: PNG header: invalid size 2147483648x16 (each side must be 1 to 2147483647)");
  m = message_of([&] { decode_image_rgb_bytes(with_png_size(png, 16, 0), "flat.png"); });
  EXPECT_NE(m.find("invalid size 16x0"), std::string::npos) << m;
  m = message_of([&] { decode_image_rgb_bytes(with_jpeg_size(encode(test_bgr(16, 16), ".jpg"), 0, 16), "z.jpg"); });
  EXPECT_NE(m.find("z.jpg: JPEG header: invalid size 0x16"), std::string::npos) << m;
  EXPECT_EQ(problem_of([&] { decode_image_rgb_bytes("hello", "t.jpg"); }), ImageProblem::not_an_image);

  // TIFFs: a cut file is reported from its strip table; one OpenCV cannot read (photometric 64)
  // fails without OpenCV's internal text in the message.
  std::string tiff = encode(test_bgr(50, 30), ".tiff");
  ASSERT_EQ(tiff.substr(0, 2), "II");
  auto u16 = [&](size_t i) { return size_t(uint8_t(tiff[i])) | (size_t(uint8_t(tiff[i + 1])) << 8); };
  const size_t ifd = u16(4) | (u16(6) << 16);
  for (size_t k = 0; k < u16(ifd); ++k)
    if (u16(ifd + 2 + 12 * k) == 279) tiff[ifd + 2 + 12 * k + 9] = char(0x40);  // strip byte count + 16 kB
  EXPECT_EQ(message_of([&] { decode_image_rgb_bytes(tiff, "cut.tiff"); }),
            "cut.tiff: truncated TIFF (strip 0 ends beyond the end of the file)");
  tiff = encode(test_bgr(50, 30), ".tiff");
  for (size_t k = 0; k < u16(ifd); ++k)
    if (u16(ifd + 2 + 12 * k) == 262) tiff[ifd + 2 + 12 * k + 8] = char(0x40);  // PhotometricInterpretation
  m = message_of([&] { decode_image_rgb_bytes(tiff, "bad.tiff"); });
  EXPECT_EQ(m, "bad.tiff: cannot decode tiff image (corrupt or unsupported data)");
  EXPECT_EQ(m.find("OpenCV"), std::string::npos) << m;
  EXPECT_EQ(m.find("Assertion"), std::string::npos) << m;
  EXPECT_EQ(m.rfind("bad.tiff: ", 0), 0u) << m;
}

// Decoder warnings that lose no pixel are logged with the file's name; OpenCV would print them bare.
TEST(ImageIo, HarmlessDecoderWarningsNameTheFile) {
  const std::string jpeg = encode(test_bgr(120, 90), ".jpg");
  // Garbage between two header segments: libjpeg skips it ("extraneous bytes before marker").
  const size_t after_app0 = 4 + ((size_t(uint8_t(jpeg[4])) << 8) | uint8_t(jpeg[5]));
  const std::string garbage = jpeg.substr(0, after_app0) + "abc" + jpeg.substr(after_app0);
  EXPECT_EQ(image_structure_problem(garbage), "");
  const LogLevel before = log_level();
  set_log_level(LogLevel::warn);
  testing::internal::CaptureStderr();
  const cv::Mat img = decode_image_rgb_bytes(garbage, "noisy.jpg");
  const std::string err = testing::internal::GetCapturedStderr();
  set_log_level(before);
  expect_same_pixels(img, decode_image_rgb_bytes(jpeg, "clean.jpg"), "no pixel lost");
  EXPECT_NE(err.find("noisy.jpg: libjpeg warning: Corrupt JPEG data: 3 extraneous bytes before marker"),
            std::string::npos)
      << err;
  for (const std::string& line : split(err, '\n'))
    EXPECT_TRUE(line.empty() || line.find("noisy.jpg") != std::string::npos) << line;

  // A PNG with a damaged ancillary chunk (CRC): libpng warns, the pixels are intact.
  std::string png = encode(test_bgr(20, 10), ".png");
  const std::string text = "tEXtkey\0value";
  std::string chunk =
      std::string("\0\0\0\x09", 4) + std::string(text.data(), 13) + std::string("\0\0\0\0", 4);  // wrong CRC
  const std::string with_text = png.substr(0, 33) + chunk + png.substr(33);
  set_log_level(LogLevel::warn);
  testing::internal::CaptureStderr();
  const cv::Mat p = decode_image_rgb_bytes(with_text, "noisy.png");
  const std::string perr = testing::internal::GetCapturedStderr();
  set_log_level(before);
  expect_same_pixels(p, decode_image_rgb_bytes(png, "clean.png"), "png");
  EXPECT_NE(perr.find("noisy.png: libpng warning: tEXt: CRC error"), std::string::npos) << perr;
}

}  // namespace
}  // namespace fundus

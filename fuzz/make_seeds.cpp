// Writes the seed corpus of every harness: make_seeds <folder> creates <folder>/fuzz_<name>/ with
// small valid inputs built by the library's own writers (the same kinds of files the tests use as
// fixtures) and a few hand-written hostile ones from issue reports. scripts/fuzz.sh runs it into
// the build folder; nothing here is committed as binary.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/io.h"
#include "fundus/data/image_io.h"
#include "fundus/index/index_factory.h"
#include "fundus/index/index_file.h"
#include "fundus/model/state_dict.h"
#include "store_template.h"

using namespace fundus;

namespace {

std::string g_root;

void seed(const std::string& fuzzer, const std::string& name, const std::string& bytes, char mode = -1) {
  std::string dir = join_path(g_root, fuzzer);
  make_dirs(dir);
  write_file_atomic(join_path(dir, name), mode < 0 ? bytes : std::string(1, mode) + bytes);
}

cv::Mat fundus_like(int size) {
  cv::Mat img(size, size, CV_8UC3, cv::Scalar(0, 0, 0));
  cv::circle(img, {size / 2, size / 2}, size * 2 / 5, cv::Scalar(180, 90, 40), -1);
  cv::circle(img, {size / 3, size / 2}, size / 10, cv::Scalar(250, 220, 150), -1);
  return img;
}

std::string encode(const cv::Mat& rgb, const std::string& ext, std::vector<int> params = {}) {
  std::vector<uchar> buf;
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  cv::imencode(ext, bgr, buf, params);
  return std::string(buf.begin(), buf.end());
}

void image_seeds() {
  cv::Mat img = fundus_like(24);
  std::string jpg = encode(img, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 90});
  seed("fuzz_image", "baseline.jpg", jpg, 0);
  seed("fuzz_image", "baseline_r2.jpg", jpg, 1);
  seed("fuzz_image", "progressive.jpg", encode(img, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}), 3);
  seed("fuzz_image", "rgb.png", encode(img, ".png"), 0);
  cv::Mat grey;
  cv::cvtColor(img, grey, cv::COLOR_RGB2GRAY);
  std::vector<uchar> buf;
  cv::imencode(".png", grey, buf);
  seed("fuzz_image", "grey.png", std::string(buf.begin(), buf.end()), 2);
  seed("fuzz_image", "rgb.tiff", encode(img, ".tiff"), 0);
  seed("fuzz_image", "rgb.bmp", encode(fundus_like(8), ".bmp"), 0);
  // The issue's hostile cases: data after the end marker, a truncated scan, an absurd header size.
  seed("fuzz_image", "trailing.jpg", jpg + std::string(64, 'x'), 0);
  seed("fuzz_image", "truncated.jpg", jpg.substr(0, jpg.size() / 2) + "\xff\xd9", 0);
  std::string png = encode(img, ".png");
  std::string huge = png;
  huge.replace(16, 8, std::string("\x80\x00\x00\x00\x00\x00\x00\x64", 8));  // IHDR width 0x80000000
  seed("fuzz_image", "huge_header.png", huge, 0);
}

void checkpoint_seeds() {
  StateDict state;
  state.insert("conv.weight", torch::arange(6, torch::kFloat).reshape({2, 3}));
  state.insert("bn.num_batches_tracked", torch::tensor(int64_t(7)));
  state.insert("half", torch::ones({3}, torch::kHalf));
  state.insert("mask", torch::tensor({true, false}));
  seed("fuzz_checkpoint", "small.pth", serialize_state_dict(state));
  StateDict one;
  one.insert("w", torch::zeros({1}, torch::kDouble));
  seed("fuzz_checkpoint", "one.pth", serialize_state_dict(one));
}

void index_seeds(const std::string& tmp) {
  const int dim = 4, n = 64;
  std::vector<float> vectors(size_t(n) * dim);
  std::vector<int64_t> ids(n);
  for (int i = 0; i < n; ++i) {
    ids[size_t(i)] = 1000 + i;
    for (int d = 0; d < dim; ++d) vectors[size_t(i) * dim + d] = float(((i + 1) * (d + 3)) % 17) - 8.0f;
  }
  for (const char* spec : {"exact", "hnsw:M=4,efc=16,ef=8", "ivfpq:nlist=2,m=2,nbits=4,nprobe=2,vectors=0"}) {
    auto index = make_index(spec, dim);
    index->add(ids, vectors);
    std::string path = join_path(tmp, "seed.fidx");
    IndexProvenance provenance;
    provenance.store_id = "0123456789abcdef";
    provenance.model_id = 1;
    provenance.embeddings_version = 3;
    provenance.embeddings_token = "token";
    index->save(path, provenance);
    std::string file = read_file(path);
    std::string name = index->type();
    seed("fuzz_index", name + ".file", file, 0);
    // The framed payload alone (mode 1 frames it): magic8 | u32 | u32 | u64 size | payload | crc | end.
    seed("fuzz_index", name + ".payload", file.substr(24, file.size() - 24 - 12), 1);
  }
}

void store_seeds(const std::string& tmp) {
  std::string db = fuzz::make_store_template(join_path(tmp, "seed.db"));
  seed("fuzz_store", "healthy.db", db, 0);
  seed("fuzz_store", "healthy_ro.db", db, 2);
  const char* edits[] = {
      "PRAGMA user_version=-100000",
      "PRAGMA user_version=1",
      "PRAGMA user_version=0",
      "DROP TABLE store_info",
      "DELETE FROM store_info",
      "UPDATE cases SET grade=7 WHERE id=1",
      "UPDATE cases SET grade='x' WHERE id=2",
      "UPDATE cases SET "
      "meta='[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]"
      "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]'",
      "UPDATE cases SET meta=x'7b2261223a22e9227d'",
      "UPDATE cases SET external_id=x'1b5b33316d'",
      "UPDATE embeddings SET vector=x'0000c07f0000803f000000000000803f' WHERE model_id=1",
      "UPDATE embeddings SET vector=zeroblob(3)",
      "UPDATE models SET descriptor_dim=-1",
      "UPDATE models SET descriptor_dim=100000000000",
      "UPDATE models SET config='{'",
      "PRAGMA foreign_keys=OFF; DELETE FROM cases WHERE id=1",
      "ALTER TABLE models DROP COLUMN embeddings_version; DROP TABLE store_info; PRAGMA user_version=1",
      "DROP TABLE embeddings; DROP TABLE models; DROP TABLE cases; DROP TABLE store_info; PRAGMA user_version=0",
      "CREATE TABLE extra(x); PRAGMA user_version=2",
  };
  int i = 0;
  for (const char* sql : edits) {
    seed("fuzz_store", "edit" + std::to_string(i) + ".sql", sql, 1);
    seed("fuzz_store", "edit" + std::to_string(i) + "_ro.sql", sql, 3);
    ++i;
  }
}

void csv_seeds() {
  const char* files[][2] = {
      {"generic.csv", "image,grade,patient,eye,split\n1.jpg,0,p1,L,train\n2.jpeg,4,p1,R,val\n3.png,2,,,\n"},
      {"generic_id.csv", "id,image,grade\nc1,1,1\n\"c,2\",\"3.png\",3\r\n"},
      {"eyepacs.csv", "image,level\n10_left,0\n10_right,2\n"},
      {"aptos.csv", "id_code,diagnosis\n3,1\n4,0\n"},
      {"idrid.csv", "Image name,Retinopathy grade,Risk of macular edema \nIDRiD_001,3,2\n"},
      {"manifest.csv", "id,image,grade,patient,eye,split\na,1.jpg,0,p,L,train\nb,3.png,4,p,R,test\n"},
      {"bom_quotes.csv", "\xef\xbb\xbfimage,grade\n\"1.jpg\",\"1\"\n\"multi\nline\",2\n"},
      {"latin1.csv", "image,grade,patient\n1.jpg,0,Jos\xe9\n"},
      {"hex_grade.csv", "image,grade\n1.jpg,0x2\n2.jpeg,1e2\n"},
      {"dup_column.csv", "image,grade,grade\n1.jpg,0,1\n"},
  };
  for (const auto& f : files) seed("fuzz_csv", f[0], f[1]);
}

std::string multipart(const std::string& path, const std::vector<std::pair<std::string, std::string>>& fields) {
  const std::string boundary = "----fundusfuzz";
  std::string body;
  for (const auto& [name, value] : fields) {
    body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"";
    if (name == "image") body += "; filename=\"q.jpg\"\r\nContent-Type: image/jpeg";
    body += "\r\n\r\n" + value + "\r\n";
  }
  body += "--" + boundary + "--\r\n";
  return "POST " + path + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=" + boundary +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

void api_seeds() {
  seed("fuzz_api", "query.http",
       multipart("/api/query", {{"image", "\xff\xd8\xff\xd9"},
                                {"k", "5"},
                                {"grades", "0, 2,4"},
                                {"exclude_patient", "p1"},
                                {"attention", "false"}}),
       0);
  seed("fuzz_api", "add.http",
       multipart("/api/cases", {{"image", "\xff\xd8\xff\xd9"},
                                {"grade", "3"},
                                {"id", "case-9"},
                                {"patient", "p9"},
                                {"eye", "left"},
                                {"meta", R"({"site":"b","visit":{"n":2,"tags":["x"]}})"}}),
       0);
  seed("fuzz_api", "bad_fields.http",
       multipart("/api/cases", {{"grade", "0x2"}, {"id", "a\x1b[31m"}, {"eye", "OD"}, {"meta", "[[[[1]]]]"}}), 0);
  seed("fuzz_api", "plain.http", "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n", 0);
  seed("fuzz_api", "meta.json", R"({"a":[1,2.5,-3e2,true,null,"\u00e9\ud83d\ude00"],"b":{"c":{}}})", 1);
  seed("fuzz_api", "deep.json", std::string(70, '[') + std::string(70, ']'), 1);
  seed("fuzz_api", "config.json", R"({"model":{"input_size":1e30,"head_classes":-1},"train":{"lr":0.01}})", 1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds <corpus folder>\n");
    return 2;
  }
  g_root = argv[1];
  std::string tmp = join_path(g_root, ".tmp");
  make_dirs(tmp);
  std::remove(join_path(tmp, "seed.db").c_str());
  image_seeds();
  checkpoint_seeds();
  index_seeds(tmp);
  store_seeds(tmp);
  csv_seeds();
  api_seeds();
  std::error_code ec;
  std::filesystem::remove_all(tmp, ec);
  std::printf("seeds written to %s\n", g_root.c_str());
  return 0;
}

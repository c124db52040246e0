// Helpers for the server tests: an in-memory SearchBackend (no model: a case's "descriptor" is its
// mean colour), test images, and multipart requests over real loopback sockets.
#pragma once

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <thread>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/data/image_io.h"
#include "fundus/serve/backend.h"
#include "fundus/store/case_store.h"

namespace fundus::test {

/// A JPEG (or PNG with ext ".png") of a flat colour with a little structure, w x h pixels.
inline std::string make_image(int r, int g, int b, int w = 96, int h = 96, const char* ext = ".jpg") {
  cv::Mat bgr(h, w, CV_8UC3, cv::Scalar(b, g, r));
  cv::circle(bgr, {w / 2, h / 2}, std::min(w, h) / 4, cv::Scalar(b / 2, g / 2, r / 2), -1);
  std::vector<uchar> buf;
  cv::imencode(ext, bgr, buf);
  return std::string(buf.begin(), buf.end());
}

inline cv::Mat decode(const std::string& bytes) {
  std::vector<uchar> buf(bytes.begin(), bytes.end());
  return cv::imdecode(buf, cv::IMREAD_COLOR);
}

class FakeBackend : public SearchBackend {
 public:
  explicit FakeBackend(std::string image_dir) : dir_(std::move(image_dir)) {}

  std::atomic<int> query_delay_ms{0};    // makes queries slow (graceful-shutdown test)
  std::atomic<bool> fail_stats{false};   // stats() throws std::runtime_error (500 test)
  std::atomic<int64_t> corrupt_case{0};  // reading this case throws StoreCorruptError, as a damaged store does
  std::string private_dir = "/srv/fundus-private";  // what server-side errors name, as the engine's do

  QueryResult query(std::string_view bytes, const std::string& source, const QueryOptions& o) override {
    if (query_delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(int(query_delay_ms)));
    cv::Mat rgb = decode(bytes, source);
    std::vector<float> q = descriptor(rgb);
    QueryResult r;
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, c] : cases_) {
      if (!o.grades.empty() && std::find(o.grades.begin(), o.grades.end(), c.info.grade) == o.grades.end()) continue;
      if (!o.exclude_patient.empty() && c.info.patient == o.exclude_patient) continue;
      check_not_corrupt(id);
      SearchHit hit;
      hit.info = c.info;
      hit.similarity = q[0] * c.vec[0] + q[1] * c.vec[1] + q[2] * c.vec[2];
      r.hits.push_back(hit);
    }
    std::sort(r.hits.begin(), r.hits.end(), [](const SearchHit& a, const SearchHit& b) {
      return a.similarity != b.similarity ? a.similarity > b.similarity : a.info.id < b.info.id;
    });
    if (int(r.hits.size()) > o.k) r.hits.resize(size_t(o.k));
    double total = 0;
    for (size_t i = 0; i < r.hits.size(); ++i) {
      r.hits[i].rank = int(i) + 1;
      r.estimate.votes[size_t(r.hits[i].info.grade)] += std::max(0.f, r.hits[i].similarity);
      total += std::max(0.f, r.hits[i].similarity);
    }
    if (total > 0) {
      for (double& v : r.estimate.votes) v /= total;
      auto best = std::max_element(r.estimate.votes.begin(), r.estimate.votes.end());
      r.estimate.grade = int(best - r.estimate.votes.begin());
      r.estimate.confidence = *best;
    }
    cv::resize(rgb, r.preprocessed, {64, 64}, 0, 0, cv::INTER_AREA);
    if (o.with_attention) r.attention_overlay = 255 - r.preprocessed;
    r.timing_ms = {{"total", 1.0}};
    return r;
  }

  std::optional<CaseInfo> get_case(int64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cases_.find(id);
    if (it == cases_.end()) return std::nullopt;
    check_not_corrupt(id);
    return it->second.info;
  }

  CaseInfo add_case(std::string_view bytes, const std::string& source, const CaseRecord& record,
                    const Json& meta) override {
    cv::Mat rgb = decode(bytes, source);
    std::lock_guard<std::mutex> lock(mu_);
    int64_t id = next_id_++;
    CaseInfo info;
    info.id = id;
    info.external_id = record.id.empty() ? "case" + std::to_string(id) : record.id;
    for (const auto& [other, c] : cases_)
      FUNDUS_CHECK_INPUT(c.info.external_id != info.external_id, "duplicate external id '" << info.external_id << "'");
    info.grade = record.grade;
    info.patient = record.patient;
    info.eye = record.eye;
    info.meta = meta;
    info.added_at = "2026-01-01T00:00:00Z";
    info.image_path = dir_ + "/" + std::to_string(id) + ".img";
    write_file_atomic(info.image_path, bytes);
    cases_[id] = {info, descriptor(rgb)};
    return info;
  }

  bool remove_case(int64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    return cases_.erase(id) > 0;
  }

  cv::Mat case_attention_overlay(int64_t id) override {
    std::optional<CaseInfo> c = get_case(id);
    FUNDUS_CHECK(c, "no case " << id);
    // The image went missing: the engine's error names the server's file, as this one does.
    FUNDUS_CHECK(file_exists(c->image_path), c->image_path << ": image file not found");
    return cv::Mat(32, 32, CV_8UC3, cv::Scalar(255, 0, 0));
  }

  Json stats() override {
    if (fail_stats) FUNDUS_THROW(private_dir << "/cases.db: database is locked by another writer");
    return {{"cases", size()}};
  }
  Json health() override { return {{"status", "ok"}, {"indexed", size()}}; }

  int64_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return int64_t(cases_.size());
  }

 private:
  // Undecodable uploads are the caller's problem, as in the engine.
  static cv::Mat decode(std::string_view bytes, const std::string& source) {
    try {
      return decode_image_rgb_bytes(bytes, source);
    } catch (const Error& e) {
      FUNDUS_THROW_INPUT(e.message());
    }
  }

  void check_not_corrupt(int64_t id) const {
    if (id == corrupt_case)
      throw StoreCorruptError(private_dir + "/cases.db", id, "meta: JSON nested deeper than 64 levels", __FILE__,
                              __LINE__);
  }

  static std::vector<float> descriptor(const cv::Mat& rgb) {
    cv::Scalar m = cv::mean(rgb);
    double n = std::sqrt(m[0] * m[0] + m[1] * m[1] + m[2] * m[2]) + 1e-9;
    return {float(m[0] / n), float(m[1] / n), float(m[2] / n)};
  }

  struct Case {
    CaseInfo info;
    std::vector<float> vec;
  };
  std::string dir_;
  std::mutex mu_;
  std::map<int64_t, Case> cases_;
  int64_t next_id_ = 1;
};

/// multipart/form-data items: the image plus text fields.
inline httplib::MultipartFormDataItems form(const std::string& image,
                                            std::vector<std::pair<std::string, std::string>> fields = {},
                                            const std::string& filename = "q.jpg") {
  httplib::MultipartFormDataItems items;
  if (!image.empty()) items.push_back({"image", image, filename, "image/jpeg"});
  for (auto& [k, v] : fields) items.push_back({k, v, "", ""});
  return items;
}

inline Json body_json(const httplib::Result& r) { return Json::parse(r->body); }

/// The error code of a JSON error response.
inline std::string error_code(const httplib::Result& r) {
  if (!r) return "<no response>";
  try {
    return Json::parse(r->body)["error"]["code"].get<std::string>();
  } catch (...) {
    return "<not a JSON error: " + r->body.substr(0, 80) + ">";
  }
}

}  // namespace fundus::test

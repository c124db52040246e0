#include "fundus/serve/server.h"

#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/core/log.h"
#include "fundus/core/strings.h"
#include "fundus/data/image_io.h"
#include "fundus/serve/access_log.h"
#include "fundus/serve/query_cache.h"
#include "fundus/serve/web_assets.h"
#include "fundus/store/case_store.h"
#include "http_gate.h"
#include "request_fields.h"

namespace fundus {

namespace {

using Clock = std::chrono::steady_clock;
using httplib::Request;
using httplib::Response;
using namespace api;  // request_fields.h: HttpError, fail, parse_*

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Network-supplied strings may be invalid UTF-8: replace, never throw while answering.
std::string json_text(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

void send_json(Response& res, const Json& body, int status = 200) {
  res.status = status;
  res.set_content(json_text(body), "application/json");
}

void send_error(Response& res, int status, const std::string& code, const std::string& message) {
  send_json(res, {{"error", {{"code", code}, {"message", message}}}}, status);
}

// Errors raised by cpp-httplib itself (before or instead of our handlers).
std::pair<const char*, const char*> builtin_error(int status) {
  switch (status) {
    case 400:
      return {"bad_request", "malformed HTTP request or multipart body"};
    case 404:
      return {"not_found", "no such resource"};
    case 405:
      return {"method_not_allowed", "method not allowed on this path"};
    case 413:
      return {"payload_too_large", "request body larger than the upload limit (--max-upload-mb)"};
    case 414:
      return {"uri_too_long", "request URI too long"};
    case 416:
      return {"range_not_satisfiable", "range not satisfiable"};
    default:
      return {"error", "request failed"};
  }
}

// ---- request parsing ---------------------------------------------------------------------------

const httplib::MultipartFormData* form_part(const Request& req, const char* name) {
  auto it = req.files.find(name);
  return it == req.files.end() ? nullptr : &it->second;
}

std::optional<std::string> form_field(const Request& req, const char* name) {
  const auto* part = form_part(req, name);
  if (!part) return std::nullopt;
  return trim(part->content);
}

void require_multipart(const Request& req) {
  if (!req.is_multipart_form_data())
    fail(415, "unsupported_media_type",
         "expected Content-Type multipart/form-data with a file field 'image', got '" +
             req.get_header_value("Content-Type") + "'");
}

const httplib::MultipartFormData& require_image(const Request& req) {
  require_multipart(req);
  const auto* part = form_part(req, "image");
  if (!part) fail(400, "missing_image", "multipart field 'image' (the photograph) is missing");
  if (part->content.empty()) fail(400, "not_an_image", upload_source(*part) + ": empty file");
  return *part;
}

// An image the policy (data/image_io.h) refused, as an HTTP error with a stable code.
[[noreturn]] void fail_image(const ImageError& e) {
  switch (e.problem()) {
    case ImageProblem::empty:
    case ImageProblem::not_an_image:
      fail(400, "not_an_image", e.message());
    case ImageProblem::too_many_pixels:
      fail(413, "too_many_pixels", e.message() + " (--max-pixels)");
    case ImageProblem::no_field_of_view:
      fail(422, "no_field_of_view", e.message());
    default:
      fail(422, "bad_image", e.message());
  }
}

// The policy's checks before any decoding: JPEG/PNG only (their headers give the size without
// decoding, so a decompression bomb is refused before it allocates), structurally complete, within
// the pixel cap. Corrupt scan data is found while decoding (the backend's ImageError).
void check_image(std::string_view bytes, const std::string& source, int64_t max_pixels) {
  const ImageFormat format = sniff_image_format(bytes);
  if (format == ImageFormat::unknown) fail(400, "not_an_image", source + ": not an image (expected JPEG or PNG bytes)");
  if (format != ImageFormat::jpeg && format != ImageFormat::png)  // TIFF or BMP: a real image, but not accepted here
    fail(422, "unsupported_image_format", source + ": only JPEG and PNG uploads are accepted");
  ImageLimits limits;
  limits.max_pixels = max_pixels;
  try {
    check_image_bytes(bytes, source, limits);
  } catch (const ImageError& e) {
    fail_image(e);
  }
}

// A stored row broke an invariant: the store's fault, never the request's. The message names the
// case (operators look it up with `fundus store check`) and no server path.
void send_corrupt(Response& res, const StoreCorruptError& e) {
  Json error = {
      {"code", e.case_id() > 0 ? "corrupt_case" : "corrupt_store"},
      {"message", e.case_id() > 0 ? "case " + std::to_string(e.case_id()) + " in the case store is damaged (" +
                                        e.reason() + "); the server's operator can find it with `fundus store check`"
                                  : "the case store is damaged (" + e.reason() + ")"}};
  if (e.case_id() > 0) error["case_id"] = e.case_id();
  send_json(res, {{"error", error}}, 500);
}

int64_t parse_id(const Request& req) {
  int64_t id = 0;
  if (!try_parse_int(req.matches[1].str(), id) || id <= 0) fail(404, "unknown_case", "no case " + req.matches[1].str());
  return id;
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) diff |= (unsigned char)(b[i] ^ (i < a.size() ? a[i] : 0));
  return diff == 0;
}

// ---- responses ---------------------------------------------------------------------------------

std::string case_url(int64_t id) { return "/api/cases/" + std::to_string(id); }

Json grade_name_json(int grade) { return grade >= 0 && grade < kNumGrades ? Json(grade_name(grade)) : Json(nullptr); }

Json case_json(const CaseInfo& c) {
  std::string url = case_url(c.id);
  return {{"id", c.id},
          {"external_id", c.external_id},
          {"grade", c.grade},
          {"grade_name", grade_name_json(c.grade)},
          {"patient", c.patient},
          {"eye", c.eye},
          {"split", c.split},
          {"meta", c.meta},
          {"added_at", c.added_at},
          {"image_url", url + "/image"},
          {"thumbnail_url", url + "/image?size=thumb"},
          {"attention_url", url + "/attention.png"}};
}

// RGB CV_8UC3 (or grey) -> encoded bytes (".png" or ".jpg").
std::string encode_image(const cv::Mat& rgb, const char* ext, int jpeg_quality = 90) {
  cv::Mat bgr;
  if (rgb.channels() == 3) cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  else bgr = rgb;
  std::vector<uchar> buf;
  std::vector<int> params;
  if (std::string(ext) == ".jpg") params = {cv::IMWRITE_JPEG_QUALITY, jpeg_quality};
  FUNDUS_CHECK(cv::imencode(ext, bgr, buf, params), "image encoding (" << ext << ") failed");
  return std::string(buf.begin(), buf.end());
}

void send_png(Response& res, const cv::Mat& rgb, const char* cache_control) {
  res.set_header("Cache-Control", cache_control);
  res.set_content(encode_image(rgb, ".png"), "image/png");
}

}  // namespace

// ---- the server ----------------------------------------------------------------------------------

namespace {
GateLimits gate_limits(const ServerOptions& o) {
  GateLimits g;
  g.workers = o.workers;
  g.header_timeout_ms = o.header_timeout_s * 1000;
  g.keep_alive_timeout_ms = o.keep_alive_timeout_s * 1000;
  g.max_connections_per_client = o.max_connections_per_client;
  g.max_connections = o.max_connections;
  return g;
}
}  // namespace

struct Server::Impl {
  Impl(SearchBackend& backend, const ServerOptions& options)
      : backend(backend), opt(options), cache(options.query_cache_size), http(gate_limits(options)) {
    FUNDUS_CHECK(opt.workers >= 1 && opt.workers <= 256, "--workers must be 1-256, got " << opt.workers);
    FUNDUS_CHECK(opt.header_timeout_s >= 1 && opt.header_timeout_s <= 3600,
                 "header timeout must be 1-3600 s, got " << opt.header_timeout_s);
    FUNDUS_CHECK(opt.keep_alive_timeout_s >= 1 && opt.keep_alive_timeout_s <= 3600,
                 "keep-alive timeout must be 1-3600 s, got " << opt.keep_alive_timeout_s);
    FUNDUS_CHECK(opt.max_connections_per_client >= 1 && opt.max_connections >= opt.max_connections_per_client,
                 "connection caps must be >= 1 and per client <= in all, got " << opt.max_connections_per_client
                                                                               << " and " << opt.max_connections);
    FUNDUS_CHECK(opt.port >= 0 && opt.port <= 65535, "--port must be 0-65535, got " << opt.port);
    FUNDUS_CHECK(opt.max_upload_bytes >= 1024, "--max-upload-mb is too small");
    FUNDUS_CHECK(opt.max_pixels >= 1, "--max-pixels must be positive");
    FUNDUS_CHECK(opt.max_k >= 1, "max k must be positive");
    FUNDUS_CHECK(opt.thumbnail_size >= 16 && opt.thumbnail_size <= 2048, "thumbnail size must be 16-2048");
    if (opt.access_log_enabled) log = std::make_unique<AccessLog>(opt.access_log);
    setup();
  }

  void setup();
  void count(int status);
  Json counters() const;

  // handlers
  void query(const Request& req, Response& res);
  void query_artefact(const Request& req, Response& res);
  void get_case(const Request& req, Response& res);
  void case_image(const Request& req, Response& res);
  void case_attention(const Request& req, Response& res);
  void add_case(const Request& req, Response& res);
  void remove_case(const Request& req, Response& res);
  void require_token(const Request& req) const;
  CaseInfo require_case(const Request& req) const;

  SearchBackend& backend;
  ServerOptions opt;
  QueryCache cache;
  std::unique_ptr<AccessLog> log;
  GatedHttpServer http;
  Clock::time_point started = Clock::now();

  std::thread listener;
  std::atomic<int> bound_port{0};
  std::mutex mu;
  std::condition_variable finished_cv;
  bool finished = false;

  mutable std::mutex counters_mu;
  std::map<int, int64_t> by_status;
  std::map<std::string, int64_t> done;  // successful queries / adds / removes
};

namespace {
thread_local std::optional<Clock::time_point> tl_request_start;  // one connection = one worker thread
}  // namespace

void Server::Impl::setup() {
  // cpp-httplib's default also sets SO_REUSEPORT, which lets a second server bind the same port and
  // silently take half the connections: keep only SO_REUSEADDR (fast restarts).
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  http.set_payload_max_length(opt.max_upload_bytes);
  http.set_default_headers({{"X-Content-Type-Options", "nosniff"}, {"Referrer-Policy", "no-referrer"}});

  http.set_pre_routing_handler([](const Request& req, Response& res) {
    tl_request_start = Clock::now();
    // cpp-httplib 0.11 enforces the upload limit only through Content-Length: chunked bodies and
    // bodies read until the connection closes would grow without bound. Refuse them before reading.
    bool chunked = req.has_header("Transfer-Encoding");
    bool unsized_post =
        (req.method == "POST" || req.method == "PUT" || req.method == "PATCH") && !req.has_header("Content-Length");
    if (chunked || unsized_post) {
      send_error(res, 411, "length_required",
                 "uploads need a Content-Length header (chunked transfer encoding is not accepted)");
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Server-side failures carry their details to the server's log only: messages of internal errors
  // name server files (the store, images, the checkpoint), which are nobody's business over HTTP.
  http.set_exception_handler([](const Request& req, Response& res, std::exception_ptr ep) {
    const std::string what = escape_control(req.method + " " + req.path.substr(0, 200));
    try {
      std::rethrow_exception(ep);
    } catch (const HttpError& e) {
      send_error(res, e.status, e.code, e.what());
    } catch (const StoreCorruptError& e) {
      FUNDUS_WARN(what << ": " << e.message());
      send_corrupt(res, e);
    } catch (const InputError& e) {
      send_error(res, 422, "rejected", e.message());
    } catch (const Error& e) {
      FUNDUS_WARN(what << ": " << e.message());
      send_error(res, 500, "internal", "internal error; the details are in the server's log");
    } catch (const std::exception& e) {
      FUNDUS_WARN(what << ": " << e.what());
      send_error(res, 500, "internal", "internal error; the details are in the server's log");
    } catch (...) {
      FUNDUS_WARN(what << ": unknown exception");
      send_error(res, 500, "internal", "internal error; the details are in the server's log");
    }
  });
  http.set_error_handler(httplib::Server::HandlerWithResponse([](const Request&, Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // our own JSON error
    auto [code, message] = builtin_error(res.status);
    send_error(res, res.status, code, message);
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_logger([this](const Request& req, const Response& res) {
    count(res.status);
    if (!log) return;
    AccessEntry e;
    e.method = req.method;
    e.path = req.path.substr(0, 256);
    for (const auto& p : req.params)
      if (e.params.empty() || e.params.back() != p.first) e.params.push_back(p.first.substr(0, 64));
    e.status = res.status;
    e.bytes_in = req.get_header_value<uint64_t>("Content-Length");
    e.bytes_out = res.body.size();
    if (tl_request_start) e.duration_ms = ms_since(*tl_request_start);
    tl_request_start.reset();
    e.remote = req.remote_addr;
    log->write(e);
  });

  http.Get("/api/health", [this](const Request&, Response& res) {
    Json h = backend.health();
    h["uptime_s"] = std::round(ms_since(started) / 100) / 10;
    h["server"] = {{"workers", opt.workers},
                   {"max_upload_bytes", opt.max_upload_bytes},
                   {"max_pixels", opt.max_pixels},
                   {"max_k", opt.max_k},
                   {"header_timeout_s", opt.header_timeout_s},
                   {"max_connections_per_client", opt.max_connections_per_client},
                   {"writes_need_token", !opt.token.empty()}};
    send_json(res, h);
  });
  http.Get("/api/stats", [this](const Request&, Response& res) {
    Json s = backend.stats();
    // Server file paths are nobody's business over HTTP.
    if (s.contains("index") && s["index"].is_object()) s["index"].erase("path");
    if (s.contains("model") && s["model"].is_object()) s["model"].erase("checkpoint");
    s["requests"] = counters();
    s["query_cache"] = {{"entries", cache.size()}, {"capacity", opt.query_cache_size}};
    send_json(res, s);
  });
  http.Post("/api/query", [this](const Request& req, Response& res) { query(req, res); });
  http.Get(R"(/api/queries/([0-9a-f]{32})/(preprocessed|attention)\.png)",
           [this](const Request& req, Response& res) { query_artefact(req, res); });
  http.Get(R"(/api/cases/(\d{1,18}))", [this](const Request& req, Response& res) { get_case(req, res); });
  http.Get(R"(/api/cases/(\d{1,18})/image)", [this](const Request& req, Response& res) { case_image(req, res); });
  http.Get(R"(/api/cases/(\d{1,18})/attention\.png)",
           [this](const Request& req, Response& res) { case_attention(req, res); });
  http.Post("/api/cases", [this](const Request& req, Response& res) { add_case(req, res); });
  http.Delete(R"(/api/cases/(\d{1,18}))", [this](const Request& req, Response& res) { remove_case(req, res); });

  // The page: embedded assets at the root. Same-origin only, no external resources.
  http.Get(R"(/[A-Za-z0-9._-]*)", [](const Request& req, Response& res) {
    const WebAsset* asset = find_web_asset(req.path);
    if (!asset) fail(404, "not_found", "no such page: " + req.path.substr(0, 100));
    res.set_header("Cache-Control", "no-cache");
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
                   "connect-src 'self'; frame-ancestors 'none'");
    res.set_content(std::string(asset->body), std::string(asset->content_type).c_str());
  });
}

void Server::Impl::count(int status) {
  std::lock_guard<std::mutex> lock(counters_mu);
  ++by_status[status];
}

Json Server::Impl::counters() const {
  std::lock_guard<std::mutex> lock(counters_mu);
  Json statuses = Json::object();
  int64_t total = 0;
  for (const auto& [status, n] : by_status) {
    statuses[std::to_string(status)] = n;
    total += n;
  }
  return {{"total", total},
          {"by_status", statuses},
          {"completed", done},
          {"refused_connections", http.refused_connections()},
          {"header_timeouts", http.header_timeouts()}};
}

void Server::Impl::require_token(const Request& req) const {
  if (opt.token.empty()) return;
  std::string given = req.get_header_value("X-Fundus-Token");
  std::string auth = req.get_header_value("Authorization");
  if (given.empty() && starts_with(auth, "Bearer ")) given = trim(auth.substr(7));
  if (given.empty() || !constant_time_equal(given, opt.token))
    fail(401, "unauthorized",
         "this server requires a token for changes: send 'Authorization: Bearer <token>' or 'X-Fundus-Token: <token>'");
}

CaseInfo Server::Impl::require_case(const Request& req) const {
  int64_t id = parse_id(req);
  std::optional<CaseInfo> c = backend.get_case(id);
  if (!c) fail(404, "unknown_case", "no case " + std::to_string(id));
  return *c;
}

void Server::Impl::query(const Request& req, Response& res) {
  Clock::time_point t0 = Clock::now();
  const auto& image = require_image(req);
  std::string source = upload_source(image);
  QueryOptions q;
  q.k = parse_k(form_field(req, "k"), opt.max_k);
  q.grades = parse_grades(form_field(req, "grades"));
  q.exclude_patient = parse_text(form_field(req, "exclude_patient"), "exclude_patient");
  q.with_attention = parse_flag(form_field(req, "attention"), true, "attention");
  check_image(image.content, source, opt.max_pixels);

  QueryResult r;
  try {
    r = backend.query(image.content, source, q);
  } catch (const ImageError& e) {
    fail_image(e);  // e.g. corrupt scan data, no field of view
  } catch (const InputError& e) {
    fail(422, "bad_image", e.message());  // the bytes passed the structural checks but do not decode
  }  // anything else (a damaged store, a database error) is the server's: see the exception handler
  bool with_attention = !r.attention_overlay.empty();
  std::string id = cache.put({r.preprocessed, r.attention_overlay});
  std::string base = "/api/queries/" + id;

  Json results = Json::array();
  for (const SearchHit& hit : r.hits) {
    Json c = case_json(hit.info);
    c["similarity"] = hit.similarity;
    c["rank"] = hit.rank;
    results.push_back(std::move(c));
  }
  const GradeEstimate& est = r.estimate;
  Json out = {{"query_id", id},
              {"k", q.k},
              {"results", std::move(results)},
              {"estimate",
               {{"grade", est.grade},
                {"grade_name", grade_name_json(est.grade)},
                {"confidence", est.confidence},
                {"votes", est.votes},
                {"withheld", est.withheld},
                {"withheld_reason", est.withheld_reason}}},
              {"warnings", warnings_to_json(r.warnings)},
              {"preprocessed_url", base + "/preprocessed.png"},
              {"attention_url", with_attention ? Json(base + "/attention.png") : Json(nullptr)},
              {"timing_ms", r.timing_ms}};
  out["timing_ms"]["request"] = std::round(ms_since(t0) * 10) / 10;
  send_json(res, out);
  std::lock_guard<std::mutex> lock(counters_mu);
  ++done["queries"];
}

void Server::Impl::query_artefact(const Request& req, Response& res) {
  auto artefacts = cache.get(req.matches[1].str());
  if (!artefacts) fail(404, "unknown_query", "unknown or expired query id (only the last queries are kept)");
  const cv::Mat& image = req.matches[2].str() == "attention" ? artefacts->attention_overlay : artefacts->preprocessed;
  if (image.empty()) fail(404, "no_attention", "this query was run without an attention map");
  send_png(res, image, "private, max-age=3600");
}

void Server::Impl::get_case(const Request& req, Response& res) { send_json(res, case_json(require_case(req))); }

void Server::Impl::case_image(const Request& req, Response& res) {
  CaseInfo c = require_case(req);
  std::string size = req.get_param_value("size");
  if (!size.empty() && size != "thumb" && size != "full")
    fail(400, "bad_size", "parameter 'size': expected 'thumb' or 'full', got '" + size.substr(0, 20) + "'");
  std::string bytes;
  try {
    bytes = read_file(c.image_path);
  } catch (const Error&) {
    // The message would reveal a server path: say what is wrong without it.
    FUNDUS_WARN("case " << c.id << ": image file unreadable");
    fail(500, "image_unavailable", "the image of case " + std::to_string(c.id) + " is not readable on the server");
  }
  // Store ids are never reused, so a case's image never changes: let the browser keep it.
  res.set_header("Cache-Control", "private, max-age=86400");
  bool jpeg = bytes.size() > 2 && uint8_t(bytes[0]) == 0xFF && uint8_t(bytes[1]) == 0xD8;
  bool png = bytes.size() > 8 && bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0;
  if (size != "thumb" && (jpeg || png)) {
    res.set_header("Content-Type", jpeg ? "image/jpeg" : "image/png");
    res.body = std::move(bytes);
    return;
  }
  std::string source = "case " + std::to_string(c.id);
  ImageInfo info;
  int target = 0;
  cv::Mat rgb;
  try {
    info = image_info_from_bytes(bytes, source);
    target = size == "thumb" ? opt.thumbnail_size : std::max(info.width, info.height);
    rgb = decode_image_rgb_bytes(bytes, source, choose_reduce_factor(info.width, info.height, target / 2));
  } catch (const Error& e) {
    FUNDUS_WARN("case " << c.id << ": image does not decode: " << e.message());
    fail(500, "image_unavailable", "the image of case " + std::to_string(c.id) + " does not decode on the server");
  }
  double scale = double(target) / std::max(rgb.cols, rgb.rows);
  if (scale < 1)
    cv::resize(rgb, rgb, cv::Size(std::max(1, int(rgb.cols * scale + 0.5)), std::max(1, int(rgb.rows * scale + 0.5))),
               0, 0, cv::INTER_AREA);
  res.set_content(encode_image(rgb, ".jpg", size == "thumb" ? 85 : 95), "image/jpeg");
}

void Server::Impl::case_attention(const Request& req, Response& res) {
  CaseInfo c = require_case(req);
  cv::Mat overlay;
  try {
    overlay = backend.case_attention_overlay(c.id);
  } catch (const StoreCorruptError&) {
    throw;
  } catch (const Error& e) {
    if (!backend.get_case(c.id)) fail(404, "unknown_case", "no case " + std::to_string(c.id));  // removed meanwhile
    // Most likely the stored image went missing or was damaged; the message would name server paths.
    FUNDUS_WARN("case " << c.id << ": attention map failed: " << e.message());
    fail(500, "image_unavailable",
         "the attention map of case " + std::to_string(c.id) +
             " cannot be made: its image is not readable on the server");
  }
  send_png(res, overlay, "private, max-age=3600");
}

void Server::Impl::add_case(const Request& req, Response& res) {
  require_token(req);
  const auto& image = require_image(req);
  std::string source = upload_source(image);
  CaseRecord record;
  auto grade = form_field(req, "grade");
  if (!grade) fail(400, "missing_grade", "multipart field 'grade' (0-4) is missing");
  record.grade = parse_grade(*grade, "grade");
  record.id = parse_text(form_field(req, "id"), "id");
  record.patient = parse_text(form_field(req, "patient"), "patient");
  record.eye = parse_eye(form_field(req, "eye"));
  Json meta = parse_meta(form_field(req, "meta"));
  check_image(image.content, source, opt.max_pixels);
  CaseInfo added;
  try {
    added = backend.add_case(image.content, source, record, meta);
  } catch (const ImageError& e) {
    fail_image(e);
  } catch (const InputError& e) {
    fail(422, "rejected", e.message());  // e.g. a duplicate external id or an image that does not decode
  }
  res.set_header("Location", case_url(added.id));
  send_json(res, case_json(added), 201);
  std::lock_guard<std::mutex> lock(counters_mu);
  ++done["adds"];
}

void Server::Impl::remove_case(const Request& req, Response& res) {
  require_token(req);
  int64_t id = parse_id(req);
  if (!backend.remove_case(id)) fail(404, "unknown_case", "no case " + std::to_string(id));
  res.status = 204;
  std::lock_guard<std::mutex> lock(counters_mu);
  ++done["removes"];
}

// ---- public API ----------------------------------------------------------------------------------

Server::Server(SearchBackend& backend, const ServerOptions& options)
    : impl_(std::make_unique<Impl>(backend, options)) {}

Server::~Server() {
  stop();
  wait();
}

void Server::start() {
  Impl& s = *impl_;
  FUNDUS_CHECK(!s.listener.joinable(), "server already started");
  int port = s.opt.port;
  bool ok = port == 0 ? (port = s.http.bind_to_any_port(s.opt.host)) > 0 : s.http.bind_to_port(s.opt.host, port);
  FUNDUS_CHECK(ok, "cannot listen on " << s.opt.host << ":" << s.opt.port
                                       << " (address in use, not permitted or not a local address)");
  s.bound_port = port;
  s.http.widen_backlog();
  s.listener = std::thread([&s] {
    s.http.listen_after_bind();
    std::lock_guard<std::mutex> lock(s.mu);
    s.finished = true;
    s.finished_cv.notify_all();
  });
  // stop() before the accept loop runs would be lost: return only once it runs (or ended).
  while (!s.http.is_running()) {
    {
      std::lock_guard<std::mutex> lock(s.mu);
      if (s.finished) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

int Server::port() const { return impl_->bound_port; }

void Server::stop() { impl_->http.stop(); }

void Server::wait() {
  Impl& s = *impl_;
  {
    std::unique_lock<std::mutex> lock(s.mu);
    if (!s.listener.joinable()) return;
    s.finished_cv.wait(lock, [&] { return s.finished; });
  }
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.listener.joinable()) s.listener.join();
}

Json Server::counters() const { return impl_->counters(); }

namespace {
std::atomic<int> g_signal{0};
extern "C" void on_stop_signal(int signal) { g_signal = signal; }
}  // namespace

int serve_until_signal(Server& server) {
  struct sigaction action {
  }, old_int{}, old_term{};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  g_signal = 0;
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);
  // The handler only records the signal; this thread turns it into stop() (not async-signal-safe).
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done) {
      if (g_signal) {
        server.stop();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  server.wait();
  done = true;
  watcher.join();
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return g_signal;
}

}  // namespace fundus

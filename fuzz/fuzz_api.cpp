// The API's request parsing without a socket: whole HTTP requests go through cpp-httplib's request
// and multipart parsers (Server::process_request on an in-memory stream), and the form fields of
// POST /api/query and POST /api/cases through the server's own field parsers
// (src/serve/request_fields.h), as server.cpp's handlers call them. The first byte picks the mode:
// even = the rest is an HTTP request; odd = the rest is a JSON document for parse_json with the
// depth bound (fields, CSV metadata, configs and checkpoints all parse through it), whose result
// is then copied, merged, compared and printed (the recursive code a deep document would overflow).
#include <httplib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fundus/core/case.h"
#include "fundus/core/json.h"
#include "fundus/core/strings.h"
#include "fuzz_support.h"
#include "request_fields.h"

using namespace fundus;
using fuzz::finding;

namespace {

// The request bytes, then end of stream; responses are discarded.
class MemoryStream : public httplib::Stream {
 public:
  explicit MemoryStream(std::string bytes) : bytes_(std::move(bytes)) {}
  bool is_readable() const override { return true; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    size_t n = std::min(size, bytes_.size() - pos_);
    std::copy(bytes_.data() + pos_, bytes_.data() + pos_ + n, ptr);
    pos_ += n;
    return ssize_t(n);
  }
  ssize_t write(const char*, size_t size) override { return ssize_t(size); }
  void get_remote_ip_and_port(std::string& ip, int& port) const override { ip = "127.0.0.1", port = 40000; }
  void get_local_ip_and_port(std::string& ip, int& port) const override { ip = "127.0.0.1", port = 8080; }
  socket_t socket() const override { return INVALID_SOCKET; }

 private:
  std::string bytes_;
  size_t pos_ = 0;
};

std::optional<std::string> field(const httplib::Request& req, const char* name) {
  auto it = req.files.find(name);
  if (it == req.files.end()) return std::nullopt;
  return trim(it->second.content);
}

// server.cpp's handlers, minus the backend: every field they read, parsed as they parse it.
void handle(const httplib::Request& req, httplib::Response& res, bool add) {
  try {
    for (const auto& [name, part] : req.files) (void)api::upload_source(part);
    if (add) {
      if (auto grade = field(req, "grade")) (void)api::parse_grade(*grade, "grade");
      (void)api::parse_text(field(req, "id"), "id");
      (void)api::parse_text(field(req, "patient"), "patient");
      (void)api::parse_eye(field(req, "eye"));
      Json meta = api::parse_meta(field(req, "meta"));
      if (!meta.is_object()) finding("parse_meta returned a non-object");
      (void)meta.dump();
    } else {
      (void)api::parse_k(field(req, "k"), 100);
      for (int g : api::parse_grades(field(req, "grades")))
        if (g < 0 || g >= kNumGrades) finding("parse_grades returned grade " + std::to_string(g));
      (void)api::parse_text(field(req, "exclude_patient"), "exclude_patient");
      (void)api::parse_flag(field(req, "attention"), true, "attention");
    }
    res.status = 200;
  } catch (const api::HttpError& e) {
    if (e.status < 400 || e.status > 499) finding("field parser answered status " + std::to_string(e.status));
    res.status = e.status;
  } catch (const std::exception& e) {
    finding(std::string("exception escaped a field parser: ") + e.what());
  }
}

class FuzzServer : public httplib::Server {
 public:
  FuzzServer() {
    set_payload_max_length(1 << 20);
    Post("/api/query", [](const httplib::Request& req, httplib::Response& res) { handle(req, res, false); });
    Post("/api/cases", [](const httplib::Request& req, httplib::Response& res) { handle(req, res, true); });
  }
  void serve(std::string bytes) {
    MemoryStream stream(std::move(bytes));
    bool closed = false;
    // One request per connection: keep-alive would only repeat the parse on the remaining bytes.
    process_request(stream, true, closed, nullptr);
  }
};

int depth_of(const Json& j) {
  // Iterative, so that measuring a document never recurses as deep as the document.
  int deepest = 0;
  std::vector<std::pair<const Json*, int>> todo = {{&j, 0}};
  while (!todo.empty()) {
    auto [v, d] = todo.back();
    todo.pop_back();
    if (v->is_structured()) {
      deepest = std::max(deepest, d + 1);
      for (const Json& child : *v) todo.push_back({&child, d + 1});
    }
  }
  return deepest;
}

void fuzz_json(const std::string& text) {
  fuzz::expect_only_fundus_errors([&] {
    Json j = parse_json(text, "fuzz.json");
    if (depth_of(j) > kMaxJsonDepth) finding("parse_json accepted a document nested deeper than kMaxJsonDepth");
    Json copy = j;
    if (!(copy == j)) finding("copy differs");
    (void)merge_json(copy, j);
    (void)j.dump(-1, ' ', false, Json::error_handler_t::replace);
  });
  std::string problem;
  std::optional<Json> j = try_parse_json(text, problem);
  if (!j && problem.empty()) finding("try_parse_json failed without a problem");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    fuzz_json(rest);
  } else {
    static FuzzServer server;
    server.serve(std::move(rest));
  }
  return 0;
}

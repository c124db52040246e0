// The HTTP layer against an in-memory backend: every endpoint, every error status, the token, the
// access log, limits, concurrency and graceful stop. Real sockets on a loopback port.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <future>
#include <thread>

#include "fundus/core/strings.h"
#include "fundus/serve/access_log.h"
#include "fundus/serve/query_cache.h"
#include "fundus/serve/server.h"
#include "fundus/serve/web_assets.h"
#include "serve_fixtures.h"
#include "test_support.h"

namespace fundus::test {
namespace {

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { backend = std::make_unique<FakeBackend>(dir.path()); }

  // Starts a server with `options` (port 0) and three cases of grades 0, 2, 4.
  void start(ServerOptions options = {}) {
    options.port = 0;
    if (options.access_log.empty()) options.access_log = dir.file("access.log");
    add(make_image(200, 40, 40), "red", 0, "P1", "L");
    add(make_image(40, 200, 40), "green", 2, "P2", "R");
    add(make_image(40, 40, 200), "blue", 4, "P3", "L");
    server = std::make_unique<Server>(*backend, options);
    server->start();
    ASSERT_GT(server->port(), 0);
  }
  void add(const std::string& image, const std::string& id, int grade, const std::string& patient,
           const std::string& eye) {
    CaseRecord r;
    r.id = id;
    r.grade = grade;
    r.patient = patient;
    r.eye = eye;
    backend->add_case(image, id, r, Json::object());
  }
  httplib::Client client() {
    httplib::Client c("127.0.0.1", server->port());
    c.set_read_timeout(30, 0);
    return c;
  }

  TempDir dir;
  std::unique_ptr<FakeBackend> backend;
  std::unique_ptr<Server> server;
};

TEST_F(ServerTest, HealthStatsAndPage) {
  start();
  auto c = client();
  auto h = c.Get("/api/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(h->get_header_value("Content-Type"), "application/json");
  Json hj = body_json(h);
  EXPECT_EQ(hj["status"], "ok");
  EXPECT_EQ(hj["indexed"], 3);
  EXPECT_TRUE(hj.contains("uptime_s"));
  EXPECT_EQ(hj["server"]["writes_need_token"], false);

  auto s = c.Get("/api/stats");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->status, 200);
  Json sj = body_json(s);
  EXPECT_EQ(sj["cases"], 3);
  EXPECT_TRUE(sj["requests"]["by_status"].is_object());
  EXPECT_EQ(sj["query_cache"]["capacity"], 64);

  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(page->body.find("Research tool, not a diagnosis"), std::string::npos);
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("default-src 'self'"), std::string::npos);
  auto js = c.Get("/app.js");
  ASSERT_TRUE(js);
  EXPECT_EQ(js->status, 200);
  EXPECT_EQ(js->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  auto css = c.Get("/style.css");
  ASSERT_TRUE(css);
  EXPECT_EQ(css->get_header_value("Content-Type"), "text/css; charset=utf-8");
  auto missing = c.Get("/nothing.js");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(error_code(missing), "not_found");
}

TEST(WebAssets, EmbeddedAndSelfContained) {
  ASSERT_NE(find_web_asset("/"), nullptr);
  EXPECT_EQ(find_web_asset("/"), find_web_asset("/index.html"));
  ASSERT_NE(find_web_asset("/app.js"), nullptr);
  ASSERT_NE(find_web_asset("/style.css"), nullptr);
  EXPECT_EQ(find_web_asset("/missing.html"), nullptr);
  // The embedded bytes are the files in the source tree.
  for (const char* name : {"index.html", "app.js", "style.css"}) {
    const WebAsset* a = find_web_asset(std::string("/") + name);
    EXPECT_EQ(std::string(a->body), read_file(source_dir() + "/src/serve/web/" + name)) << name;
  }
  // No CDN, no external fonts: nothing is fetched from another origin.
  for (const WebAsset& a : web_assets()) {
    std::string body(a.body);
    const std::string svg_namespace = "xmlns=\"http://www.w3.org/2000/svg\"";  // a name, not a download
    if (size_t at = body.find(svg_namespace); at != std::string::npos) body.erase(at, svg_namespace.size());
    EXPECT_EQ(body.find("http://"), std::string::npos) << a.path;
    EXPECT_EQ(body.find("https://"), std::string::npos) << a.path;
    EXPECT_EQ(body.find("//cdn"), std::string::npos) << a.path;
  }
  ASSERT_NE(find_web_asset("/favicon.svg"), nullptr);
  EXPECT_EQ(find_web_asset("/favicon.svg")->content_type, "image/svg+xml");
}

TEST_F(ServerTest, QueryReturnsSortedHitsEstimateAndArtefacts) {
  start();
  auto c = client();
  auto r = c.Post("/api/query", form(make_image(190, 50, 50), {{"k", "2"}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  Json j = body_json(r);
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["k"], 2);
  EXPECT_EQ(j["results"][0]["external_id"], "red");  // the reddish query is closest to the red case
  EXPECT_EQ(j["results"][0]["grade"], 0);
  EXPECT_EQ(j["results"][0]["grade_name"], "No DR");
  EXPECT_EQ(j["results"][0]["rank"], 1);
  EXPECT_GE(j["results"][0]["similarity"].get<double>(), j["results"][1]["similarity"].get<double>());
  EXPECT_EQ(j["results"][0]["thumbnail_url"], "/api/cases/1/image?size=thumb");
  EXPECT_EQ(j["results"][0]["patient"], "P1");
  EXPECT_FALSE(j["results"][0].contains("image_path"));  // server paths stay private
  EXPECT_EQ(j["estimate"]["grade"], 0);
  EXPECT_EQ(j["estimate"]["votes"].size(), 5u);
  double sum = 0;
  for (double v : j["estimate"]["votes"]) sum += v;
  EXPECT_NEAR(sum, 1.0, 1e-6);
  EXPECT_TRUE(j["timing_ms"].contains("request"));

  std::string id = j["query_id"];
  EXPECT_EQ(id.size(), 32u);
  EXPECT_EQ(j["preprocessed_url"], "/api/queries/" + id + "/preprocessed.png");
  auto pre = c.Get(j["preprocessed_url"].get<std::string>().c_str());
  ASSERT_TRUE(pre);
  ASSERT_EQ(pre->status, 200);
  EXPECT_EQ(pre->get_header_value("Content-Type"), "image/png");
  cv::Mat pre_img = decode(pre->body);
  EXPECT_EQ(pre_img.cols, 64);
  auto att = c.Get(j["attention_url"].get<std::string>().c_str());
  ASSERT_TRUE(att);
  ASSERT_EQ(att->status, 200);
  cv::Mat att_img = decode(att->body);
  ASSERT_EQ(att_img.size(), pre_img.size());
  // The fake overlay is the inverted image: the server encoded the right artefact for each URL.
  EXPECT_NEAR(cv::mean(att_img)[2] + cv::mean(pre_img)[2], 255.0, 1.0);

  // Grade filter and patient exclusion reach the backend.
  auto f = c.Post("/api/query", form(make_image(190, 50, 50), {{"grades", "2, 4"}, {"exclude_patient", "P3"}}));
  ASSERT_TRUE(f);
  ASSERT_EQ(f->status, 200) << f->body;
  Json fj = body_json(f);
  ASSERT_EQ(fj["results"].size(), 1u);
  EXPECT_EQ(fj["results"][0]["external_id"], "green");

  // Without attention, no attention URL and the artefact is 404.
  auto n = c.Post("/api/query", form(make_image(190, 50, 50), {{"attention", "false"}}));
  ASSERT_TRUE(n);
  ASSERT_EQ(n->status, 200);
  Json nj = body_json(n);
  EXPECT_TRUE(nj["attention_url"].is_null());
  auto na = c.Get(("/api/queries/" + nj["query_id"].get<std::string>() + "/attention.png").c_str());
  ASSERT_TRUE(na);
  EXPECT_EQ(na->status, 404);
}

TEST_F(ServerTest, QueryArtefactsAreBoundedAndUnguessable) {
  ServerOptions o;
  o.query_cache_size = 2;
  start(o);
  auto c = client();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto r = c.Post("/api/query", form(make_image(100 + i, 90, 90)));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    ids.push_back(body_json(r)["query_id"]);
  }
  EXPECT_NE(ids[0], ids[1]);
  auto old = c.Get(("/api/queries/" + ids[0] + "/preprocessed.png").c_str());
  ASSERT_TRUE(old);
  EXPECT_EQ(old->status, 404);
  EXPECT_EQ(error_code(old), "unknown_query");
  auto recent = c.Get(("/api/queries/" + ids[2] + "/preprocessed.png").c_str());
  ASSERT_TRUE(recent);
  EXPECT_EQ(recent->status, 200);
  auto bogus = c.Get("/api/queries/0123456789abcdef0123456789abcdef/preprocessed.png");
  ASSERT_TRUE(bogus);
  EXPECT_EQ(bogus->status, 404);
}

TEST_F(ServerTest, CaseEndpoints) {
  start();
  auto c = client();
  auto g = c.Get("/api/cases/2");
  ASSERT_TRUE(g);
  ASSERT_EQ(g->status, 200);
  Json gj = body_json(g);
  EXPECT_EQ(gj["id"], 2);
  EXPECT_EQ(gj["external_id"], "green");
  EXPECT_EQ(gj["grade_name"], "Moderate");
  EXPECT_EQ(gj["eye"], "R");

  auto full = c.Get("/api/cases/2/image");
  ASSERT_TRUE(full);
  ASSERT_EQ(full->status, 200);
  EXPECT_EQ(full->get_header_value("Content-Type"), "image/jpeg");
  EXPECT_EQ(full->body, make_image(40, 200, 40));  // the stored bytes, untouched

  // A large PNG case: the thumbnail is a JPEG with the longer side at the thumbnail size.
  auto add = c.Post("/api/cases", form(make_image(90, 90, 200, 900, 600, ".png"), {{"grade", "1"}}, "big.png"));
  ASSERT_TRUE(add);
  ASSERT_EQ(add->status, 201) << add->body;
  int64_t big = body_json(add)["id"];
  auto thumb = c.Get(("/api/cases/" + std::to_string(big) + "/image?size=thumb").c_str());
  ASSERT_TRUE(thumb);
  ASSERT_EQ(thumb->status, 200);
  EXPECT_EQ(thumb->get_header_value("Content-Type"), "image/jpeg");
  cv::Mat t = decode(thumb->body);
  EXPECT_EQ(t.cols, 256);
  EXPECT_EQ(t.rows, 171);
  auto png_full = c.Get(("/api/cases/" + std::to_string(big) + "/image").c_str());
  ASSERT_TRUE(png_full);
  EXPECT_EQ(png_full->get_header_value("Content-Type"), "image/png");
  auto bad_size = c.Get("/api/cases/2/image?size=huge");
  ASSERT_TRUE(bad_size);
  EXPECT_EQ(bad_size->status, 400);
  EXPECT_EQ(error_code(bad_size), "bad_size");

  auto att = c.Get("/api/cases/3/attention.png");
  ASSERT_TRUE(att);
  ASSERT_EQ(att->status, 200);
  EXPECT_EQ(att->get_header_value("Content-Type"), "image/png");
  EXPECT_EQ(decode(att->body).cols, 32);

  for (const char* path : {"/api/cases/99", "/api/cases/99/image", "/api/cases/99/attention.png", "/api/cases/0",
                           "/api/cases/999999999999999999", "/api/cases/abc", "/api/nothing"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 404) << path;
    std::string code = error_code(r);
    EXPECT_TRUE(code == "unknown_case" || code == "not_found") << path << ": " << code;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json") << path;
  }
}

TEST_F(ServerTest, AddThenQueryThenDelete) {
  start();
  auto c = client();
  auto add =
      c.Post("/api/cases",
             form(make_image(230, 230, 20),
                  {{"grade", "3"}, {"patient", "P9"}, {"eye", "r"}, {"id", "yellow"}, {"meta", R"({"site": "A"})"}}));
  ASSERT_TRUE(add);
  ASSERT_EQ(add->status, 201) << add->body;
  Json a = body_json(add);
  EXPECT_EQ(a["external_id"], "yellow");
  EXPECT_EQ(a["grade"], 3);
  EXPECT_EQ(a["eye"], "R");
  EXPECT_EQ(a["meta"]["site"], "A");
  EXPECT_EQ(add->get_header_value("Location"), "/api/cases/" + std::to_string(a["id"].get<int64_t>()));

  auto q = c.Post("/api/query", form(make_image(225, 225, 30), {{"k", "1"}}));
  ASSERT_TRUE(q);
  ASSERT_EQ(q->status, 200);
  EXPECT_EQ(body_json(q)["results"][0]["external_id"], "yellow");

  std::string path = "/api/cases/" + std::to_string(a["id"].get<int64_t>());
  auto del = c.Delete(path.c_str());
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 204);
  EXPECT_TRUE(del->body.empty());
  auto again = c.Delete(path.c_str());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 404);
  auto gone = c.Get(path.c_str());
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, 404);
  EXPECT_EQ(backend->size(), 3);

  // A duplicate external id is refused by the backend: 422 with its message.
  auto dup = c.Post("/api/cases", form(make_image(10, 10, 10), {{"grade", "1"}, {"id", "red"}}));
  ASSERT_TRUE(dup);
  EXPECT_EQ(dup->status, 422);
  EXPECT_NE(body_json(dup)["error"]["message"].get<std::string>().find("duplicate"), std::string::npos);
}

TEST_F(ServerTest, BadRequestsGetClearErrors) {
  ServerOptions o;
  o.max_pixels = 200 * 200;
  start(o);
  auto c = client();
  auto expect = [&](const httplib::Result& r, int status, const std::string& code, const char* what) {
    ASSERT_TRUE(r) << what;
    EXPECT_EQ(r->status, status) << what << ": " << r->body;
    EXPECT_EQ(error_code(r), code) << what;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json") << what;
  };
  std::string jpeg = make_image(100, 100, 100);

  expect(c.Post("/api/query", R"({"image": "x"})", "application/json"), 415, "unsupported_media_type", "json body");
  expect(c.Post("/api/query", jpeg, "image/jpeg"), 415, "unsupported_media_type", "raw image body");
  expect(c.Post("/api/query", form("", {{"k", "3"}})), 400, "missing_image", "no image field");
  expect(c.Post("/api/query", form("hello, I am not a picture")), 400, "not_an_image", "text bytes");
  auto truncated = c.Post("/api/query", form(jpeg.substr(0, jpeg.size() / 2), {}, "cut.jpg"));
  expect(truncated, 422, "bad_image", "truncated JPEG");
  EXPECT_NE(body_json(truncated)["error"]["message"].get<std::string>().find("upload 'cut.jpg': truncated JPEG"),
            std::string::npos);
  // A JPEG whose header is fine but whose data does not decode: the backend's error, as 422.
  std::string garbage = jpeg.substr(0, 200) + std::string(600, '\x00') + "\xFF\xD9";
  expect(c.Post("/api/query", form(garbage)), 422, "bad_image", "undecodable JPEG data");
  // Scan data damaged in the middle, end marker intact: refused, not searched as grey blocks.
  std::string damaged = jpeg.substr(0, jpeg.size() / 2) + jpeg.substr(jpeg.size() / 2 + jpeg.size() / 8);
  auto corrupt = c.Post("/api/query", form(damaged, {}, "mid.jpg"));
  expect(corrupt, 422, "bad_image", "damaged scan data");
  EXPECT_NE(body_json(corrupt)["error"]["message"].get<std::string>().find("corrupt JPEG data"), std::string::npos);
  // TIFF is an image, but not accepted for upload.
  std::vector<uchar> tiff;
  cv::imencode(".tiff", cv::Mat(8, 8, CV_8UC3, cv::Scalar(1, 2, 3)), tiff);
  expect(c.Post("/api/query", form(std::string(tiff.begin(), tiff.end()), {}, "x.tif")), 422,
         "unsupported_image_format", "tiff");

  expect(c.Post("/api/query", form(make_image(100, 100, 100, 300, 300))), 413, "too_many_pixels", "pixel cap");
  // A PNG whose header claims 100000 x 100000 pixels is refused before anything is decoded.
  std::string bomb = make_image(1, 2, 3, 8, 8, ".png");
  for (int i = 0; i < 4; ++i) bomb[16 + i] = bomb[20 + i] = "\x00\x01\x86\xA0"[i];
  expect(c.Post("/api/query", form(bomb, {}, "bomb.png")), 413, "too_many_pixels", "png bomb");

  for (const char* k : {"0", "101", "abc", "2.5", "-1"})
    expect(c.Post("/api/query", form(jpeg, {{"k", k}})), 400, "bad_k", k);
  expect(c.Post("/api/query", form(jpeg, {{"grades", "1,7"}})), 400, "bad_grade", "grade 7");
  expect(c.Post("/api/query", form(jpeg, {{"grades", "x"}})), 400, "bad_grade", "grade x");
  expect(c.Post("/api/query", form(jpeg, {{"attention", "maybe"}})), 400, "bad_field", "attention flag");

  expect(c.Post("/api/cases", R"({"grade": 1})", "application/json"), 415, "unsupported_media_type", "add json");
  expect(c.Post("/api/cases", form(jpeg)), 400, "missing_grade", "add without grade");
  expect(c.Post("/api/cases", form(jpeg, {{"grade", "5"}})), 400, "bad_grade", "grade 5");
  expect(c.Post("/api/cases", form(jpeg, {{"grade", "1"}, {"meta", "{not json"}})), 400, "bad_meta", "meta syntax");
  expect(c.Post("/api/cases", form(jpeg, {{"grade", "1"}, {"meta", "[1, 2]"}})), 400, "bad_meta", "meta array");
  expect(c.Post("/api/cases", form(jpeg, {{"grade", "1"}, {"eye", "both"}})), 400, "bad_eye", "eye");
  expect(c.Post("/api/cases", form(jpeg, {{"grade", "1"}, {"patient", std::string(300, 'p')}})), 400, "bad_field",
         "long patient");
  expect(c.Post("/api/cases", form("GIF89a....", {{"grade", "1"}})), 400, "not_an_image", "add gif bytes");
  EXPECT_EQ(backend->size(), 3);  // nothing was added by the failed requests

  // Malformed multipart body: cpp-httplib's own 400, still a JSON error.
  expect(c.Post("/api/query", "--xyz\r\nnot a part", "multipart/form-data; boundary=abc"), 400, "bad_request",
         "broken multipart");

  // The server is still up and serving.
  auto h = c.Get("/api/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

TEST_F(ServerTest, UploadLimitGives413) {
  ServerOptions o;
  o.max_upload_bytes = 64 * 1024;
  start(o);
  auto c = client();
  std::string big = make_image(1, 2, 3, 8, 8) + std::string(100 * 1024, 'x');
  auto r = c.Post("/api/query", form(big));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(error_code(r), "payload_too_large");
  auto ok = client().Post("/api/query", form(make_image(1, 2, 3)));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(ServerTest, ChunkedUploadsAreHeldToTheSameLimit) {
  ServerOptions o;
  o.max_upload_bytes = 64 * 1024;
  start(o);
  auto c = client();
  // No Content-Length: cpp-httplib sends the body with chunked transfer encoding.
  std::string body = "--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.jpg\"\r\n\r\n" +
                     std::string(300 * 1024, 'x') + "\r\n--b--\r\n";
  size_t sent = 0;
  auto r = c.Post(
      "/api/query",
      [&](size_t, httplib::DataSink& sink) {
        size_t n = std::min<size_t>(16 * 1024, body.size() - sent);
        if (n > 0) sink.write(body.data() + sent, n);
        sent += n;
        if (sent == body.size()) sink.done();
        return true;
      },
      "multipart/form-data; boundary=b");
  // Refused before the body is read (the client may see the 411 or, still sending, a closed connection).
  if (r) {
    EXPECT_EQ(r->status, 411) << r->body;
    EXPECT_EQ(error_code(r), "length_required");
  }
  auto h = client().Get("/api/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(server->counters()["completed"]["queries"], nullptr);  // the handler never ran
}

TEST_F(ServerTest, TokenRequiredForWritesOnly) {
  ServerOptions o;
  o.token = "s3cret";
  start(o);
  auto c = client();
  std::string jpeg = make_image(120, 60, 60);
  auto no = c.Post("/api/cases", form(jpeg, {{"grade", "1"}}));
  ASSERT_TRUE(no);
  EXPECT_EQ(no->status, 401);
  EXPECT_EQ(error_code(no), "unauthorized");
  auto wrong = c.Post("/api/cases", httplib::Headers{{"Authorization", "Bearer s3cre"}}, form(jpeg, {{"grade", "1"}}));
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  auto del_no = c.Delete("/api/cases/1");
  ASSERT_TRUE(del_no);
  EXPECT_EQ(del_no->status, 401);
  EXPECT_EQ(backend->size(), 3);

  auto bearer =
      c.Post("/api/cases", httplib::Headers{{"Authorization", "Bearer s3cret"}}, form(jpeg, {{"grade", "1"}}));
  ASSERT_TRUE(bearer);
  EXPECT_EQ(bearer->status, 201) << bearer->body;
  auto header = c.Delete("/api/cases/1", httplib::Headers{{"X-Fundus-Token", "s3cret"}});
  ASSERT_TRUE(header);
  EXPECT_EQ(header->status, 204);
  EXPECT_EQ(backend->size(), 3);

  // Reads need no token.
  auto q = c.Post("/api/query", form(jpeg));
  ASSERT_TRUE(q);
  EXPECT_EQ(q->status, 200);
  auto h = c.Get("/api/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(body_json(h)["server"]["writes_need_token"], true);
}

TEST_F(ServerTest, HandlerExceptionsBecome500AndServerStaysUp) {
  start();
  backend->fail_stats = true;
  auto c = client();
  auto r = c.Get("/api/stats");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(error_code(r), "internal");
  backend->fail_stats = false;
  auto ok = c.Get("/api/stats");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  // Requests are counted when their log line is written, just after the response went out.
  Json counters;
  for (int i = 0; i < 200 && !(counters = server->counters())["by_status"].contains("500"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(counters["by_status"]["500"], 1);
}

TEST_F(ServerTest, AccessLogHasOneJsonLinePerRequestWithoutPrivateData) {
  start();
  {
    auto c = client();
    ASSERT_TRUE(c.Get("/api/cases/1/image?size=thumb"));
    ASSERT_TRUE(c.Post("/api/cases", form(make_image(5, 5, 5), {{"grade", "1"}, {"patient", "PATIENT-SECRET-42"}})));
    ASSERT_TRUE(c.Post("/api/query", form(make_image(5, 5, 5), {{"exclude_patient", "PATIENT-SECRET-42"}})));
    ASSERT_TRUE(c.Get("/api/cases/77"));
  }
  server->stop();
  server->wait();
  std::string log = read_file(dir.file("access.log"));
  std::vector<std::string> lines;
  for (const std::string& l : split(log, '\n'))
    if (!l.empty()) lines.push_back(l);
  ASSERT_EQ(lines.size(), 4u) << log;
  // Workers log as they finish, so lines of back-to-back requests may swap: look them up by path.
  std::map<std::string, Json> by_path;
  for (const std::string& l : lines) {
    Json j = Json::parse(l);
    by_path[j["method"].get<std::string>() + " " + j["path"].get<std::string>()] = j;
  }
  Json first = by_path["GET /api/cases/1/image"];
  EXPECT_EQ(first["params"], Json::array({"size"}));
  EXPECT_EQ(first["status"], 200);
  EXPECT_GT(first["bytes_out"].get<int64_t>(), 0);
  EXPECT_GE(first["duration_ms"].get<double>(), 0);
  EXPECT_EQ(first["remote"], "127.0.0.1");
  EXPECT_EQ(first["time"].get<std::string>().size(), 24u);  // 2026-11-26T10:00:00.123Z
  Json add = by_path["POST /api/cases"];
  EXPECT_EQ(add["status"], 201);
  EXPECT_GT(add["bytes_in"].get<int64_t>(), 0);
  EXPECT_EQ(by_path["POST /api/query"]["status"], 200);
  EXPECT_EQ(by_path["GET /api/cases/77"]["status"], 404);
  EXPECT_EQ(log.find("thumb"), std::string::npos);  // query values are not logged
  EXPECT_EQ(log.find("PATIENT-SECRET"), std::string::npos);
}

// ---- issue 10: hostile input and damaged stores --------------------------------------------------

// Items 2 and 10: a 60,000-deep `meta` killed the server (and was stored first); Latin-1 and escape
// sequences were stored; "0x10" was a k and "0x2" a grade.
TEST_F(ServerTest, HostileFieldsAreRefusedBeforeAnythingIsStored) {
  start();
  auto c = client();
  std::string jpeg = make_image(100, 100, 100);
  auto expect = [&](const httplib::Result& r, const std::string& code, const std::string& message, const char* what) {
    ASSERT_TRUE(r) << what;
    EXPECT_EQ(r->status, 400) << what << ": " << r->body;
    EXPECT_EQ(error_code(r), code) << what;
    if (!message.empty()) {
      EXPECT_EQ(body_json(r)["error"]["message"], message) << what;
    }
  };
  expect(c.Post("/api/cases", form(jpeg, {{"grade", "1"}, {"meta", nested_json(60000)}})), "bad_meta",
         "field 'meta': longer than 65536 bytes", "meta 60,000 deep (360 kB)");
  expect(
      c.Post("/api/cases", form(jpeg, {{"grade", "1"},
                                       {"meta", "{\"a\":" + std::string(30000, '[') + std::string(30000, ']') + "}"}})),
      "bad_meta", "field 'meta': JSON nested deeper than 64 levels", "meta 30,000 deep (60 kB)");
  expect(c.Post("/api/cases", form(jpeg, {{"grade", "1"}, {"meta", nested_json(65)}})), "bad_meta",
         "field 'meta': JSON nested deeper than 64 levels", "meta 65 deep");
  expect(c.Post("/api/cases", form(jpeg, {{"grade", "1"}, {"meta", "{\"a\":\"" + std::string(70000, 'x') + "\"}"}})),
         "bad_meta", "field 'meta': longer than 65536 bytes", "meta 70 kB");
  expect(c.Post("/api/cases", form(jpeg, {{"grade", "1"}, {"patient", "Jos\xE9"}})), "bad_field",
         "field 'patient': not valid UTF-8", "Latin-1 patient");
  expect(c.Post("/api/cases", form(jpeg, {{"grade", "1"}, {"id", "x\x1b[2J"}})), "bad_field",
         "field 'id': contains control characters", "escape sequence in id");
  for (const char* k : {"0x10", "1e1", "0x2", "+0x1", "1_0"})
    expect(c.Post("/api/query", form(jpeg, {{"k", k}})), "bad_k", "", k);
  for (const char* g : {"0x2", "1e0", "2e0"}) {
    expect(c.Post("/api/cases", form(jpeg, {{"grade", g}})), "bad_grade", "", g);
    expect(c.Post("/api/query", form(jpeg, {{"grades", g}})), "bad_grade", "", g);
  }
  EXPECT_EQ(backend->size(), 3);
  auto ok = c.Post("/api/cases", form(jpeg, {{"grade", "1"}, {"meta", nested_json(64)}, {"patient", "Jos\xC3\xA9"}}));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 201) << ok->body;
  EXPECT_EQ(body_json(ok)["patient"], "Jos\xC3\xA9");
  auto h = c.Get("/api/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

// Item 5: a stored case with corrupt metadata made queries answer "422 bad_image".
TEST_F(ServerTest, DamagedStoreRowsAreTheServersFaultAndNameTheCase) {
  start();
  backend->corrupt_case = 2;
  auto c = client();
  const std::string expected =
      "case 2 in the case store is damaged (meta: JSON nested deeper than 64 levels); the server's operator can find "
      "it with `fundus store check`";
  std::vector<httplib::Result> answers;
  answers.push_back(c.Post("/api/query", form(make_image(40, 200, 40), {{"k", "3"}})));
  answers.push_back(c.Get("/api/cases/2"));
  for (const httplib::Result& r : answers) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 500) << r->body;
    EXPECT_EQ(error_code(r), "corrupt_case");
    EXPECT_EQ(body_json(r)["error"]["case_id"], 2);
    EXPECT_EQ(body_json(r)["error"]["message"], expected);
    EXPECT_EQ(r->body.find(backend->private_dir), std::string::npos) << r->body;
  }
  // Answers that do not touch the damaged case still work.
  auto other = c.Post("/api/query", form(make_image(40, 200, 40), {{"k", "3"}, {"grades", "0,4"}}));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 200) << other->body;
  auto one = c.Get("/api/cases/1");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->status, 200);
}

// Item 12: a 500 for a case whose image file was missing returned the server's absolute path.
TEST_F(ServerTest, ResponsesNeverNameServerFiles) {
  start();
  auto c = client();
  ASSERT_EQ(std::remove(dir.file("3.img").c_str()), 0);  // case 3's image went missing on the server
  write_file_atomic(dir.file("2.img"), std::string("\xFF\xD8\xFF\xE0 damaged", 12));
  for (const char* path : {"/api/cases/3/image", "/api/cases/3/image?size=thumb", "/api/cases/3/attention.png",
                           "/api/cases/2/image?size=thumb"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 500) << path;
    EXPECT_EQ(error_code(r), "image_unavailable") << path;
    EXPECT_EQ(r->body.find(dir.path()), std::string::npos) << path << ": " << r->body;
  }
  backend->fail_stats = true;  // a server-side error whose message names the store's path
  auto s = c.Get("/api/stats");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->status, 500);
  EXPECT_EQ(body_json(s)["error"]["message"], "internal error; the details are in the server's log");
  EXPECT_EQ(s->body.find(backend->private_dir), std::string::npos) << s->body;
}

// A raw TCP client: connects without blocking on a full accept backlog, sends what it is told.
int raw_connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  pollfd p{fd, POLLOUT, 0};
  ::poll(&p, 1, 5000);
  return fd;
}

// Everything the server sends until it closes the connection (or 30 s pass).
std::string read_until_closed(int fd) {
  std::string got;
  char buf[4096];
  for (int i = 0; i < 300; ++i) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, size_t(n));
  }
  return got;
}

// Item 13: 47 idle connections sending partial headers blocked every request until read timeouts
// freed the workers.
TEST_F(ServerTest, SlowClientsNeverStarveHealthOrQueries) {
  ServerOptions o;
  o.workers = 4;
  o.header_timeout_s = 120;  // the slow clients stay for the whole test: nothing here waits for a timeout
  start(o);
  std::vector<int> slow;
  for (int i = 0; i < 50; ++i) {
    slow.push_back(raw_connect(server->port()));
    (void)::send(slow.back(), "GET /api/health HTTP/1.1\r\nHost: x\r\n", 35, MSG_NOSIGNAL);
  }
  // One more header byte every 200 ms: no read ever times out.
  std::atomic<bool> trickle{true};
  std::thread t([&] {
    while (trickle) {
      for (int fd : slow) (void)::send(fd, "X", 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  httplib::Client c("127.0.0.1", server->port());
  c.set_connection_timeout(30, 0);
  c.set_read_timeout(30, 0);
  auto h = c.Get("/api/health");
  auto q = c.Post("/api/query", form(make_image(200, 40, 40), {{"k", "2"}}));
  trickle = false;
  t.join();
  for (int fd : slow) ::close(fd);
  ASSERT_TRUE(h) << "no answer to /api/health while 50 slow clients were connected";
  EXPECT_EQ(h->status, 200);
  ASSERT_TRUE(q) << "no answer to a query while 50 slow clients were connected";
  EXPECT_EQ(q->status, 200) << q->body;
}

TEST_F(ServerTest, IncompleteHeadersTimeOutWith408) {
  ServerOptions o;
  o.header_timeout_s = 1;
  start(o);
  int fd = raw_connect(server->port());
  ASSERT_EQ(::send(fd, "GET /api/health HTTP/1.1\r\nHo", 28, MSG_NOSIGNAL), 28);
  std::string got = read_until_closed(fd);  // the server answers and closes; the test only waits for it
  ::close(fd);
  EXPECT_EQ(got.substr(0, 12), "HTTP/1.1 408") << got;
  EXPECT_NE(got.find("request_timeout"), std::string::npos) << got;
  EXPECT_EQ(server->counters()["header_timeouts"], 1);
  auto h = client().Get("/api/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

TEST_F(ServerTest, ConnectionsAreCappedPerClient) {
  ServerOptions o;
  o.max_connections_per_client = 3;
  o.header_timeout_s = 120;
  start(o);
  std::vector<int> idle;
  for (int i = 0; i < 3; ++i) idle.push_back(raw_connect(server->port()));
  int extra = raw_connect(server->port());
  std::string got = read_until_closed(extra);
  ::close(extra);
  EXPECT_EQ(got.substr(0, 12), "HTTP/1.1 503") << got;
  EXPECT_NE(got.find("too_many_connections"), std::string::npos) << got;
  EXPECT_GE(server->counters()["refused_connections"], 1);
  // Once a connection closes, the client is served again (the gate notices the close on its own).
  ::close(idle.back());
  idle.pop_back();
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    auto h = client().Get("/api/health");
    status = h ? h->status : 0;
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(status, 200);
  for (int fd : idle) ::close(fd);
}

TEST(AccessLogFormat, FieldsAndTimestamp) {
  AccessEntry e;
  e.method = "GET";
  e.path = "/api/cases/\xff";  // invalid UTF-8 from the network must not throw
  e.params = {"size"};
  e.status = 404;
  e.bytes_out = 12;
  e.duration_ms = 1.26;
  Json j = Json::parse(format_access_entry(e, 1764151200123));  // 2025-11-26T10:00:00.123Z
  EXPECT_EQ(j["time"], "2025-11-26T10:00:00.123Z");
  EXPECT_EQ(j["status"], 404);
  EXPECT_DOUBLE_EQ(j["duration_ms"].get<double>(), 1.3);
  EXPECT_EQ(j["params"][0], "size");
}

TEST(QueryCacheTest, EvictsOldestAndIdsAreRandomHex) {
  QueryCache cache(2);
  cv::Mat img(4, 4, CV_8UC3, cv::Scalar(1, 2, 3));
  std::string a = cache.put({img, {}}), b = cache.put({img, {}});
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a, b);
  ASSERT_NE(cache.get(a), nullptr);
  std::string c = cache.put({img, img});
  EXPECT_EQ(cache.get(a), nullptr);
  EXPECT_NE(cache.get(b), nullptr);
  ASSERT_NE(cache.get(c), nullptr);
  EXPECT_FALSE(cache.get(c)->attention_overlay.empty());
  EXPECT_EQ(cache.size(), 2u);
}

TEST_F(ServerTest, ConcurrentQueriesAddsAndDeletesStayConsistent) {
  ServerOptions o;
  o.workers = 3;  // fewer workers than clients: connections queue and are all served
  start(o);
  constexpr int kThreads = 6, kRounds = 8;
  std::atomic<int> server_errors{0}, other_failures{0}, added{0}, removed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", server->port());
      c.set_read_timeout(60, 0);
      auto tally = [&](const httplib::Result& r, int expected) {
        if (!r) ++other_failures;
        else if (r->status >= 500) ++server_errors;
        else if (r->status != expected) ++other_failures;
      };
      for (int i = 0; i < kRounds; ++i) {
        if (t % 3 == 0) {
          tally(c.Post("/api/query", form(make_image(20 * t, 10 * i, 90), {{"k", "5"}})), 200);
          continue;
        }
        auto r = c.Post("/api/cases", form(make_image(20 * t, 10 * i, 90),
                                           {{"grade", std::to_string(i % 5)}, {"id", strprintf("t%d_%d", t, i)}}));
        tally(r, 201);
        if (!r || r->status != 201) continue;
        ++added;
        if (t % 3 == 2 && i % 2 == 0) {  // delete every other case this thread added
          auto d = c.Delete(("/api/cases/" + std::to_string(Json::parse(r->body)["id"].get<int64_t>())).c_str());
          tally(d, 204);
          if (d && d->status == 204) ++removed;
        }
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(server_errors, 0);
  EXPECT_EQ(other_failures, 0);
  EXPECT_EQ(added, 4 * kRounds);
  EXPECT_EQ(removed, 2 * kRounds / 2);
  EXPECT_EQ(backend->size(), 3 + added - removed);
  Json counters = server->counters();
  EXPECT_EQ(counters["completed"]["adds"], added.load());
  EXPECT_EQ(counters["completed"]["removes"], removed.load());
  EXPECT_EQ(counters["completed"]["queries"], 2 * kRounds);
}

TEST_F(ServerTest, StopLetsInFlightRequestsFinish) {
  start();
  backend->query_delay_ms = 400;
  auto pending = std::async(std::launch::async, [&] {
    httplib::Client c("127.0.0.1", server->port());
    c.set_read_timeout(30, 0);
    auto r = c.Post("/api/query", form(make_image(7, 7, 7)));
    return r ? r->status : -1;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // the query is being served
  server->stop();
  server->wait();
  EXPECT_EQ(pending.get(), 200);
  httplib::Client late("127.0.0.1", server->port());
  late.set_connection_timeout(1, 0);
  EXPECT_FALSE(late.Get("/api/health"));  // no longer listening
}

TEST(ServerOptionsTest, InvalidOptionsAndBusyPort) {
  TempDir dir;
  FakeBackend backend(dir.path());
  ServerOptions bad;
  bad.workers = 0;
  EXPECT_THROW(Server(backend, bad), Error);
  ServerOptions log_in_missing_dir;
  log_in_missing_dir.access_log = dir.file("no/such/dir/access.log");
  EXPECT_THROW(Server(backend, log_in_missing_dir), Error);

  ServerOptions o;
  o.port = 0;
  o.access_log_enabled = false;
  Server first(backend, o);
  first.start();
  ServerOptions same = o;
  same.port = first.port();
  Server second(backend, same);
  try {
    second.start();
    FAIL() << "binding a busy port must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen on 127.0.0.1:" + std::to_string(first.port())),
              std::string::npos);
  }
}

}  // namespace
}  // namespace fundus::test

// `fundus eval`'s library side, the HTML report and contact sheets.
#include <cmath>
#include <regex>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/rng.h"
#include "fundus/eval/report.h"
#include "fundus/infer/embed.h"
#include "fundus/retrieval/contact_sheet.h"
#include "fundus/retrieval/eval_run.h"
#include "fundus/retrieval/model_runner.h"
#include "retrieval_fixture.h"

using namespace fundus;

namespace {

// A small evaluation on random vectors with two images per patient.
struct RandomEval {
  std::vector<float> q, g;
  EvalSet qs, gs;
  RandomEval(int nq, int ng, int dim) {
    Rng rng(4);
    auto fill = [&](std::vector<float>& v, int n, EvalSet& s, const std::string& prefix) {
      v.resize(size_t(n * dim));
      for (int i = 0; i < n; ++i) {
        double norm = 0;
        for (int j = 0; j < dim; ++j) norm += std::pow(v[size_t(i * dim + j)] = float(rng.normal()), 2);
        for (int j = 0; j < dim; ++j) v[size_t(i * dim + j)] /= float(std::sqrt(norm));
        s.keys.push_back({prefix + std::to_string(i), "p" + std::to_string(i / 2)});
        s.grades.push_back(i % 5);
      }
      s.vectors = {v.data(), n, dim};
    };
    fill(q, nq, qs, "q");
    fill(g, ng, gs, "g");
  }
};

}  // namespace

TEST(Report, Base64AndEscaping) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("M"), "TQ==");
  EXPECT_EQ(base64_encode("Ma"), "TWE=");
  EXPECT_EQ(base64_encode("Man"), "TWFu");
  EXPECT_EQ(base64_encode(std::string("\xff\x00\x10", 3)), "/wAQ");
  EXPECT_EQ(html_escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
  EXPECT_EQ(grade_color_hex(0), "#1a9850");
  EXPECT_EQ(grade_color(9), (std::array<uint8_t, 3>{128, 128, 128}));
}

TEST(Report, LeakageRowsAndHtmlIsSelfContained) {
  RandomEval data(20, 30, 8);
  EvalOptions o;
  o.progress = false;
  o.ks = {1, 5, 20};
  RetrievalReport inc = evaluate_retrieval(data.qs, data.gs, o);
  o.exclude_same_patient = true;
  RetrievalReport exc = evaluate_retrieval(data.qs, data.gs, o);
  EXPECT_EQ(leakage_metrics(inc), (std::vector<std::string>{"P@5", "mAP@5", "MAP@R"}));  // 5 is nearest to 10
  auto rows = leakage_effect(exc, inc, leakage_metrics(inc));
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(rows[0].group, "micro");
  EXPECT_EQ(rows[0].metric, "P@5");
  EXPECT_DOUBLE_EQ(rows[0].included, inc.value("micro", "P@5"));
  EXPECT_DOUBLE_EQ(rows[0].excluded, exc.value("micro", "P@5"));
  EXPECT_DOUBLE_EQ(rows[5].delta(), inc.value("macro", "MAP@R") - exc.value("macro", "MAP@R"));
  EXPECT_THROW(leakage_effect(inc, inc, {"P@5"}), Error);
  EXPECT_NE(leakage_markdown(rows).find("| micro | P@5 |"), std::string::npos);

  HtmlReportInput in;
  in.report = &inc;
  in.leakage = rows;
  in.figures.push_back({"a <figure>", cv::Mat(20, 30, CV_8UC3, cv::Scalar(10, 200, 30))});
  in.config = {{"url_like", "see http://example.org"}};
  std::string html = render_html_report(in);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  size_t svgs = 0;
  for (size_t p = html.find("<svg"); p != std::string::npos; p = html.find("<svg", p + 1)) ++svgs;
  EXPECT_EQ(svgs, 2u);  // P@k curves and the confusion matrix
  EXPECT_NE(html.find("<polyline"), std::string::npos);
  EXPECT_NE(html.find("stroke-dasharray"), std::string::npos);             // chance floors
  EXPECT_NE(html.find("data:image/jpeg;base64,/9j/"), std::string::npos);  // an embedded JPEG
  EXPECT_NE(html.find("a &lt;figure&gt;"), std::string::npos);
  EXPECT_NE(html.find("Leakage effect"), std::string::npos);
  // No external references: the only URL-like text is the user's config value, escaped inside <pre>.
  EXPECT_FALSE(std::regex_search(html, std::regex("src=\"(?!data:)")));
  EXPECT_EQ(html.find("href="), std::string::npos);
  EXPECT_EQ(html.find("@import"), std::string::npos);
  std::string without_config = html.substr(0, html.find("<h2>Configuration"));
  EXPECT_EQ(without_config.find("http://"), std::string::npos);
  EXPECT_EQ(without_config.find("https://"), std::string::npos);
  HtmlReportInput empty;
  EXPECT_THROW(render_html_report(empty), Error);
}

TEST(ContactSheet, DimensionsFramesAndErrors) {
  ContactSheetOptions o;
  o.thumb = 50;
  o.columns = 4;
  o.frame = 3;
  o.gap = 5;
  o.caption_height = 30;
  EXPECT_EQ(contact_sheet_size(1, o), cv::Size(5 + 56 + 5, 5 + 56 + 30 + 5));
  EXPECT_EQ(contact_sheet_size(6, o), cv::Size(5 + 4 * 61, 5 + 2 * 91));
  SheetTile query{cv::Mat(80, 100, CV_8UC3, cv::Scalar(1, 2, 3)), "query", "x", -1};
  std::vector<SheetTile> hits;
  for (int g = 0; g < 5; ++g)
    hits.push_back({cv::Mat(60, 60, CV_8UC3, cv::Scalar(9, 9, 9)), "#" + std::to_string(g + 1), "0.9 id", g});
  cv::Mat sheet = render_contact_sheet(query, hits, o);
  EXPECT_EQ(sheet.size(), contact_sheet_size(6, o));
  EXPECT_EQ(sheet.type(), CV_8UC3);
  // Tile 0 frame is white; tile 2 (grade 1) frame has grade 1's colour; its centre shows the image.
  EXPECT_EQ(sheet.at<cv::Vec3b>(5 + 1, 5 + 1), cv::Vec3b(255, 255, 255));
  auto c1 = grade_color(1);
  EXPECT_EQ(sheet.at<cv::Vec3b>(5 + 1, 5 + 2 * 61 + 1), cv::Vec3b(c1[0], c1[1], c1[2]));
  EXPECT_EQ(sheet.at<cv::Vec3b>(5 + 28, 5 + 2 * 61 + 28), cv::Vec3b(9, 9, 9));
  // The wide query image is fitted with its aspect ratio: black bars above and below.
  EXPECT_EQ(sheet.at<cv::Vec3b>(5 + 3 + 1, 5 + 3 + 25), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(sheet.at<cv::Vec3b>(5 + 3 + 25, 5 + 3 + 25), cv::Vec3b(1, 2, 3));
  EXPECT_THROW(render_contact_sheet({cv::Mat(), "q", "", -1}, {}, o), Error);
  o.thumb = 8;
  EXPECT_THROW(contact_sheet_size(2, o), Error);
}

TEST(EvalRun, OutputsMatchEvaluateRetrievalAndReportLeakage) {
  const auto& data = test::retrieval_data();
  test::TempDir dir;
  ModelRunner model(data.ckpt_mirror);
  EvalRunOptions o;
  o.data = data.manifest;
  o.queries = "test";
  o.gallery = "train,val";
  o.out_dir = dir.file("eval");
  o.ks = {1, 5, 10};
  o.progress = false;
  o.example_queries = 2;
  o.example_k = 3;
  EvalRunResult r = run_evaluation(model, o);
  for (const char* f : {"eval.json", "eval.csv", "eval.md", "per_query.csv", "report.html", "config.json"})
    EXPECT_TRUE(file_exists(dir.file(std::string("eval/") + f))) << f;
  EXPECT_EQ(r.files.size(), 6u);

  // Independently: embed the splits and evaluate.
  Dataset q = data.dataset.subset("test"), g = data.dataset.subset("train,val");
  EmbedOptions eo;
  eo.progress = false;
  Embeddings qe = embed_dataset(model.net(), model.preprocess(), q, eo);
  Embeddings ge = embed_dataset(model.net(), model.preprocess(), g, eo);
  auto set = [](const Dataset& d, const Embeddings& e) {
    EvalSet s;
    s.vectors = {e.data.data(), e.rows, e.dim};
    for (const CaseRecord& c : d.records) {
      s.keys.push_back({c.id, c.patient});
      s.grades.push_back(c.grade);
    }
    return s;
  };
  EvalOptions eval;
  eval.ks = {1, 5, 10};
  eval.progress = false;
  RetrievalReport expected = evaluate_retrieval(set(q, qe), set(g, ge), eval);
  Json saved = load_json_file(dir.file("eval/eval.json"));
  EXPECT_EQ(saved["queries"], int64_t(q.size()));
  EXPECT_EQ(saved["gallery"], int64_t(g.size()));
  for (const Json& group : saved["groups"]) {
    const std::string name = group["name"];
    for (const std::string& metric : expected.metrics) {
      const double want = expected.value(name, metric);
      if (std::isnan(want)) EXPECT_TRUE(group["values"][metric].is_null()) << name << " " << metric;
      else EXPECT_NEAR(group["values"][metric].get<double>(), want, 1e-6) << name << " " << metric;
    }
  }
  // The other same-patient setting is always computed; the image-level split leaks fellow eyes.
  EXPECT_TRUE(saved["other_setting"]["options"]["exclude_same_patient"].get<bool>());
  eval.exclude_same_patient = true;
  RetrievalReport excluded = evaluate_retrieval(set(q, qe), set(g, ge), eval);
  ASSERT_EQ(saved["leakage"].size(), 6u);
  EXPECT_EQ(saved["leakage"][0]["metric"], "P@10");
  EXPECT_NEAR(saved["leakage"][0]["same_patient_included"].get<double>(), expected.value("micro", "P@10"), 1e-6);
  EXPECT_NEAR(saved["leakage"][0]["same_patient_excluded"].get<double>(), excluded.value("micro", "P@10"), 1e-6);

  std::string md = read_file(dir.file("eval/eval.md"));
  EXPECT_NE(md.find("| metric |"), std::string::npos);
  EXPECT_NE(md.find("Leakage effect"), std::string::npos);
  std::string html = read_file(dir.file("eval/report.html"));
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("data:image/jpeg;base64,"), std::string::npos);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(load_json_file(dir.file("eval/config.json"))["eval"]["queries"], "test");

  o.queries = "nope";
  EXPECT_THROW(run_evaluation(model, o), Error);
}

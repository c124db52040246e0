#include "fundus/eval/report.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/error.h"
#include "fundus/core/strings.h"

namespace fundus {

std::array<uint8_t, 3> grade_color(int grade) {
  // Colour-blind-friendly ramp from green (healthy) to crimson (proliferative).
  static const std::array<uint8_t, 3> colors[kNumGrades] = {
      {26, 152, 80}, {145, 191, 40}, {235, 170, 20}, {240, 95, 40}, {190, 20, 60}};
  if (grade < 0 || grade >= kNumGrades) return {128, 128, 128};
  return colors[grade];
}

std::string grade_color_hex(int grade) {
  auto c = grade_color(grade);
  return strprintf("#%02x%02x%02x", c[0], c[1], c[2]);
}

namespace {

size_t metric_index(const RetrievalReport& r, const std::string& metric) {
  auto it = std::find(r.metrics.begin(), r.metrics.end(), metric);
  return it == r.metrics.end() ? r.metrics.size() : size_t(it - r.metrics.begin());
}

std::string num(double v, int digits = 3) { return std::isfinite(v) ? strprintf("%.*f", digits, v) : "–"; }

}  // namespace

std::vector<std::string> leakage_metrics(const RetrievalReport& report) {
  const auto& ks = report.options.ks;
  FUNDUS_CHECK(!ks.empty(), "leakage_metrics: the report has no cut-offs");
  int best = ks.front();
  for (int k : ks)
    if (std::abs(k - 10) < std::abs(best - 10)) best = k;
  return {"P@" + std::to_string(best), "mAP@" + std::to_string(best), "MAP@R"};
}

std::vector<LeakageRow> leakage_effect(const RetrievalReport& a, const RetrievalReport& b,
                                       const std::vector<std::string>& metrics) {
  FUNDUS_CHECK(a.options.exclude_same_patient != b.options.exclude_same_patient,
               "leakage_effect: the two reports must differ in exclude_same_patient");
  FUNDUS_CHECK(a.metrics == b.metrics, "leakage_effect: the two reports have different metrics");
  const RetrievalReport& inc = a.options.exclude_same_patient ? b : a;
  const RetrievalReport& exc = a.options.exclude_same_patient ? a : b;
  std::vector<LeakageRow> rows;
  for (const char* group : {"micro", "macro"})
    for (const std::string& m : metrics) {
      if (metric_index(inc, m) == inc.metrics.size()) continue;
      rows.push_back({group, m, inc.value(group, m), exc.value(group, m)});
    }
  return rows;
}

std::string leakage_markdown(const std::vector<LeakageRow>& rows) {
  std::ostringstream s;
  s << "Leakage effect: the same queries with the query patient's other images (fellow eye, repeat visits) "
       "included in / excluded from the gallery.\n\n"
    << "| group | metric | same patient included | excluded | difference |\n|---|---|---:|---:|---:|\n";
  for (const LeakageRow& r : rows)
    s << "| " << r.group << " | " << r.metric << " | " << num(r.included) << " | " << num(r.excluded) << " | "
      << (std::isfinite(r.delta()) ? strprintf("%+.3f", r.delta()) : "–") << " |\n";
  return s.str();
}

Json leakage_json(const std::vector<LeakageRow>& rows) {
  auto jnum = [](double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); };
  Json out = Json::array();
  for (const LeakageRow& r : rows)
    out.push_back({{"group", r.group},
                   {"metric", r.metric},
                   {"same_patient_included", jnum(r.included)},
                   {"same_patient_excluded", jnum(r.excluded)},
                   {"difference", jnum(r.delta())}});
  return out;
}

std::string base64_encode(std::string_view bytes) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 | uint8_t(bytes[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string svg_precision_curves(const RetrievalReport& r) {
  const auto& ks = r.options.ks;
  std::vector<size_t> slots;
  for (int k : ks) slots.push_back(metric_index(r, "P@" + std::to_string(k)));
  FUNDUS_CHECK(!slots.empty() && slots.front() < r.metrics.size(), "svg_precision_curves: the report has no P@k");
  const double W = 560, H = 320, left = 50, right = 150, top = 15, bottom = 40;
  const double pw = W - left - right, ph = H - top - bottom;
  const double lo = std::log(double(ks.front())), hi = std::log(double(ks.back()));
  auto x_of = [&](int k) { return left + (hi > lo ? (std::log(double(k)) - lo) / (hi - lo) * pw : pw / 2); };
  auto y_of = [&](double v) { return top + (1 - std::clamp(v, 0.0, 1.0)) * ph; };
  std::ostringstream s;
  s << strprintf(
      "<svg class=\"plot\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
      "aria-label=\"P@k per grade\">\n",
      W, H, W, H);
  s << strprintf("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fff\" stroke=\"#999\"/>\n", left,
                 top, pw, ph);
  for (int i = 0; i <= 5; ++i) {  // y grid
    double v = i / 5.0, y = y_of(v);
    s << strprintf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>", left, y, left + pw, y)
      << strprintf("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.1f</text>\n", left - 5, y + 4,
                   v);
  }
  for (int k : ks)
    s << strprintf("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%d</text>", x_of(k),
                   top + ph + 15, k);
  s << strprintf("\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">k (log scale)</text>",
                 left + pw / 2, H - 5);
  s << strprintf(
      "<text x=\"12\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 12 "
      "%.1f)\">P@k</text>\n",
      top + ph / 2, top + ph / 2);
  auto polyline = [&](const std::vector<double>& values, const std::string& color, const char* dash, double width) {
    std::string pts;
    for (size_t i = 0; i < ks.size(); ++i)
      if (std::isfinite(values[slots[i]])) pts += strprintf("%.1f,%.1f ", x_of(ks[i]), y_of(values[slots[i]]));
    if (pts.empty()) return;
    s << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"" << width << "\"" << dash << " points=\""
      << pts << "\"/>\n";
    for (size_t i = 0; i < ks.size() && !*dash; ++i)
      if (std::isfinite(values[slots[i]]))
        s << strprintf("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>", x_of(ks[i]), y_of(values[slots[i]]),
                       color.c_str());
  };
  double ly = top + 10;
  auto legend = [&](const std::string& label, const std::string& color, const char* dash) {
    s << strprintf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>",
                   left + pw + 10, ly, left + pw + 30, ly, color.c_str(), dash)
      << strprintf("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">%s</text>\n", left + pw + 35, ly + 4,
                   html_escape(label).c_str());
    ly += 16;
  };
  for (const GroupSummary& g : r.groups) {
    if (g.queries == 0 && g.grade >= 0) continue;
    std::string color = g.grade >= 0 ? grade_color_hex(g.grade) : (g.name == "micro" ? "#000000" : "#666666");
    if (g.grade >= 0) polyline(g.chance, color, " stroke-dasharray=\"4 3\"", 1.2);
    polyline(g.values, color, "", g.grade >= 0 ? 1.8 : 2.6);
    legend(g.grade >= 0 ? g.name + " (n=" + std::to_string(g.queries) + ")" : g.name, color, "");
  }
  legend("chance (per grade)", "#888888", " stroke-dasharray=\"4 3\"");
  s << "</svg>\n";
  return s.str();
}

std::string svg_confusion_matrix(const ConfusionMatrix& counts) {
  const int n = int(counts.size());
  FUNDUS_CHECK(n > 0, "svg_confusion_matrix: empty matrix");
  const double cell = 56, left = 90, top = 40;
  const double W = left + n * cell + 10, H = top + n * cell + 30;
  std::ostringstream s;
  s << strprintf(
      "<svg class=\"plot\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
      "aria-label=\"confusion matrix\">\n",
      W, H, W, H);
  s << strprintf("<text x=\"%.1f\" y=\"14\" font-size=\"12\" text-anchor=\"middle\">predicted (k-NN vote)</text>\n",
                 left + n * cell / 2);
  for (int t = 0; t < n; ++t) {
    int64_t row = 0;
    for (int p = 0; p < n; ++p) row += counts[size_t(t)][size_t(p)];
    s << strprintf("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>", left - 6,
                   top + t * cell + cell / 2 + 4, html_escape(grade_name(t)).c_str());
    s << strprintf("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%s</text>",
                   left + t * cell + cell / 2, top - 6, html_escape(grade_name(t)).c_str());
    for (int p = 0; p < n; ++p) {
      const int64_t c = counts[size_t(t)][size_t(p)];
      const double share = row > 0 ? double(c) / double(row) : 0;
      // White -> dark blue by the share of the truth row; text flips to white on dark cells.
      const int r = int(std::lround(255 - share * (255 - 8))), g = int(std::lround(255 - share * (255 - 48))),
                b = int(std::lround(255 - share * (255 - 107)));
      s << strprintf(
               "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#%02x%02x%02x\" stroke=\"#ccc\"/>",
               left + p * cell, top + t * cell, cell, cell, r, g, b)
        << strprintf("<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" fill=\"%s\">%lld</text>\n",
                     left + p * cell + cell / 2, top + t * cell + cell / 2 + 4, share > 0.5 ? "#fff" : "#000",
                     static_cast<long long>(c));
    }
  }
  s << strprintf(
      "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">rows: truth; colour: share of the "
      "row</text>\n",
      left + n * cell / 2, H - 8);
  s << "</svg>\n";
  return s.str();
}

namespace {

std::string value_cell(double v, double chance) {
  return "<td>" + num(v) + " <span class=\"chance\">(" + num(chance) + ")</span></td>";
}

std::string jpeg_data_uri(const cv::Mat& rgb) {
  FUNDUS_CHECK(!rgb.empty() && rgb.type() == CV_8UC3, "report figure: expected an RGB CV_8UC3 image");
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  std::vector<uint8_t> buf;
  FUNDUS_CHECK(cv::imencode(".jpg", bgr, buf, {cv::IMWRITE_JPEG_QUALITY, 85}), "report figure: JPEG encoding failed");
  return "data:image/jpeg;base64," +
         base64_encode(std::string_view(reinterpret_cast<const char*>(buf.data()), buf.size()));
}

}  // namespace

std::string render_html_report(const HtmlReportInput& in) {
  FUNDUS_CHECK(in.report != nullptr, "render_html_report: no report");
  const RetrievalReport& r = *in.report;
  std::ostringstream s;
  s << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" << html_escape(in.title)
    << "</title>\n<style>\n"
       "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}\n"
       "table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px "
       "8px;text-align:right}\n"
       "th:first-child,td:first-child{text-align:left}.chance{color:#888;font-size:85%}\n"
       "figure{margin:12px 0}figcaption{color:#555;font-size:90%}pre{background:#f6f6f6;padding:8px;overflow:auto}\n"
       ".note{color:#555;font-size:90%}img{max-width:100%}\n"
       ".warning{border:2px solid #b35900;background:#fff4e5;color:#5c2e00;padding:8px 12px;border-radius:6px}\n"
       "</style>\n</head>\n<body>\n";
  s << "<h1>" << html_escape(in.title) << "</h1>\n";
  if (!in.subtitle.empty()) s << "<p>" << html_escape(in.subtitle) << "</p>\n";
  if (!in.generated_at.empty()) s << "<p class=\"note\">Generated " << html_escape(in.generated_at) << "</p>\n";
  for (const auto& w : in.warnings)
    s << "<p class=\"warning\"><strong>Warning:</strong> " << html_escape(w) << "</p>\n";
  s << "<p>" << r.queries << " queries against " << r.gallery
    << " gallery items; relevance: " << relevance_rule_name(r.options.relevance) << "; same-patient gallery items "
    << (r.options.exclude_same_patient ? "excluded" : "included") << ". Evaluated " << r.queries_evaluated
    << " queries (" << r.queries_without_candidates << " left out: every gallery item excluded; "
    << r.queries_without_relevant << " without any relevant gallery item).</p>\n"
    << "<p class=\"note\">Each value is followed by its chance floor in brackets: the expected value when the "
       "eligible gallery is ranked at random (exact), so a model that learned nothing scores the bracketed "
       "number.</p>\n";

  // Headline table: groups x a few metrics.
  std::vector<std::string> head;
  for (int k : r.options.ks) head.push_back("P@" + std::to_string(k));
  for (const std::string& m : leakage_metrics(r))
    if (std::find(head.begin(), head.end(), m) == head.end()) head.push_back(m);
  for (const char* m : {"MRR", "kNN-acc"}) head.push_back(m);
  s << "<h2>Summary</h2>\n<table>\n<tr><th>group</th><th>queries</th>";
  for (const std::string& m : head) s << "<th>" << html_escape(m) << "</th>";
  s << "</tr>\n";
  for (const GroupSummary& g : r.groups) {
    if (g.grade >= 0 && g.queries == 0) continue;
    s << "<tr><td>" << html_escape(g.name) << "</td><td>" << g.queries << "</td>";
    for (const std::string& m : head) {
      size_t i = metric_index(r, m);
      s << (i < r.metrics.size() ? value_cell(g.values[i], g.chance[i]) : "<td>–</td>");
    }
    s << "</tr>\n";
  }
  s << "</table>\n";

  s << "<h2>Precision at k per grade</h2>\n<figure>\n"
    << svg_precision_curves(r)
    << "<figcaption>P@k (the authors' mHR@k) per query grade; dashed: that grade's chance floor.</figcaption>\n"
       "</figure>\n";

  s << "<h2>k-NN grade estimate</h2>\n<p>Top-" << r.options.knn_k << " similarity-weighted vote: accuracy "
    << num(r.knn_accuracy) << " (chance " << num(r.chance_knn_accuracy) << "), quadratic weighted kappa "
    << num(r.knn_qwk) << " (chance " << num(r.chance_knn_qwk) << ").</p>\n<figure>\n"
    << svg_confusion_matrix(r.confusion) << "</figure>\n";

  if (!in.leakage.empty()) {
    s << "<h2>Leakage effect</h2>\n<p class=\"note\">The same queries with the query patient's other images "
         "(fellow eye, repeat visits) included in or excluded from the gallery. A large difference means that "
         "image-level splits overstate retrieval quality.</p>\n<table>\n<tr><th>group</th><th>metric</th>"
         "<th>same patient included</th><th>excluded</th><th>difference</th></tr>\n";
    for (const LeakageRow& l : in.leakage)
      s << "<tr><td>" << html_escape(l.group) << "</td><td>" << html_escape(l.metric) << "</td><td>" << num(l.included)
        << "</td><td>" << num(l.excluded) << "</td><td>"
        << (std::isfinite(l.delta()) ? strprintf("%+.3f", l.delta()) : "–") << "</td></tr>\n";
    s << "</table>\n";
  }

  s << "<h2>All metrics</h2>\n<details><summary>metric x group table</summary>\n<table>\n<tr><th>metric</th>";
  std::vector<const GroupSummary*> shown;
  for (const GroupSummary& g : r.groups)
    if (g.grade < 0 || g.queries > 0) shown.push_back(&g);
  for (const GroupSummary* g : shown) s << "<th>" << html_escape(g->name) << "</th>";
  s << "</tr>\n";
  for (size_t i = 0; i < r.metrics.size(); ++i) {
    s << "<tr><td>" << html_escape(r.metrics[i]) << "</td>";
    for (const GroupSummary* g : shown) s << value_cell(g->values[i], g->chance[i]);
    s << "</tr>\n";
  }
  s << "</table>\n</details>\n";

  if (!in.figures.empty()) {
    s << "<h2>Example queries</h2>\n";
    for (const ReportFigure& f : in.figures)
      s << "<figure><img alt=\"" << html_escape(f.caption) << "\" src=\"" << jpeg_data_uri(f.image) << "\"><figcaption>"
        << html_escape(f.caption) << "</figcaption></figure>\n";
  }
  s << "<h2>Configuration</h2>\n<pre>" << html_escape(in.config.dump(2)) << "</pre>\n";
  s << "<p class=\"note\">Research tool, not a diagnostic device.</p>\n</body>\n</html>\n";
  return s.str();
}

}  // namespace fundus

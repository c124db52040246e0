// The self-contained HTML evaluation report (`fundus eval --out DIR` writes DIR/report.html) and the
// "leakage effect" comparison of an evaluation with and without same-patient gallery items.
//
// The HTML has no external assets: plots are inline SVG generated here (P@k curves per grade with
// their chance floors, the k-NN confusion-matrix heat map), pictures are base64 JPEG data URIs. It
// contains no http(s) URL at all (inline SVG in HTML5 needs no xmlns), so it opens offline and leaks
// nothing when mailed around.
//
// Torch-free, pure functions (thread-safe). Throws fundus::Error for inconsistent inputs (two reports
// over different metrics, a null report).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <opencv2/core.hpp>

#include "fundus/core/json.h"
#include "fundus/eval/retrieval_eval.h"

namespace fundus {

/// Colour of a DR grade (RGB), shared by the plots here and the contact sheets: 0 green, 1 olive,
/// 2 amber, 3 orange-red, 4 crimson; any other value (unknown grade) grey.
std::array<uint8_t, 3> grade_color(int grade);
std::string grade_color_hex(int grade);  // "#1a9850"

/// One headline metric of the same evaluation with same-patient gallery items included and excluded.
struct LeakageRow {
  std::string group;   // "micro" or "macro"
  std::string metric;  // e.g. "P@10"
  double included = 0, excluded = 0;
  double delta() const { return included - excluded; }  // how much fellow-eye leakage inflates the value
};

/// The leakage rows for `metrics` (those missing from the reports are skipped) and the groups micro
/// and macro. `a` and `b` must differ in exclude_same_patient (either order) and have the same metrics.
std::vector<LeakageRow> leakage_effect(const RetrievalReport& a, const RetrievalReport& b,
                                       const std::vector<std::string>& metrics);
/// The "P@10, mAP@10, MAP@R" headline metrics of a report, with P@10/mAP@10 replaced by the cut-off
/// nearest to 10 when 10 is not among its ks.
std::vector<std::string> leakage_metrics(const RetrievalReport& report);
std::string leakage_markdown(const std::vector<LeakageRow>& rows);
Json leakage_json(const std::vector<LeakageRow>& rows);

/// A picture for the report (embedded as a base64 JPEG).
struct ReportFigure {
  std::string caption;
  cv::Mat image;  // RGB CV_8UC3
};

struct HtmlReportInput {
  std::string title = "Fundus retrieval evaluation";
  std::string subtitle;                     // e.g. model and data paths
  const RetrievalReport* report = nullptr;  // required
  std::vector<LeakageRow> leakage;          // shown when non-empty
  std::vector<ReportFigure> figures;        // e.g. query contact sheets
  Json config = Json::object();             // resolved options, shown verbatim
  std::string generated_at;                 // shown in the header ("" = not shown)
  std::vector<std::string> warnings;        // shown in a box above the numbers (e.g. collapsed descriptors)
};

std::string render_html_report(const HtmlReportInput& input);

/// `<svg ...>` plot of P@k against k (log axis) per grade with queries, micro and macro; each grade's
/// chance floor dashed in its colour. Throws when the report has no P@k metric.
std::string svg_precision_curves(const RetrievalReport& report);
/// `<svg ...>` heat map of counts[truth][predicted], colour = share of the truth row, counts printed.
std::string svg_confusion_matrix(const ConfusionMatrix& counts);

std::string base64_encode(std::string_view bytes);
std::string html_escape(std::string_view text);

}  // namespace fundus

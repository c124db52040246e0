#include "fundus/retrieval/query_report.h"

#include <sstream>

#include "fundus/core/error.h"
#include "fundus/core/strings.h"

namespace fundus {

namespace {

std::string grade_label(int grade) {
  return grade >= 0 && grade < kNumGrades ? std::to_string(grade) + " " + grade_name(grade) : "-";
}

}  // namespace

Json query_result_to_json(const QueryResult& r) {
  Json hits = Json::array();
  for (const SearchHit& h : r.hits)
    hits.push_back({{"rank", h.rank},
                    {"id", h.info.id},
                    {"external_id", h.info.external_id},
                    {"grade", h.info.grade},
                    {"grade_name", grade_name(h.info.grade)},
                    {"similarity", h.similarity},
                    {"patient", h.info.patient},
                    {"eye", h.info.eye},
                    {"split", h.info.split},
                    {"image_path", h.info.image_path},
                    {"meta", h.info.meta}});
  Json votes = Json::object();
  for (int g = 0; g < kNumGrades; ++g) votes[grade_name(g)] = r.estimate.votes[size_t(g)];
  Json estimate = {{"grade", r.estimate.grade},
                   {"grade_name", r.estimate.grade >= 0 ? Json(grade_name(r.estimate.grade)) : Json(nullptr)},
                   {"confidence", r.estimate.confidence},
                   {"votes", votes},
                   {"withheld", r.estimate.withheld},
                   {"withheld_reason", r.estimate.withheld_reason}};
  return Json{
      {"hits", hits}, {"estimate", estimate}, {"warnings", warnings_to_json(r.warnings)}, {"timing_ms", r.timing_ms}};
}

std::string format_query_result(const QueryResult& r) {
  std::ostringstream s;
  if (r.hits.empty()) {
    s << "no matching cases\n";
    return s.str();
  }
  s << strprintf("%4s  %-22s %-12s %10s  %-14s %-3s  %s\n", "rank", "id", "grade", "similarity", "patient", "eye",
                 "path");
  for (const SearchHit& h : r.hits)
    s << strprintf("%4d  %-22s %-12s %10.4f  %-14s %-3s  %s\n", h.rank, h.info.external_id.c_str(),
                   grade_label(h.info.grade).c_str(), double(h.similarity), h.info.patient.c_str(), h.info.eye.c_str(),
                   h.info.image_path.c_str());
  for (const QueryWarning& w : r.warnings) s << "WARNING (" << w.code << "): " << w.message << "\n";
  if (r.estimate.withheld) {
    s << "grade estimate: withheld (" << r.estimate.withheld_reason << ")\n";
    return s.str();
  }
  s << "grade estimate: " << grade_label(r.estimate.grade) << strprintf(", confidence %.2f", r.estimate.confidence)
    << " (similarity-weighted vote of the top " << r.hits.size() << "; votes:";
  for (int g = 0; g < kNumGrades; ++g) s << strprintf(" %s %.2f", grade_name(g), r.estimate.votes[size_t(g)]);
  s << ")\n";
  return s.str();
}

cv::Mat render_query_sheet(const QueryResult& r, const PreprocessOptions& pre, const ContactSheetOptions& options) {
  FUNDUS_CHECK(!r.preprocessed.empty(), "query sheet: the result has no preprocessed query image");
  SheetTile query{r.preprocessed, "query",
                  r.estimate.grade >= 0 ? std::string("estimate: ") + grade_name(r.estimate.grade)
                  : r.estimate.withheld ? std::string("estimate withheld")
                                        : std::string("no estimate"),
                  -1};
  std::vector<SheetTile> tiles;
  for (const SearchHit& h : r.hits) {
    SheetTile t;
    t.title = "#" + std::to_string(h.rank) + " " + grade_name(h.info.grade);
    t.subtitle = strprintf("%.4f ", double(h.similarity)) + h.info.external_id;
    t.grade = h.info.grade;
    try {
      t.image = preprocess_fundus_file(h.info.image_path, pre).image;
    } catch (const Error&) {
      t.image = cv::Mat::zeros(pre.size, pre.size, CV_8UC3);  // the case's file moved or was deleted
      t.subtitle = "image missing: " + h.info.external_id;
    }
    tiles.push_back(std::move(t));
  }
  return render_contact_sheet(query, tiles, options);
}

}  // namespace fundus

#include "fundus/store/store_report.h"

#include <sstream>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/strings.h"

namespace fundus {

namespace {
std::string percent(int64_t n, int64_t total) {
  return total ? strprintf("%.1f%%", 100.0 * double(n) / double(total)) : "-";
}

// The model's health record (eval/descriptor_health.h JSON), null when none is current; a damaged
// record is reported as such rather than failing the whole report.
Json health_json(const StoreStats& stats, int64_t model_id) {
  auto it = stats.health_per_model.find(model_id);
  if (it == stats.health_per_model.end()) return nullptr;
  std::string problem;
  std::optional<Json> j = try_parse_json(it->second, problem);
  return j ? *j : Json{{"status", "unreadable record"}};
}

// "ok (mean cosine 0.43)", "collapsed (mean cosine 1.00)" or "-" for the text table.
std::string health_cell(const Json& h) {
  if (h.is_null()) return "-";
  std::string status = h.value("status", std::string("?"));
  if (h.contains("mean_cosine") && h["mean_cosine"].is_number())
    status += strprintf(" (mean cosine %.2f)", h["mean_cosine"].get<double>());
  return status;
}
}  // namespace

Json store_stats_to_json(const StoreStats& stats, const std::vector<ModelInfo>& models) {
  Json j;
  j["cases"] = stats.cases;
  j["patients"] = stats.patients;
  Json grades = Json::object();
  for (int g = 0; g < kNumGrades; ++g) grades[std::to_string(g)] = stats.per_grade[g];
  j["grades"] = grades;
  Json splits = Json::object();
  for (auto& [name, n] : stats.per_split) splits[name.empty() ? "(none)" : name] = n;
  j["splits"] = splits;
  j["models"] = Json::array();
  for (auto& m : models) {
    auto it = stats.embeddings_per_model.find(m.id);
    j["models"].push_back({{"id", m.id},
                           {"name", m.name},
                           {"descriptor_dim", m.descriptor_dim},
                           {"checkpoint_hash", m.checkpoint_hash},
                           {"embeddings", it == stats.embeddings_per_model.end() ? 0 : it->second},
                           {"embeddings_version", m.embeddings_version},
                           {"health", health_json(stats, m.id)}});
  }
  return j;
}

std::string format_store_stats(const StoreStats& stats, const std::vector<ModelInfo>& models) {
  std::ostringstream out;
  out << stats.cases << " cases, " << stats.patients << " patients, " << models.size() << " models\n\n";
  out << strprintf("%-10s %8s %7s\n", "grade", "cases", "%");
  for (int g = 0; g < kNumGrades; ++g)
    out << strprintf("%-10s %8lld %7s\n", (std::to_string(g) + " " + grade_name(g)).c_str(),
                     (long long)stats.per_grade[g], percent(stats.per_grade[g], stats.cases).c_str());
  out << strprintf("\n%-10s %8s %7s\n", "split", "cases", "%");
  for (auto& [name, n] : stats.per_split)
    out << strprintf("%-10s %8lld %7s\n", name.empty() ? "(none)" : name.c_str(), (long long)n,
                     percent(n, stats.cases).c_str());
  if (!models.empty()) {
    out << "\nmodel  name                  dim  embedded  checkpoint    descriptors\n";
    for (auto& m : models) {
      auto it = stats.embeddings_per_model.find(m.id);
      long long n = it == stats.embeddings_per_model.end() ? 0 : (long long)it->second;
      out << strprintf("%5lld  %-20s %5d %5lld/%lld  %.12s  %s\n", (long long)m.id, m.name.c_str(), m.descriptor_dim, n,
                       (long long)stats.cases, m.checkpoint_hash.c_str(),
                       health_cell(health_json(stats, m.id)).c_str());
    }
  }
  return out.str();
}

std::vector<std::string> export_store(const CaseStore& store, const std::string& dir, int64_t model_id) {
  make_dirs(dir);
  std::vector<std::string> written = {join_path(dir, "cases.csv")};
  store.export_cases_csv(written[0]);
  std::vector<int64_t> models;
  if (model_id >= 0) {
    FUNDUS_CHECK(store.get_model(model_id), store.path() << ": no model with id " << model_id);
    models.push_back(model_id);
  } else {
    for (auto& m : store.list_models()) models.push_back(m.id);
  }
  for (int64_t id : models) {
    std::string stem = join_path(dir, "embeddings_model" + std::to_string(id));
    store.export_embeddings(id, stem + ".npy", stem + "_ids.csv");
    written.push_back(stem + ".npy");
    written.push_back(stem + "_ids.csv");
  }
  return written;
}

}  // namespace fundus

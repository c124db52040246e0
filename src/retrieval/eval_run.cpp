#include "fundus/retrieval/eval_run.h"

#include <ctime>
#include <unordered_map>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/log.h"
#include "fundus/core/strings.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/preprocess_cache.h"
#include "fundus/eval/descriptor_health.h"
#include "fundus/eval/postprocess.h"
#include "fundus/infer/embed.h"
#include "fundus/retrieval/contact_sheet.h"
#include "fundus/retrieval/model_runner.h"

namespace fundus {

Json EvalRunOptions::to_json() const {
  return Json{{"data", data},
              {"queries", queries},
              {"gallery", gallery},
              {"out_dir", out_dir},
              {"cache_dir", cache_dir},
              {"exclude_same_patient", exclude_same_patient},
              {"relevance", relevance},
              {"ks", ks},
              {"knn_k", knn_k},
              {"batch_size", batch_size},
              {"example_queries", example_queries},
              {"example_k", example_k},
              {"postprocess", postprocess}};
}

namespace {

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

RelevanceRule relevance_from(const std::string& name) {
  if (name == "grade") return RelevanceRule::same_grade;
  return parse_relevance_rule(name);  // same_grade | referable; throws naming the valid values
}

EvalSet make_set(const Dataset& ds, const std::vector<float>& vectors, int64_t dim) {
  EvalSet s;
  s.vectors = {vectors.data(), int64_t(ds.size()), dim};
  for (const CaseRecord& r : ds.records) {
    s.keys.push_back({r.id, r.patient});
    s.grades.push_back(r.grade);
  }
  return s;
}

// Contact sheets of a few queries (the first query of each grade, then further ones) and their top hits.
std::vector<ReportFigure> example_sheets(const EvalRunResult& r, const EvalSet& q, const EvalSet& g,
                                         const EvalRunOptions& o, const PreprocessOptions& pre) {
  std::vector<int64_t> rows;
  for (int grade = 0; grade < kNumGrades && int(rows.size()) < o.example_queries; ++grade)
    for (int64_t i = 0; i < int64_t(q.grades.size()); ++i)
      if (q.grades[size_t(i)] == grade && r.report.per_query[size_t(i)].eligible > 0) {
        rows.push_back(i);
        break;
      }
  if (rows.empty()) return {};
  std::vector<float> selected;
  std::vector<CaseKey> keys;
  for (int64_t i : rows) {
    selected.insert(selected.end(), q.vectors.row(i), q.vectors.row(i) + q.vectors.dim);
    keys.push_back(q.keys[size_t(i)]);
  }
  RankingOptions ro;
  ro.k_max = o.example_k;
  ro.exclude_same_patient = o.exclude_same_patient;
  Ranking ranking = rank_queries({selected.data(), int64_t(rows.size()), q.vectors.dim}, keys, g.vectors, g.keys, ro);

  std::unique_ptr<PreprocessCache> cache;
  if (!o.cache_dir.empty()) cache = std::make_unique<PreprocessCache>(o.cache_dir, pre);
  auto load = [&](const std::string& path) {
    return cache ? cache->load(path) : preprocess_fundus_file(path, pre).image;
  };
  std::vector<ReportFigure> figures;
  for (size_t j = 0; j < rows.size(); ++j) {
    const CaseRecord& qr = r.queries.records[size_t(rows[j])];
    SheetTile query{load(qr.image_path), "query: " + std::string(grade_name(qr.grade)), qr.id, qr.grade};
    std::vector<SheetTile> hits;
    for (int64_t c = 0; c < ranking.k; ++c) {
      const int64_t gi = ranking.index[size_t(int64_t(j) * ranking.k + c)];
      if (gi < 0) break;
      const CaseRecord& gr = r.gallery.records[size_t(gi)];
      hits.push_back({load(gr.image_path), "#" + std::to_string(c + 1) + " " + grade_name(gr.grade),
                      strprintf("%.4f ", ranking.score[size_t(int64_t(j) * ranking.k + c)]) + gr.id, gr.grade});
    }
    ContactSheetOptions so;
    so.thumb = 140;
    so.columns = int(hits.size()) + 1;
    figures.push_back({"Query " + qr.id + " (" + grade_name(qr.grade) + ") and its top " + std::to_string(hits.size()) +
                           "; frame colour = grade, number = cosine similarity",
                       render_contact_sheet(query, hits, so)});
  }
  return figures;
}

}  // namespace

EvalRunResult run_evaluation(ModelRunner& model, const EvalRunOptions& o) {
  LoadResult loaded = load_dataset(o.data);
  FUNDUS_CHECK(loaded.problems.empty(), o.data << ": " << loaded.problems.size() << " bad rows; fix them first:\n"
                                               << format_problems(loaded.problems, 5));
  EvalRunResult r;
  r.queries = loaded.dataset.subset(o.queries);
  r.gallery = loaded.dataset.subset(o.gallery);
  FUNDUS_CHECK(!r.queries.records.empty(), o.data << ": no query records in split(s) '" << o.queries << "'");
  FUNDUS_CHECK(!r.gallery.records.empty(), o.data << ": no gallery records in split(s) '" << o.gallery << "'");

  // Embed every distinct record once (queries and gallery may share splits).
  Dataset all;
  all.source = loaded.dataset.source;
  std::unordered_map<std::string, int64_t> row_of;
  for (const Dataset* part : {&r.queries, &r.gallery})
    for (const CaseRecord& rec : part->records)
      if (row_of.emplace(rec.id, int64_t(all.records.size())).second) all.records.push_back(rec);
  EmbedOptions eo;
  eo.batch_size = o.batch_size;
  eo.workers = o.workers;
  eo.cache_dir = o.cache_dir;
  eo.progress = o.progress;
  Embeddings emb = embed_dataset(model.net(), model.preprocess(), all, eo);
  r.dim = emb.dim;
  auto gather = [&](const Dataset& part, std::vector<float>& out) {
    for (const CaseRecord& rec : part.records) {
      const float* row = emb.row(row_of.at(rec.id));
      out.insert(out.end(), row, row + emb.dim);
    }
  };
  gather(r.queries, r.query_vectors);
  gather(r.gallery, r.gallery_vectors);
  // Health of the raw descriptors: a collapsed model must not be reported as a set of numbers only.
  DescriptorHealth gh = assess_descriptors(r.gallery_vectors.data(), int64_t(r.gallery.size()), r.dim);
  DescriptorHealth qh = assess_descriptors(r.query_vectors.data(), int64_t(r.queries.size()), r.dim);
  r.health = {{"gallery", gh.to_json()}, {"queries", qh.to_json()}};
  for (const auto& [side, h] : {std::pair<const char*, const DescriptorHealth*>{"gallery", &gh}, {"query", &qh}})
    if (h->flagged()) {
      r.warnings.push_back(std::string(side) + " descriptors are " + h->status + " (" + h->summary() +
                           "): " + h->advice());
      FUNDUS_WARN("eval: " << r.warnings.back());
    }
  PostprocessSpec post = parse_postprocess(o.postprocess);
  if (!post.is_identity()) {
    std::vector<CaseKey> qk, gk;
    for (const auto& rec : r.queries.records) qk.push_back({rec.id, rec.patient});
    for (const auto& rec : r.gallery.records) gk.push_back({rec.id, rec.patient});
    apply_postprocess(post, r.query_vectors, qk, r.gallery_vectors, gk, r.dim, o.exclude_same_patient, o.threads);
  }

  EvalSet qs = make_set(r.queries, r.query_vectors, r.dim), gs = make_set(r.gallery, r.gallery_vectors, r.dim);
  EvalOptions eval;
  eval.ks = o.ks;
  eval.knn_k = o.knn_k;
  eval.relevance = relevance_from(o.relevance);
  eval.exclude_same_patient = o.exclude_same_patient;
  eval.threads = o.threads;
  eval.progress = o.progress;
  r.report = evaluate_retrieval(qs, gs, eval);
  eval.exclude_same_patient = !o.exclude_same_patient;
  eval.progress = false;
  r.other = evaluate_retrieval(qs, gs, eval);
  r.leakage = leakage_effect(r.report, r.other, leakage_metrics(r.report));

  Json model_json = {{"name", model.display_name()},
                     {"checkpoint", model.checkpoint_path()},
                     {"checkpoint_sha256", model.checkpoint_sha256()},
                     {"descriptor_dim", model.descriptor_dim()}};
  r.config = {{"eval", o.to_json()}, {"model", model_json}, {"run_config", model.config().to_json()}};
  r.json = r.report.to_json();
  r.json["leakage"] = leakage_json(r.leakage);
  r.json["other_setting"] = r.other.to_json();
  r.json["model"] = model_json;
  r.json["data"] = o.data;
  r.json["query_splits"] = o.queries;
  r.json["gallery_splits"] = o.gallery;
  r.json["postprocess"] = post.to_string();
  r.json["descriptor_health"] = r.health;
  r.json["warnings"] = r.warnings;
  std::string warning_text;
  for (const auto& w : r.warnings) warning_text += "**Warning:** " + w + "\n\n";
  r.markdown = "# Retrieval evaluation: " + model.display_name() + "\n\nData: " + o.data + " (queries: " + o.queries +
               ", gallery: " + o.gallery + "; post-processing: " + post.to_string() + ")\n\n" + warning_text +
               "Descriptor health: gallery " + gh.summary() + "; queries " + qh.summary() + "\n\n" +
               r.report.to_markdown() + "\n" + leakage_markdown(r.leakage);
  if (o.out_dir.empty()) return r;

  make_dirs(o.out_dir);
  auto out = [&](const std::string& name) {
    r.files.push_back(join_path(o.out_dir, name));
    return r.files.back();
  };
  save_json_file(out("eval.json"), r.json);
  write_file_atomic(out("eval.csv"), r.report.to_csv());
  write_file_atomic(out("eval.md"), r.markdown);
  write_file_atomic(out("per_query.csv"), r.report.per_query_csv(qs.keys));
  save_json_file(out("config.json"), r.config);
  HtmlReportInput html;
  html.title = "Retrieval evaluation: " + model.display_name();
  html.subtitle = "Data " + o.data + "; queries: " + o.queries + "; gallery: " + o.gallery;
  html.report = &r.report;
  html.leakage = r.leakage;
  html.figures = example_sheets(r, qs, gs, o, model.preprocess());
  html.config = r.config;
  html.generated_at = utc_now();
  html.warnings = r.warnings;
  write_file_atomic(out("report.html"), render_html_report(html));
  return r;
}

}  // namespace fundus

#include "fundus/eval/retrieval_eval.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"
#include "fundus/core/progress.h"
#include "fundus/core/rng.h"
#include "fundus/core/strings.h"
#include "fundus/eval/chance.h"

namespace fundus {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const char* kKnnMetric = "kNN-acc";

void check_set(const EvalSet& set, const char* what) {
  FUNDUS_CHECK(set.keys.size() == size_t(set.vectors.rows) && set.grades.size() == size_t(set.vectors.rows),
               what << ": " << set.vectors.rows << " vectors, " << set.keys.size() << " keys and " << set.grades.size()
                    << " grades differ in count");
  for (size_t i = 0; i < set.grades.size(); ++i)
    FUNDUS_CHECK(set.grades[i] >= 0 && set.grades[i] < kNumGrades,
                 what << " row " << i << " (" << set.keys[i].id << "): grade " << set.grades[i] << " outside 0-4");
}

/// The grade an equal-weight vote of `count` random eligible neighbours picks (ties: lower grade);
/// Floyd's sampling of distinct positions.
int random_vote(const std::vector<int>& pool_grades, int64_t count, Rng& rng, std::vector<int64_t>& chosen) {
  const int64_t n = int64_t(pool_grades.size());
  int votes[kNumGrades] = {0, 0, 0, 0, 0};
  if (count >= n) {
    for (int g : pool_grades) ++votes[g];
  } else {
    chosen.clear();
    for (int64_t j = n - count; j < n; ++j) {
      int64_t t = int64_t(rng.below(uint64_t(j + 1)));
      chosen.push_back(std::find(chosen.begin(), chosen.end(), t) == chosen.end() ? t : j);
    }
    for (int64_t i : chosen) ++votes[pool_grades[size_t(i)]];
  }
  return int(std::max_element(votes, votes + kNumGrades) - votes);
}

/// Buffers reused across the queries of one worker.
struct QueryScratch {
  std::vector<uint8_t> rel;
  std::vector<double> gain;
  std::vector<int> pool_grades, top_grades;
  std::vector<float> top_scores;
  std::vector<int64_t> chosen;
};

/// Metrics, chance floors and k-NN vote of query `q` from its ranked eligible items (non-empty);
/// writes the grade of each Monte Carlo round's random vote to chance_votes[0 .. chance_rounds).
void evaluate_query(const std::vector<ScoredItem>& items, const std::vector<int>& gallery_grades,
                    const EvalOptions& options, int64_t q, QueryOutcome& out, QueryScratch& s, int8_t* chance_votes) {
  s.rel.clear();
  s.gain.clear();
  s.pool_grades.clear();
  for (const ScoredItem& it : items) {
    int g = gallery_grades[size_t(it.index)];
    s.pool_grades.push_back(g);
    s.rel.push_back(is_relevant(out.grade, g, options.relevance) ? 1 : 0);
    s.gain.push_back(graded_gain(out.grade, g));
  }
  out.relevant = std::count(s.rel.begin(), s.rel.end(), 1);
  out.values = ranking_metrics(s.rel, s.gain, options.ks);
  out.chance = chance_metrics(s.rel, s.gain, options.ks);

  const size_t top = std::min(size_t(options.knn_k), items.size());
  s.top_grades.assign(s.pool_grades.begin(), s.pool_grades.begin() + long(top));
  s.top_scores.clear();
  for (size_t i = 0; i < top; ++i) s.top_scores.push_back(items[i].score);
  out.vote = knn_vote(s.top_grades, s.top_scores);
  out.values.push_back(out.vote.grade == out.grade ? 1.0 : 0.0);

  Rng rng(Rng::derive(options.seed, uint64_t(q)));  // per query: independent of the thread split
  int correct = 0;
  for (int m = 0; m < options.chance_rounds; ++m) {
    int g = random_vote(s.pool_grades, options.knn_k, rng, s.chosen);
    chance_votes[m] = int8_t(g);
    correct += g == out.grade;
  }
  out.chance.push_back(double(correct) / double(options.chance_rounds));
}

std::string cell(double v) { return std::isnan(v) ? "–" : strprintf("%.3f", v); }
Json json_number(double v) { return std::isnan(v) ? Json(nullptr) : Json(v); }
std::string csv_number(double v) { return std::isnan(v) ? "" : strprintf("%.6g", v); }

}  // namespace

EvalOptions EvalOptions::from_json(const Json& eval, const std::string& context) {
  FUNDUS_CHECK(eval.is_object(), context << ": expected an object");
  check_known_keys(eval, {"ks", "relevance", "exclude_same_patient", "knn_k", "chance_rounds", "seed"}, context);
  EvalOptions o;
  o.ks = json_value<std::vector<int>>(eval, "ks", o.ks, context);
  o.relevance =
      parse_relevance_rule(json_value<std::string>(eval, "relevance", relevance_rule_name(o.relevance), context));
  o.exclude_same_patient = json_value<bool>(eval, "exclude_same_patient", o.exclude_same_patient, context);
  o.knn_k = json_value<int>(eval, "knn_k", o.knn_k, context);
  o.chance_rounds = json_value<int>(eval, "chance_rounds", o.chance_rounds, context);
  o.seed = json_value<uint64_t>(eval, "seed", o.seed, context);
  check_cutoffs(o.ks);
  FUNDUS_CHECK(o.knn_k >= 1, context << ".knn_k: " << o.knn_k << " must be >= 1");
  FUNDUS_CHECK(o.chance_rounds >= 1, context << ".chance_rounds: " << o.chance_rounds << " must be >= 1");
  return o;
}

Json EvalOptions::to_json() const {
  return Json{{"ks", ks},
              {"relevance", relevance_rule_name(relevance)},
              {"exclude_same_patient", exclude_same_patient},
              {"knn_k", knn_k},
              {"chance_rounds", chance_rounds},
              {"seed", seed}};
}

RetrievalReport evaluate_retrieval(const EvalSet& queries, const EvalSet& gallery, const EvalOptions& options) {
  check_cutoffs(options.ks);
  FUNDUS_CHECK(options.knn_k >= 1, "eval: knn_k must be >= 1 (got " << options.knn_k << ")");
  FUNDUS_CHECK(options.chance_rounds >= 1, "eval: chance_rounds must be >= 1 (got " << options.chance_rounds << ")");
  check_set(queries, "queries");
  check_set(gallery, "gallery");
  FUNDUS_CHECK(queries.vectors.dim == gallery.vectors.dim,
               "queries have dimension " << queries.vectors.dim << " but the gallery has " << gallery.vectors.dim);
  check_finite_rows(queries.vectors, "queries");
  ExactRanker ranker(gallery.vectors, gallery.keys, options.exclude_same_patient);

  RetrievalReport rep;
  rep.options = options;
  rep.metrics = ranking_metric_names(options.ks);
  rep.metrics.push_back(kKnnMetric);
  rep.queries = queries.vectors.rows;
  rep.gallery = gallery.vectors.rows;
  const size_t nq = size_t(rep.queries), rounds = size_t(options.chance_rounds);
  rep.per_query.resize(nq);
  std::vector<int8_t> chance_votes(nq * rounds, -1);

  std::unique_ptr<Progress> progress;
  if (options.progress) progress = std::make_unique<Progress>("evaluate", rep.queries, "queries");
  const int threads = options.threads > 0 ? options.threads : available_cores();
  const int64_t blocks = (rep.queries + kQueryBlock - 1) / kQueryBlock;
  parallel_for(blocks, threads, [&](int64_t block_begin, int64_t block_end) {
    std::vector<float> scores(size_t(kQueryBlock * rep.gallery));
    std::vector<ScoredItem> items;
    QueryScratch scratch;
    for (int64_t q = block_begin * kQueryBlock; q < std::min(rep.queries, block_end * kQueryBlock); ++q) {
      if (q % kQueryBlock == 0)
        ranker.score_block(queries.vectors.row(q), std::min(kQueryBlock, rep.queries - q), scores.data());
      QueryOutcome& out = rep.per_query[size_t(q)];
      out.row = q;
      out.grade = queries.grades[size_t(q)];
      out.eligible =
          ranker.rank_scores(scores.data() + (q % kQueryBlock) * rep.gallery, queries.keys[size_t(q)], 0, items);
      if (progress) progress->advance();
      if (out.eligible == 0) continue;
      evaluate_query(items, gallery.grades, options, q, out, scratch, &chance_votes[size_t(q) * rounds]);
    }
  });
  if (progress) progress->finish();

  // Aggregation: per grade, micro, macro.
  const size_t nm = rep.metrics.size();
  std::vector<GroupSummary> grades(kNumGrades);
  GroupSummary micro{"micro", -1, 0, std::vector<double>(nm, 0.0), std::vector<double>(nm, 0.0)};
  for (int g = 0; g < kNumGrades; ++g)
    grades[size_t(g)] = {grade_name(g), g, 0, std::vector<double>(nm, 0.0), std::vector<double>(nm, 0.0)};
  rep.confusion = make_confusion(kNumGrades);
  for (const QueryOutcome& out : rep.per_query) {
    if (out.eligible == 0) {
      ++rep.queries_without_candidates;
      continue;
    }
    ++rep.queries_evaluated;
    rep.queries_without_relevant += out.relevant == 0;
    ++rep.confusion[size_t(out.grade)][size_t(out.vote.grade)];
    for (GroupSummary* grp : {&grades[size_t(out.grade)], &micro}) {
      ++grp->queries;
      for (size_t i = 0; i < nm; ++i) {
        grp->values[i] += out.values[i];
        grp->chance[i] += out.chance[i];
      }
    }
  }
  GroupSummary macro{"macro", -1, 0, std::vector<double>(nm, 0.0), std::vector<double>(nm, 0.0)};
  int grades_present = 0;
  for (GroupSummary* grp : {&grades[0], &grades[1], &grades[2], &grades[3], &grades[4], &micro}) {
    for (size_t i = 0; i < nm; ++i) {
      grp->values[i] = grp->queries ? grp->values[i] / double(grp->queries) : kNaN;
      grp->chance[i] = grp->queries ? grp->chance[i] / double(grp->queries) : kNaN;
    }
    if (grp->grade >= 0 && grp->queries > 0) {
      ++grades_present;
      macro.queries += grp->queries;
      for (size_t i = 0; i < nm; ++i) {
        macro.values[i] += grp->values[i];
        macro.chance[i] += grp->chance[i];
      }
    }
  }
  for (size_t i = 0; i < nm; ++i) {
    macro.values[i] = grades_present ? macro.values[i] / grades_present : kNaN;
    macro.chance[i] = grades_present ? macro.chance[i] / grades_present : kNaN;
  }
  rep.groups = grades;
  rep.groups.push_back(micro);
  rep.groups.push_back(macro);

  rep.knn_accuracy = micro.values[nm - 1];
  rep.chance_knn_accuracy = micro.chance[nm - 1];
  rep.knn_qwk = quadratic_weighted_kappa(rep.confusion);
  // Chance kappa: the mean over Monte Carlo rounds of the kappa of random-neighbour votes.
  double qwk_sum = 0;
  int qwk_rounds = 0;
  for (size_t m = 0; m < rounds; ++m) {
    auto confusion = make_confusion(kNumGrades);
    for (size_t q = 0; q < nq; ++q)
      if (chance_votes[q * rounds + m] >= 0)
        ++confusion[size_t(rep.per_query[q].grade)][size_t(chance_votes[q * rounds + m])];
    double k = quadratic_weighted_kappa(confusion);
    if (!std::isnan(k)) {
      qwk_sum += k;
      ++qwk_rounds;
    }
  }
  rep.chance_knn_qwk = qwk_rounds ? qwk_sum / qwk_rounds : kNaN;
  return rep;
}

const GroupSummary& RetrievalReport::group(const std::string& name) const {
  for (const GroupSummary& g : groups)
    if (g.name == name) return g;
  FUNDUS_THROW("report has no group '" << name << "'");
}

namespace {
size_t metric_index(const std::vector<std::string>& metrics, const std::string& name) {
  auto it = std::find(metrics.begin(), metrics.end(), name);
  FUNDUS_CHECK(it != metrics.end(), "report has no metric '" << name << "'");
  return size_t(it - metrics.begin());
}
const char* chance_method(const std::string& metric) { return metric == kKnnMetric ? "monte_carlo" : "exact"; }
}  // namespace

double RetrievalReport::value(const std::string& grp, const std::string& metric) const {
  return group(grp).values[metric_index(metrics, metric)];
}

double RetrievalReport::chance(const std::string& grp, const std::string& metric) const {
  return group(grp).chance[metric_index(metrics, metric)];
}

Json RetrievalReport::to_json() const {
  Json groups_json = Json::array();
  for (const GroupSummary& g : groups) {
    Json values = Json::object(), chance = Json::object();
    for (size_t i = 0; i < metrics.size(); ++i) {
      values[metrics[i]] = json_number(g.values[i]);
      chance[metrics[i]] = json_number(g.chance[i]);
    }
    groups_json.push_back({{"name", g.name},
                           {"grade", g.grade >= 0 ? Json(g.grade) : Json(nullptr)},
                           {"queries", g.queries},
                           {"values", values},
                           {"chance", chance}});
  }
  return Json{{"options", options.to_json()},
              {"queries", queries},
              {"gallery", gallery},
              {"queries_evaluated", queries_evaluated},
              {"queries_without_relevant", queries_without_relevant},
              {"queries_without_candidates", queries_without_candidates},
              {"metrics", metrics},
              {"chance_method", {{"ranking", "exact"}, {kKnnMetric, "monte_carlo"}}},
              {"groups", groups_json},
              {"knn",
               {{"k", options.knn_k},
                {"accuracy", json_number(knn_accuracy)},
                {"qwk", json_number(knn_qwk)},
                {"chance_accuracy", json_number(chance_knn_accuracy)},
                {"chance_qwk", json_number(chance_knn_qwk)},
                {"chance_rounds", options.chance_rounds},
                {"confusion", confusion}}}};
}

std::string RetrievalReport::to_csv() const {
  std::ostringstream s;
  s << "group,grade,queries,metric,value,chance,chance_method\n";
  for (const GroupSummary& g : groups)
    for (size_t i = 0; i < metrics.size(); ++i)
      s << g.name << "," << (g.grade >= 0 ? std::to_string(g.grade) : "") << "," << g.queries << "," << metrics[i]
        << "," << csv_number(g.values[i]) << "," << csv_number(g.chance[i]) << "," << chance_method(metrics[i]) << "\n";
  s << "micro,," << queries_evaluated << ",kNN-QWK," << csv_number(knn_qwk) << "," << csv_number(chance_knn_qwk)
    << ",monte_carlo\n";
  return s.str();
}

std::string RetrievalReport::per_query_csv(const std::vector<CaseKey>& query_keys) const {
  FUNDUS_CHECK(query_keys.size() == per_query.size(),
               "per_query_csv: " << query_keys.size() << " keys for " << per_query.size() << " queries");
  std::ostringstream s;
  s << "row,id,grade,eligible,relevant,predicted,confidence";
  for (const std::string& m : metrics) s << "," << m;
  s << "\n";
  for (const QueryOutcome& q : per_query) {
    s << q.row << "," << query_keys[size_t(q.row)].id << "," << q.grade << "," << q.eligible << "," << q.relevant << ","
      << q.vote.grade << "," << csv_number(q.vote.confidence);
    for (size_t i = 0; i < metrics.size(); ++i) s << "," << (q.values.empty() ? "" : csv_number(q.values[i]));
    s << "\n";
  }
  return s.str();
}

std::string RetrievalReport::to_markdown() const {
  std::ostringstream s;
  s << "Retrieval: " << queries << " queries against " << gallery << " gallery items; relevance "
    << relevance_rule_name(options.relevance) << "; same-patient items "
    << (options.exclude_same_patient ? "excluded" : "included") << ".\n"
    << "Each cell: measured (chance floor = expected value under a random ranking of the same gallery).\n\n";
  std::vector<const GroupSummary*> shown;
  for (const GroupSummary& g : groups)
    if (g.grade < 0 || g.queries > 0) shown.push_back(&g);
  s << "| metric |";
  for (const GroupSummary* g : shown)
    s << " " << g->name << (g->name == "macro" ? "" : " (n=" + std::to_string(g->queries) + ")") << " |";
  s << "\n|---|";
  for (size_t i = 0; i < shown.size(); ++i) s << "---|";
  s << "\n";
  for (size_t i = 0; i < metrics.size(); ++i) {
    s << "| " << metrics[i] << (metrics[i] == kKnnMetric ? " (k=" + std::to_string(options.knn_k) + ")" : "") << " |";
    for (const GroupSummary* g : shown) s << " " << cell(g->values[i]) << " (" << cell(g->chance[i]) << ") |";
    s << "\n";
  }
  s << "\nk-NN grade estimate (top " << options.knn_k << ", similarity-weighted vote): accuracy " << cell(knn_accuracy)
    << " (chance " << cell(chance_knn_accuracy) << "), quadratic weighted kappa " << cell(knn_qwk) << " (chance "
    << cell(chance_knn_qwk) << ").\n\n";
  s << "| truth \\ predicted |";
  for (int g = 0; g < kNumGrades; ++g) s << " " << grade_name(g) << " |";
  s << "\n|---|";
  for (int g = 0; g < kNumGrades; ++g) s << "---:|";
  s << "\n";
  for (int t = 0; t < kNumGrades; ++t) {
    s << "| " << grade_name(t) << " |";
    for (int p = 0; p < kNumGrades; ++p) s << " " << confusion[size_t(t)][size_t(p)] << " |";
    s << "\n";
  }
  s << "\nQueries evaluated: " << queries_evaluated
    << "; with no relevant gallery item (AP, MAP@R, MRR = 0): " << queries_without_relevant
    << "; left out because every gallery item was excluded: " << queries_without_candidates << ".\n"
    << "P@k is the authors' mHR@k; mAP@k is the authors' (1/k) sum rel_r P@r; AP@k divides by min(k, R); "
       "Recall@k = any relevant item in the top k; NDCG gain = 1 - |grade difference| / 4. "
       "Chance floors are exact, except kNN-acc and kappa (Monte Carlo, "
    << options.chance_rounds << " rounds of random neighbours). Macro = mean of the per-grade values.\n";
  return s.str();
}

}  // namespace fundus

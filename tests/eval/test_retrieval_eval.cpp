// evaluate_retrieval: hand-computed aggregation, exclusion, report formats, and a cross-check of
// every ranking metric, the k-NN vote and QWK against a numpy implementation on random data.
#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>

#include "fundus/core/error.h"
#include "fundus/core/json.h"
#include "fundus/core/rng.h"
#include "fundus/core/strings.h"
#include "fundus/eval/report.h"
#include "fundus/eval/retrieval_eval.h"
#include "test_support.h"

namespace fundus {
namespace {

// Five cases, leave-one-out (queries = gallery):
//   a = (1, 0) grade 0, patient P;  b = (.8, .6) grade 0;  c = (0, 1) grade 1, patient P;
//   d = (-1, 0) grade 1;            e = (.6, -.8) grade 0.
// Rankings (ties by lower row): a: b .8, e .6, c 0, d -1      rel 1,1,0,0  (R = 2)
//                               b: a .8, c .6, e 0, d -.8     rel 1,0,1,0  (R = 2)
//                               c: b .6, a 0, d 0, e -.8      rel 0,0,1,0  (R = 1; a before d: tie)
//                               d: c 0, e -.6, b -.8, a -1    rel 1,0,0,0  (R = 1)
//                               e: a .6, b 0, d -.6, c -.8    rel 1,1,0,0  (R = 2)
struct Toy {
  std::vector<float> v = {1, 0, .8f, .6f, 0, 1, -1, 0, .6f, -.8f};
  EvalSet set() const {
    return {{v.data(), 5, 2}, {{"a", "P"}, {"b", ""}, {"c", "P"}, {"d", ""}, {"e", ""}}, {0, 0, 1, 1, 0}};
  }
};

EvalOptions toy_options() {
  EvalOptions o;
  o.ks = {1, 2};
  o.knn_k = 1;
  o.chance_rounds = 4000;
  o.progress = false;
  return o;
}

TEST(RetrievalEval, HandComputedAggregation) {
  Toy toy;
  auto rep = evaluate_retrieval(toy.set(), toy.set(), toy_options());
  // P@1 per query 1,1,0,1,1; MRR 1,1,1/3,1,1; MAP@R 1, 1/2, 0, 1, 1.
  EXPECT_DOUBLE_EQ(rep.value("No DR", "P@1"), 1.0);
  EXPECT_DOUBLE_EQ(rep.value("Mild", "P@1"), 0.5);
  EXPECT_DOUBLE_EQ(rep.value("micro", "P@1"), 0.8);
  EXPECT_DOUBLE_EQ(rep.value("macro", "P@1"), 0.75);
  EXPECT_DOUBLE_EQ(rep.value("Mild", "MRR"), (1.0 / 3 + 1) / 2);
  EXPECT_DOUBLE_EQ(rep.value("micro", "MRR"), 13.0 / 15);
  EXPECT_DOUBLE_EQ(rep.value("macro", "MRR"), 5.0 / 6);
  EXPECT_DOUBLE_EQ(rep.value("No DR", "MAP@R"), 2.5 / 3);
  EXPECT_DOUBLE_EQ(rep.value("micro", "MAP@R"), 0.7);
  EXPECT_DOUBLE_EQ(rep.value("macro", "MAP@R"), (2.5 / 3 + 0.5) / 2);
  // P@2: a 1, b .5, c 0, d .5, e 1.
  EXPECT_DOUBLE_EQ(rep.value("micro", "P@2"), 3.0 / 5);
  EXPECT_TRUE(std::isnan(rep.value("PDR", "P@1")));  // no PDR query
  EXPECT_EQ(rep.group("PDR").queries, 0);
  EXPECT_EQ(rep.group("macro").queries, 5);
  // Chance P@1 = R/n per query: .5, .5, .25, .25, .5.
  EXPECT_DOUBLE_EQ(rep.chance("No DR", "P@1"), 0.5);
  EXPECT_DOUBLE_EQ(rep.chance("micro", "P@1"), 0.4);
  EXPECT_DOUBLE_EQ(rep.chance("macro", "P@1"), 0.375);
  // k-NN with k = 1: the first neighbour's grade: a->0, b->0, c->0 (wrong), d->1, e->0.
  EXPECT_DOUBLE_EQ(rep.knn_accuracy, 0.8);
  EXPECT_DOUBLE_EQ(rep.value("macro", "kNN-acc"), 0.75);
  EXPECT_EQ(rep.confusion[0][0], 3);
  EXPECT_EQ(rep.confusion[1][0], 1);
  EXPECT_EQ(rep.confusion[1][1], 1);
  // Kappa on [[3,0],[1,1]] (2 used classes of 5): weights (i-j)^2/16; O off-diagonal (1,0) = 1 -> 1/16.
  // Rows 3,2; columns 4,1; E(0,1) = 3*1/5, E(1,0) = 2*4/5 -> sum w E = (0.6 + 1.6)/16; kappa = 1 - 1/2.2.
  EXPECT_NEAR(rep.knn_qwk, 1 - 1 / 2.2, 1e-12);
  // The random-neighbour vote with k = 1 is correct with probability R/n: Monte Carlo near 0.4.
  EXPECT_NEAR(rep.chance_knn_accuracy, 0.4, 0.02);
  // Leave-one-out removes the query from its own pool, so a random neighbour agrees less than
  // independent raters would: the chance kappa on this tiny gallery is clearly negative.
  EXPECT_LT(rep.chance_knn_qwk, -0.1);
  EXPECT_GT(rep.chance_knn_qwk, -1.0);
  EXPECT_EQ(rep.chance_knn_qwk, evaluate_retrieval(toy.set(), toy.set(), toy_options()).chance_knn_qwk);
  EXPECT_EQ(rep.queries_evaluated, 5);
  EXPECT_EQ(rep.queries_without_relevant, 0);
}

TEST(RetrievalEval, SamePatientExclusionAndEmptyCandidates) {
  Toy toy;
  auto o = toy_options();
  o.exclude_same_patient = true;
  auto rep = evaluate_retrieval(toy.set(), toy.set(), o);
  // c loses a (same patient P): b .6, d 0, e -.8 -> first hit at rank 2.
  EXPECT_DOUBLE_EQ(rep.per_query[2].values[ranking_metric_index("MRR", o.ks)], 0.5);
  EXPECT_EQ(rep.per_query[2].eligible, 3);
  EXPECT_EQ(rep.per_query[0].eligible, 3);
  EXPECT_EQ(rep.per_query[1].eligible, 4);

  // A gallery of the query's own patient only: the query has no candidate and is left out.
  std::vector<float> g = {1, 0, 0, 1};
  EvalSet gallery{{g.data(), 2, 2}, {{"x1", "X"}, {"y1", "Y"}}, {0, 1}};
  std::vector<float> q = {1, 0, 0, 1};
  EvalSet queries{{q.data(), 2, 2}, {{"x2", "X"}, {"z", "Z"}}, {0, 2}};
  auto rep2 = evaluate_retrieval(queries, gallery, o);
  EXPECT_EQ(rep2.queries_without_candidates, 0);  // x2 still has y1
  EvalSet lonely{{g.data(), 1, 2}, {{"x1", "X"}}, {0}};
  auto rep3 = evaluate_retrieval(queries, lonely, o);
  EXPECT_EQ(rep3.queries_without_candidates, 1);
  EXPECT_EQ(rep3.queries_evaluated, 1);
  EXPECT_EQ(rep3.queries_without_relevant, 1);  // z (grade 2) against one grade-0 item
  EXPECT_DOUBLE_EQ(rep3.value("micro", "MAP@R"), 0.0);
  EXPECT_DOUBLE_EQ(rep3.value("micro", "P@1"), 0.0);
}

TEST(RetrievalEval, ReportFormats) {
  Toy toy;
  auto rep = evaluate_retrieval(toy.set(), toy.set(), toy_options());
  Json j = rep.to_json();
  EXPECT_EQ(j["queries"], 5);
  EXPECT_EQ(j["groups"].size(), 7u);
  EXPECT_EQ(j["groups"][5]["name"], "micro");
  EXPECT_DOUBLE_EQ(j["groups"][5]["values"]["P@1"].get<double>(), 0.8);
  EXPECT_DOUBLE_EQ(j["groups"][5]["chance"]["P@1"].get<double>(), 0.4);
  EXPECT_TRUE(j["groups"][4]["values"]["P@1"].is_null());  // PDR: no queries
  EXPECT_EQ(j["knn"]["confusion"][1][0], 1);
  EXPECT_EQ(j["options"]["ks"], Json::array({1, 2}));
  EXPECT_EQ(EvalOptions::from_json(j["options"]).to_json(), j["options"]);

  auto csv = rep.to_csv();
  auto lines = split(trim(csv), '\n');
  EXPECT_EQ(lines.size(), 1 + 7 * rep.metrics.size() + 1);
  EXPECT_EQ(lines[0], "group,grade,queries,metric,value,chance,chance_method");
  EXPECT_NE(csv.find("\nmicro,,5,P@1,0.8,0.4,exact\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\nMild,1,2,kNN-acc,0.5,"), std::string::npos) << csv;

  auto md = rep.to_markdown();
  EXPECT_NE(md.find("| metric | No DR (n=3) | Mild (n=2) | micro (n=5) | macro |"), std::string::npos) << md;
  EXPECT_NE(md.find("| P@1 | 1.000 (0.500) | 0.500 (0.250) | 0.800 (0.400) | 0.750 (0.375) |"), std::string::npos)
      << md;
  EXPECT_EQ(md.find("PDR (n="), std::string::npos);  // grades without queries get no column
  EXPECT_NE(md.find("left out because every gallery item was excluded: 0"), std::string::npos);

  auto per = rep.per_query_csv(toy.set().keys);
  EXPECT_NE(per.find("\n2,c,1,4,1,0,"), std::string::npos) << per;  // c: predicted grade 0

  EXPECT_THROW(rep.value("micro", "P@3"), Error);
  EXPECT_THROW(rep.group("all"), Error);
  EXPECT_THROW(EvalOptions::from_json(Json::parse(R"({"k": [1]})")), std::exception);
  EXPECT_THROW(EvalOptions::from_json(Json::parse(R"({"ks": [5, 1]})")), Error);
}

// Every metric (each row of the ranking table at every cut-off, then kNN-acc) reaches every writer
// with its value: JSON, CSV, per-query CSV, Markdown and the HTML report.
TEST(RetrievalEval, EveryMetricAppearsInEveryOutputWithItsValue) {
  Toy toy;
  const auto rep = evaluate_retrieval(toy.set(), toy.set(), toy_options());
  std::vector<std::string> expected = ranking_metric_names(rep.options.ks);
  expected.push_back("kNN-acc");
  ASSERT_EQ(rep.metrics, expected);
  ASSERT_EQ(rep.metrics.size(), 13u);  // 5 families x 2 cut-offs, MAP@R, MRR, kNN-acc

  const Json j = rep.to_json();
  const std::string csv = rep.to_csv(), md = rep.to_markdown(), per = rep.per_query_csv(toy.set().keys);
  HtmlReportInput in;
  in.report = &rep;
  const std::string html = render_html_report(in);
  EXPECT_EQ(j["metrics"], Json(rep.metrics));
  EXPECT_EQ(split(per, '\n').front(), "row,id,grade,eligible,relevant,predicted,confidence," + join(rep.metrics, ","));
  const std::vector<std::string> md_lines = split(md, '\n');
  for (size_t i = 0; i < rep.metrics.size(); ++i) {
    const std::string& m = rep.metrics[i];
    const double v = rep.value("micro", m), c = rep.chance("micro", m);
    EXPECT_EQ(rep.group("micro").values[i], v) << m;
    EXPECT_DOUBLE_EQ(j["groups"][5]["values"][m].get<double>(), v) << m;
    EXPECT_DOUBLE_EQ(j["groups"][5]["chance"][m].get<double>(), c) << m;
    EXPECT_NE(csv.find(strprintf("\nmicro,,5,%s,%.6g,%.6g,", m.c_str(), v, c)), std::string::npos) << m << "\n" << csv;
    // Markdown: the metric's row has the micro cell (third column: No DR, Mild, micro, macro).
    auto row = std::find_if(md_lines.begin(), md_lines.end(), [&](const std::string& l) {
      return starts_with(l, "| " + m + " |") || starts_with(l, "| " + m + " (k=");
    });
    ASSERT_NE(row, md_lines.end()) << m << "\n" << md;
    EXPECT_EQ(split(*row, '|')[4], strprintf(" %.3f (%.3f) ", v, c)) << m << ": " << *row;
    EXPECT_NE(html.find(strprintf("<tr><td>%s</td><td>%.3f <span class=\"chance\">(%.3f)</span></td>", m.c_str(),
                                  rep.value("No DR", m), rep.chance("No DR", m))),
              std::string::npos)
        << m;
  }
  // Per query: c (row 2) has MRR 1/3 (first hit at rank 3).
  EXPECT_NE(per.find("\n2,c,1,4,1,0,"), std::string::npos);
  EXPECT_DOUBLE_EQ(rep.per_query[2].values[ranking_metric_index("MRR", rep.options.ks)], 1.0 / 3);
}

TEST(RetrievalEval, RejectsBadInput) {
  Toy toy;
  auto bad = toy.set();
  bad.grades[3] = 5;
  EXPECT_THROW(evaluate_retrieval(bad, toy.set(), toy_options()), Error);
  auto short_keys = toy.set();
  short_keys.keys.pop_back();
  EXPECT_THROW(evaluate_retrieval(toy.set(), short_keys, toy_options()), Error);
  auto o = toy_options();
  o.knn_k = 0;
  EXPECT_THROW(evaluate_retrieval(toy.set(), toy.set(), o), Error);
}

TEST(RetrievalEval, DeterministicAcrossThreadCounts) {
  Rng rng(3);
  const int64_t n = 53, dim = 5;  // not a multiple of the query block
  std::vector<float> v(size_t(n * dim));
  for (auto& x : v) x = float(rng.normal());
  EvalSet set{{v.data(), n, dim}, {}, {}};
  for (int64_t i = 0; i < n; ++i) {
    set.keys.push_back({"c" + std::to_string(i), "p" + std::to_string(i / 2)});
    set.grades.push_back(int(rng.below(5)));
  }
  auto o = toy_options();
  o.ks = {1, 5, 10};
  o.knn_k = 5;
  o.chance_rounds = 50;
  o.exclude_same_patient = true;
  o.threads = 1;
  auto one = evaluate_retrieval(set, set, o);
  o.threads = 3;
  auto three = evaluate_retrieval(set, set, o);
  EXPECT_EQ(one.to_json().dump(), three.to_json().dump());
  EXPECT_EQ(one.per_query_csv(set.keys), three.per_query_csv(set.keys));
  // Leave-one-out over patient pairs: every query loses itself and its fellow eye.
  for (auto& q : one.per_query) EXPECT_EQ(q.eligible, q.row == n - 1 ? n - 1 : n - 2);
}

// ---- cross-check against numpy ----------------------------------------------------------------

const char* kNumpyReference = R"PY(
import json, sys
import numpy as np
spec = json.load(open(sys.argv[1]))
Q = np.array(spec['q'], dtype=np.float32).astype(np.float64)
G = np.array(spec['g'], dtype=np.float32).astype(np.float64)
qg = np.array(spec['q_grades']); gg = np.array(spec['g_grades'])
key = lambda i, p: 'p:' + p if p else 'id:' + i
qpat = [key(i, p) for i, p in zip(spec['q_ids'], spec['q_pat'])]
gpat = [key(i, p) for i, p in zip(spec['g_ids'], spec['g_pat'])]
ks, K = spec['ks'], spec['knn_k']
out = {}
for name, excl, rule in spec['configs']:
    rows = []
    for i in range(len(Q)):
        s = G @ Q[i]
        ok = [j for j in range(len(G)) if spec['g_ids'][j] != spec['q_ids'][i] and not (excl and gpat[j] == qpat[i])]
        order = sorted(ok, key=lambda j: (-s[j], j))
        if not order:
            rows.append(None); continue
        g = gg[order]
        rel = (g == qg[i]) if rule == 'same_grade' else ((g >= 2) == (qg[i] >= 2))
        rel = rel.astype(float); gain = 1 - np.abs(g - qg[i]) / 4
        n, R = len(rel), rel.sum()
        hits = np.cumsum(rel); prec = hits / np.arange(1, n + 1)
        m = {}
        for k in ks:
            kk = min(k, n)
            m['P@%d' % k] = hits[kk - 1] / k
            m['mAP@%d' % k] = (rel[:kk] * prec[:kk]).sum() / k
            m['AP@%d' % k] = (rel[:kk] * prec[:kk]).sum() / min(k, R) if R else 0.0
            m['Recall@%d' % k] = float(hits[kk - 1] > 0)
            disc = 1 / np.log2(np.arange(2, kk + 2))
            idcg = (np.sort(gain)[::-1][:kk] * disc).sum()
            m['NDCG@%d' % k] = (gain[:kk] * disc).sum() / idcg if idcg > 0 else 0.0
        Ri = int(R)
        m['MAP@R'] = (rel[:Ri] * prec[:Ri]).sum() / R if R else 0.0
        m['MRR'] = 1 / (np.argmax(rel) + 1) if R else 0.0
        top = order[:K]
        votes = np.bincount(gg[top], weights=np.maximum(s[top], 0) + 1e-6, minlength=5)
        pred = int(np.argmax(votes))
        m['kNN-acc'] = float(pred == qg[i])
        rows.append((int(qg[i]), m, pred, votes[pred] / votes.sum()))
    groups = {}
    names = list(rows[next(i for i, r in enumerate(rows) if r)][1].keys())
    valid = [r for r in rows if r]
    per_grade = []
    for gr, gname in enumerate(['No DR', 'Mild', 'Moderate', 'Severe', 'PDR']):
        sel = [r for r in valid if r[0] == gr]
        if sel:
            groups[gname] = {n_: float(np.mean([r[1][n_] for r in sel])) for n_ in names}
            per_grade.append(groups[gname])
    groups['micro'] = {n_: float(np.mean([r[1][n_] for r in valid])) for n_ in names}
    groups['macro'] = {n_: float(np.mean([pg[n_] for pg in per_grade])) for n_ in names}
    O = np.zeros((5, 5))
    for r in valid: O[r[0], r[2]] += 1
    W = (np.subtract.outer(np.arange(5), np.arange(5)) ** 2) / 16.0
    E = np.outer(O.sum(1), O.sum(0)) / O.sum()
    out[name] = {'groups': groups, 'qwk': 1 - (W * O).sum() / (W * E).sum(),
                 'votes': [[r[2], r[3]] if r else None for r in rows]}
print(json.dumps(out))
)PY";

TEST(RetrievalEval, MatchesNumpyReferenceOnRandomData) {
  FUNDUS_REQUIRE_PYTHON_ORACLE();
  Rng rng(99);
  const int64_t ng = 70, nq = 45, dim = 6;
  std::vector<float> g(size_t(ng * dim)), q(size_t(nq * dim));
  for (auto& x : g) x = float(rng.normal());
  for (int64_t j = 0; j < dim; ++j) g[size_t(9 * dim + j)] = g[size_t(4 * dim + j)];  // exact tie: rows 4, 9
  EvalSet gallery{{g.data(), ng, dim}, {}, {}};
  for (int64_t i = 0; i < ng; ++i) {
    gallery.keys.push_back({"g" + std::to_string(i), i % 5 == 0 ? "" : "p" + std::to_string(i / 2)});
    gallery.grades.push_back(int(rng.below(10) < 5 ? 0 : rng.below(5)));  // No DR-heavy mix
  }
  // Queries: the first 25 are gallery cases (leave-one-out); the rest are new cases, some of known patients.
  EvalSet queries{{q.data(), nq, dim}, {}, {}};
  for (int64_t i = 0; i < nq; ++i) {
    int64_t src = i < 25 ? i * 2 : int64_t(rng.below(uint64_t(ng)));
    for (int64_t j = 0; j < dim; ++j) q[size_t(i * dim + j)] = g[size_t(src * dim + j)] + float(0.3 * rng.normal());
    if (i < 25) {
      queries.keys.push_back(gallery.keys[size_t(src)]);
      queries.grades.push_back(gallery.grades[size_t(src)]);
    } else {
      queries.keys.push_back({"q" + std::to_string(i), i % 3 ? gallery.keys[size_t(src)].patient : ""});
      queries.grades.push_back(i % 4 ? gallery.grades[size_t(src)] : int(rng.below(5)));
    }
  }
  std::vector<int> ks = {1, 3, 5, 10, 100};  // 100 exceeds the gallery
  Json spec = {{"ks", ks}, {"knn_k", 7}, {"q_grades", queries.grades}, {"g_grades", gallery.grades}};
  for (auto* side : {&queries, &gallery}) {
    std::string p = side == &queries ? "q" : "g";
    Json ids = Json::array(), pats = Json::array();
    for (auto& k : side->keys) {
      ids.push_back(k.id);
      pats.push_back(k.patient);
    }
    spec[p + "_ids"] = ids;
    spec[p + "_pat"] = pats;
    Json rows = Json::array();
    for (int64_t i = 0; i < side->vectors.rows; ++i)
      rows.push_back(std::vector<float>(side->vectors.row(i), side->vectors.row(i) + dim));
    spec[p] = rows;
  }
  struct Config {
    const char* name;
    bool exclude;
    RelevanceRule rule;
  };
  std::vector<Config> configs = {{"plain", false, RelevanceRule::same_grade},
                                 {"patient", true, RelevanceRule::same_grade},
                                 {"referable", true, RelevanceRule::referable}};
  for (auto& c : configs) spec["configs"].push_back({c.name, c.exclude, relevance_rule_name(c.rule)});
  test::TempDir dir;
  save_json_file(dir.file("spec.json"), spec);
  auto result = test::run_python(kNumpyReference, dir.file("spec.json"));
  ASSERT_EQ(result.exit_code, 0);
  Json ref = Json::parse(result.output.substr(result.output.find('{')));

  for (auto& c : configs) {
    SCOPED_TRACE(c.name);
    EvalOptions o;
    o.ks = ks;
    o.knn_k = 7;
    o.exclude_same_patient = c.exclude;
    o.relevance = c.rule;
    o.chance_rounds = 10;
    o.progress = false;
    auto rep = evaluate_retrieval(queries, gallery, o);
    int compared = 0;
    for (auto& [group, values] : ref[c.name]["groups"].items())
      for (auto& [metric, v] : values.items()) {
        EXPECT_NEAR(rep.value(group, metric), v.get<double>(), 1e-9) << group << " " << metric;
        ++compared;
      }
    EXPECT_GE(compared, 5 * int(rep.metrics.size()));
    EXPECT_NEAR(rep.knn_qwk, ref[c.name]["qwk"].get<double>(), 1e-9);
    for (size_t i = 0; i < rep.per_query.size(); ++i) {
      const Json& vote = ref[c.name]["votes"][i];
      ASSERT_FALSE(vote.is_null());
      EXPECT_EQ(rep.per_query[i].vote.grade, vote[0].get<int>()) << "query " << i;
      EXPECT_NEAR(rep.per_query[i].vote.confidence, vote[1].get<double>(), 1e-5) << "query " << i;
    }
    // Not vacuous: the metrics differ from their chance floors and between configurations.
    EXPECT_GT(rep.value("micro", "P@1"), rep.chance("micro", "P@1"));
  }
}

}  // namespace
}  // namespace fundus

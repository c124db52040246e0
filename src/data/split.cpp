#include "fundus/data/split.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "fundus/core/error.h"
#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/core/rng.h"
#include "fundus/core/strings.h"
#include "fundus/data/dataset_io.h"

namespace fundus {

namespace {

const char* const kSplits[] = {"train", "val", "test"};
enum { kTrain = 0, kVal = 1, kTest = 2 };

// ceil(fraction * n) without floating-point surprises such as 0.2 * 100 = 20.000000000000004.
int64_t ceil_count(double fraction, int64_t n) { return int64_t(std::ceil(fraction * double(n) - 1e-9)); }

void check_options(const SplitOptions& o) {
  FUNDUS_CHECK(o.val_fraction >= 0 && o.val_fraction < 1, "--val: fraction " << o.val_fraction << " outside [0, 1)");
  FUNDUS_CHECK(o.test_fraction >= 0 && o.test_fraction < 1,
               "--test: fraction " << o.test_fraction << " outside [0, 1)");
  if (o.mode == SplitMode::patient)
    FUNDUS_CHECK(o.val_fraction + o.test_fraction < 1,
                 "--val + --test = " << o.val_fraction + o.test_fraction << " leaves nothing for train");
}

// Patient-disjoint, grade-stratified assignment to groups with the given target fractions: a
// patient's stratum is their worst grade; within a stratum patients (sorted by key, then shuffled
// with a per-stratum generator) go one by one to the group furthest below its target image count,
// ties to the group listed first in `tie_order`. Returns the group of every record.
std::vector<int> assign_patient_groups(const Dataset& d, const std::vector<double>& fractions,
                                       const std::vector<int>& tie_order, uint64_t seed) {
  // Patients with their images and worst grade; std::map keeps keys sorted, so row order is irrelevant.
  struct Patient {
    std::vector<size_t> images;
    int worst = 0;
  };
  std::map<std::string, Patient> patients;
  for (size_t i = 0; i < d.records.size(); ++i) {
    Patient& p = patients[d.records[i].patient_key()];
    p.images.push_back(i);
    p.worst = std::max(p.worst, d.records[i].grade);
  }
  std::vector<int> group(d.records.size(), -1);
  for (int g = 0; g < kNumGrades; ++g) {
    std::vector<const Patient*> stratum;
    int64_t images = 0;
    for (const auto& [key, p] : patients)
      if (p.worst == g) {
        stratum.push_back(&p);
        images += int64_t(p.images.size());
      }
    // One generator per stratum: adding patients of one grade leaves the other grades' split unchanged.
    Rng rng(Rng::derive(seed, uint64_t(g)));
    rng.shuffle(stratum);
    std::vector<double> assigned(fractions.size(), 0.0);
    auto deficit = [&](int s) { return fractions[size_t(s)] * double(images) - assigned[size_t(s)]; };
    for (const Patient* p : stratum) {
      int best = -1;
      for (int s : tie_order) {
        if (fractions[size_t(s)] <= 0) continue;
        if (best < 0 || deficit(s) > deficit(best)) best = s;
      }
      assigned[size_t(best)] += double(p->images.size());
      for (size_t i : p->images) group[i] = best;
    }
  }
  return group;
}

void assign_by_patient(Dataset& d, const SplitOptions& o) {
  std::vector<int> group = assign_patient_groups(
      d, {1 - o.val_fraction - o.test_fraction, o.val_fraction, o.test_fraction}, {kTest, kVal, kTrain}, o.seed);
  for (size_t i = 0; i < d.records.size(); ++i) d.records[i].split = kSplits[group[i]];
}

void assign_by_image(Dataset& d, const SplitOptions& o) {
  std::vector<size_t> order(d.records.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return d.records[a].id < d.records[b].id; });
  Rng first(o.seed);
  first.shuffle(order);
  const int64_t n_test = ceil_count(o.test_fraction, int64_t(order.size()));
  std::vector<size_t> rest(order.begin() + n_test, order.end());
  for (auto it = order.begin(); it != order.begin() + n_test; ++it) d.records[*it].split = "test";
  Rng second(o.seed2);
  second.shuffle(rest);
  const int64_t n_val = ceil_count(o.val_fraction, int64_t(rest.size()));
  for (size_t k = 0; k < rest.size(); ++k) d.records[rest[k]].split = int64_t(k) < n_val ? "val" : "train";
}

int split_index(const std::string& split) {
  for (int s = 0; s < 3; ++s)
    if (split == kSplits[s]) return s;
  return -1;
}

void check_splittable(const Dataset& dataset) {
  std::unordered_set<std::string> ids;
  for (const CaseRecord& r : dataset.records) {
    FUNDUS_CHECK(ids.insert(r.id).second,
                 dataset.source << ": duplicate id '" << r.id << "': ids must be unique to split");
    FUNDUS_CHECK(r.grade >= 0 && r.grade < kNumGrades, dataset.source << ": id '" << r.id << "' has grade " << r.grade);
  }
}

}  // namespace

std::vector<int> assign_folds(const Dataset& dataset, int folds, uint64_t seed) {
  check_splittable(dataset);
  std::set<std::string> patients;
  for (const CaseRecord& r : dataset.records) patients.insert(r.patient_key());
  FUNDUS_CHECK(folds >= 2 && folds <= int64_t(patients.size()),
               dataset.source << ": " << folds << " folds need 2 <= folds <= patients (" << patients.size() << ")");
  std::vector<int> order(static_cast<size_t>(folds));
  for (int k = 0; k < folds; ++k) order[size_t(k)] = k;
  return assign_patient_groups(dataset, std::vector<double>(size_t(folds), 1.0 / folds), order, seed);
}

const char* split_mode_name(SplitMode mode) { return mode == SplitMode::patient ? "patient" : "image"; }

SplitMode parse_split_mode(const std::string& name) {
  if (name == "patient") return SplitMode::patient;
  if (name == "image") return SplitMode::image;
  FUNDUS_THROW("unknown split mode '" << name << "' (use patient or image)");
}

Dataset split_dataset(const Dataset& dataset, const SplitOptions& options) {
  check_options(options);
  check_splittable(dataset);
  Dataset out = dataset;
  for (CaseRecord& r : out.records) r.split.clear();
  if (options.mode == SplitMode::patient) assign_by_patient(out, options);
  else assign_by_image(out, options);
  return out;
}

SplitSummary summarize_split(const Dataset& split, const SplitOptions& options) {
  SplitSummary s;
  s.options = options;
  SplitCounts* counts[3] = {&s.train, &s.val, &s.test};
  std::set<std::string> patients_of[3];
  std::unordered_map<std::string, std::set<int>> splits_of_patient;  // known patients only
  std::vector<std::string> lines;
  for (const CaseRecord& r : split.records) {
    int k = split_index(r.split);
    if (k < 0) continue;
    counts[k]->images += 1;
    if (r.grade >= 0 && r.grade < kNumGrades) counts[k]->grades[size_t(r.grade)] += 1;
    patients_of[k].insert(r.patient_key());
    if (!r.patient.empty()) splits_of_patient[r.patient].insert(k);
    else ++s.images_without_patient;
    lines.push_back(r.id + "," + r.split + "\n");
  }
  for (int k = 0; k < 3; ++k) counts[k]->patients = int64_t(patients_of[k].size());

  SplitLeakage& L = s.leakage;
  L.test_patients = s.test.patients;
  L.test_images = s.test.images;
  for (const auto& [patient, in] : splits_of_patient) {
    if (!in.count(kTest)) continue;
    L.test_patients_in_train += in.count(kTrain);
    L.test_patients_in_gallery += in.count(kTrain) || in.count(kVal);
  }
  for (const CaseRecord& r : split.records) {
    if (r.split != "test" || r.patient.empty()) continue;
    const std::set<int>& in = splits_of_patient[r.patient];
    L.test_images_patient_in_gallery += in.count(kTrain) || in.count(kVal);
  }

  std::sort(lines.begin(), lines.end());
  Sha256 sha;
  for (const std::string& line : lines) sha.update(line);
  s.assignment_sha256 = sha.hex_digest();
  return s;
}

void write_split(const std::string& dir, const Dataset& split, const SplitSummary& summary) {
  make_dirs(dir);
  write_manifest(join_path(dir, "manifest.csv"), split);
  for (const char* name : kSplits) write_manifest(join_path(dir, std::string(name) + ".csv"), split.subset(name));
  save_json_file(join_path(dir, "split.json"), split_summary_to_json(summary));
}

Json split_summary_to_json(const SplitSummary& s) {
  auto counts = [](const SplitCounts& c) {
    return Json{{"images", c.images}, {"patients", c.patients}, {"grades", c.grades}};
  };
  const SplitLeakage& L = s.leakage;
  return {{"options",
           {{"mode", split_mode_name(s.options.mode)},
            {"val_fraction", s.options.val_fraction},
            {"test_fraction", s.options.test_fraction},
            {"seed", s.options.seed},
            {"seed2", s.options.seed2}}},
          {"grade_names", {grade_name(0), grade_name(1), grade_name(2), grade_name(3), grade_name(4)}},
          {"splits", {{"train", counts(s.train)}, {"val", counts(s.val)}, {"test", counts(s.test)}}},
          {"leakage",
           {{"test_patients", L.test_patients},
            {"test_patients_in_train", L.test_patients_in_train},
            {"test_patients_in_gallery", L.test_patients_in_gallery},
            {"test_images", L.test_images},
            {"test_images_patient_in_gallery", L.test_images_patient_in_gallery}}},
          {"images_without_patient", s.images_without_patient},
          {"assignment_sha256", s.assignment_sha256}};
}

std::string format_split_summary(const SplitSummary& s) {
  const SplitCounts* counts[3] = {&s.train, &s.val, &s.test};
  PerGrade<int64_t> grade_total{};
  int64_t total = 0;
  for (const SplitCounts* c : counts) {
    total += c->images;
    for (int g = 0; g < kNumGrades; ++g) grade_total[size_t(g)] += c->grades[size_t(g)];
  }
  auto pct = [](int64_t part, int64_t whole) { return whole ? 100.0 * double(part) / double(whole) : 0.0; };
  std::string out = strprintf("%-6s %13s %9s", "split", "images", "patients");
  for (int g = 0; g < kNumGrades; ++g) out += strprintf(" %13s", grade_name(g));
  out += "\n";
  for (int k = 0; k < 3; ++k) {
    const SplitCounts& c = *counts[k];
    out += strprintf("%-6s %6lld (%3.0f%%) %9lld", kSplits[k], (long long)c.images, pct(c.images, total),
                     (long long)c.patients);
    for (int g = 0; g < kNumGrades; ++g)
      out += strprintf(" %6lld (%3.0f%%)", (long long)c.grades[size_t(g)],
                       pct(c.grades[size_t(g)], grade_total[size_t(g)]));
    out += "\n";
  }
  const SplitLeakage& L = s.leakage;
  out += strprintf(
      "leakage: %lld of %lld test patients have an image in train (%lld in train+val); "
      "%lld of %lld test images (%.1f%%) find their patient in train+val\n",
      (long long)L.test_patients_in_train, (long long)L.test_patients, (long long)L.test_patients_in_gallery,
      (long long)L.test_images_patient_in_gallery, (long long)L.test_images,
      pct(L.test_images_patient_in_gallery, L.test_images));
  if (s.images_without_patient > 0)
    out += strprintf(
        "note: %lld images have no patient id; each counts as its own patient, so eyes of one person "
        "may sit on both sides unseen\n",
        (long long)s.images_without_patient);
  out += "assignment sha256: " + s.assignment_sha256 + "\n";
  return out;
}

}  // namespace fundus

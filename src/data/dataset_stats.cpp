#include "fundus/data/dataset_stats.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <vector>

#include "fundus/core/concurrency.h"
#include "fundus/core/strings.h"
#include "fundus/data/image_io.h"

namespace fundus {

namespace {

// Header-only size: JPEG/PNG headers sit in the first 64 KB unless a large EXIF block precedes the
// frame header; then (and for TIFF/BMP) the whole file is read.
bool header_info(const std::string& path, ImageInfo& info) {
  try {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::string head(64 * 1024, '\0');
    in.read(head.data(), std::streamsize(head.size()));
    head.resize(size_t(in.gcount()));
    try {
      info = image_info_from_bytes(head, path);
      if (info.format == ImageFormat::jpeg || info.format == ImageFormat::png) return true;
    } catch (const std::exception&) {
      if (head.size() < 64 * 1024) return false;  // that was the whole file
    }
    info = read_image_info(path);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

SizeStats size_stats(std::vector<int> v) {
  SizeStats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.median = v[(v.size() - 1) / 2];
  s.max = v.back();
  return s;
}

}  // namespace

DatasetStats compute_dataset_stats(const Dataset& dataset, const StatsOptions& options) {
  DatasetStats st;
  st.images = int64_t(dataset.records.size());
  std::map<std::string, std::set<std::string>> eyes_of_patient;
  std::set<std::string> keys;
  for (const CaseRecord& r : dataset.records) {
    if (r.grade >= 0 && r.grade < kNumGrades) ++st.grades[size_t(r.grade)];
    keys.insert(r.patient_key());
    if (r.patient.empty()) ++st.images_without_patient;
    else if (!r.eye.empty()) eyes_of_patient[r.patient].insert(r.eye);
    if (r.eye == "L") ++st.left;
    else if (r.eye == "R") ++st.right;
    else ++st.eye_unknown;
    ++st.splits[r.split];
  }
  st.patients = int64_t(keys.size());
  for (const auto& [patient, eyes] : eyes_of_patient) st.patients_with_both_eyes += eyes.size() == 2;

  if (options.image_sizes && !dataset.records.empty()) {
    std::vector<ImageInfo> infos(dataset.records.size());
    std::vector<char> ok(dataset.records.size(), 0);
    int threads = options.threads > 0 ? options.threads : available_cores();
    parallel_for(int64_t(infos.size()), threads, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        ok[size_t(i)] = header_info(dataset.records[size_t(i)].image_path, infos[size_t(i)]);
    });
    std::vector<int> widths, heights;
    for (size_t i = 0; i < infos.size(); ++i) {
      if (!ok[i]) {
        ++st.unreadable;
        continue;
      }
      widths.push_back(infos[i].width);
      heights.push_back(infos[i].height);
      ++st.formats[image_format_name(infos[i].format)];
    }
    st.images_read = int64_t(widths.size());
    st.width = size_stats(widths);
    st.height = size_stats(heights);
  }
  return st;
}

DatasetStats compute_dataset_stats(const LoadResult& loaded, const StatsOptions& options) {
  DatasetStats st = compute_dataset_stats(loaded.dataset, options);
  st.left_out = loaded.problems;
  return st;
}

Json stats_to_json(const DatasetStats& st) {
  Json grades = Json::array();
  for (int g = 0; g < kNumGrades; ++g)
    grades.push_back({{"grade", g}, {"name", grade_name(g)}, {"images", st.grades[size_t(g)]}});
  Json splits = Json::object();
  for (const auto& [name, n] : st.splits) splits[name.empty() ? "none" : name] = n;
  auto size = [](const SizeStats& s) { return Json{{"min", s.min}, {"median", s.median}, {"max", s.max}}; };
  return {{"images", st.images},
          {"grades", grades},
          {"patients", st.patients},
          {"images_without_patient", st.images_without_patient},
          {"patients_with_both_eyes", st.patients_with_both_eyes},
          {"eyes", {{"L", st.left}, {"R", st.right}, {"unknown", st.eye_unknown}}},
          {"splits", splits},
          {"rows_left_out", st.left_out.size()},
          {"left_out", problems_to_json(st.left_out)},
          {"image_sizes",
           {{"images_read", st.images_read},
            {"unreadable", st.unreadable},
            {"width", size(st.width)},
            {"height", size(st.height)},
            {"formats", st.formats}}}};
}

std::string format_stats(const DatasetStats& st) {
  auto pct = [&](int64_t n) { return st.images ? 100.0 * double(n) / double(st.images) : 0.0; };
  std::string out = strprintf("%-5s %-9s %7s %7s\n", "grade", "name", "images", "share");
  for (int g = 0; g < kNumGrades; ++g)
    out += strprintf("%-5d %-9s %7lld %6.1f%%\n", g, grade_name(g), (long long)st.grades[size_t(g)],
                     pct(st.grades[size_t(g)]));
  out += strprintf("%-15s %7lld\n\n", "all", (long long)st.images);
  out += strprintf("patients: %lld (%lld with both eyes; %lld images without a patient id)\n", (long long)st.patients,
                   (long long)st.patients_with_both_eyes, (long long)st.images_without_patient);
  out += strprintf("eyes: L %lld, R %lld, unknown %lld\n", (long long)st.left, (long long)st.right,
                   (long long)st.eye_unknown);
  std::vector<std::string> splits;
  for (const auto& [name, n] : st.splits)
    splits.push_back(strprintf("%s %lld", name.empty() ? "none" : name.c_str(), (long long)n));
  out += "splits: " + join(splits, ", ") + "\n";
  if (st.images_read + st.unreadable > 0) {
    out += strprintf("image size (px): width %d / %d / %d, height %d / %d / %d (min / median / max of %lld images)\n",
                     st.width.min, st.width.median, st.width.max, st.height.min, st.height.median, st.height.max,
                     (long long)st.images_read);
    std::vector<std::string> formats;
    for (const auto& [name, n] : st.formats) formats.push_back(strprintf("%s %lld", name.c_str(), (long long)n));
    out += "formats: " + join(formats, ", ") + "\n";
    if (st.unreadable)
      out += strprintf("unreadable headers: %lld (run `fundus dataset validate`)\n", (long long)st.unreadable);
  }
  if (!st.left_out.empty())
    out +=
        strprintf("\n%zu row%s left out of these counts (fix %s; `fundus dataset validate` also checks the images):\n",
                  st.left_out.size(), st.left_out.size() == 1 ? "" : "s", st.left_out.size() == 1 ? "it" : "them") +
        format_problems(st.left_out, 20);
  return out;
}

}  // namespace fundus

// `fundus dataset validate|stats|split|import`: read any supported layout, report every problem,
// describe, split by patient, convert to our manifest (see fundus/data/{dataset_io,validate,split}.h).
#include <iostream>
#include <memory>

#include "commands.h"
#include "fundus/core/error.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/dataset_stats.h"
#include "fundus/data/split.h"
#include "fundus/data/validate.h"

namespace fundus::cli {

namespace {

// Options every dataset subcommand shares.
struct SourceOptions {
  std::string path;
  std::string format = "auto";
  ColumnNames columns;
  bool skip_bad = false;
  bool quick = false;
  bool json = false;
  int threads = 0;

  DatasetLoadOptions load() const { return {parse_dataset_format(format), columns}; }
  ValidateOptions validate() const { return {!quick, threads, !json}; }
};

void add_source_options(CLI::App* cmd, SourceOptions& o, bool with_quick) {
  cmd->add_option("path", o.path, "Labels CSV, manifest, or dataset folder")->required();
  cmd->add_option("--format", o.format, "auto|generic|eyepacs|aptos|idrid|folders|manifest")->capture_default_str();
  cmd->add_option("--image-col", o.columns.image, "Generic CSV: image column")->capture_default_str();
  cmd->add_option("--grade-col", o.columns.grade, "Generic CSV: grade column (0-4)")->capture_default_str();
  cmd->add_option("--patient-col", o.columns.patient, "Generic CSV: patient column (optional)")->capture_default_str();
  cmd->add_option("--eye-col", o.columns.eye, "Generic CSV: eye column L/R (optional)")->capture_default_str();
  cmd->add_flag("--skip-bad", o.skip_bad, "Leave out rows with problems (and print a summary) instead of failing");
  if (with_quick) cmd->add_flag("--quick", o.quick, "Only check that image files exist; do not decode them");
  cmd->add_flag("--json", o.json, "Print JSON instead of the readable report");
  add_threads_option(*cmd, o.threads);
}

// Validated dataset to work on; with --skip-bad the summary of what was left out goes to stderr.
Dataset usable_dataset(const SourceOptions& o) {
  ValidationResult v = validate_dataset(o.path, o.load(), o.validate());
  Dataset d = require_valid(v, o.skip_bad);
  if (!v.ok()) std::cerr << "skipped bad rows: " << validation_summary(v) << "\n";
  return d;
}

void add_validate(CLI::App& parent) {
  auto o = std::make_shared<SourceOptions>();
  CLI::App* cmd =
      parent.add_subcommand("validate", "Report every problem (file:line): grades, ids, missing or corrupt images");
  add_source_options(cmd, *o, true);
  cmd->callback([o] {
    ValidationResult v = validate_dataset(o->path, o->load(), o->validate());
    if (o->json) std::cout << validation_to_json(v).dump(2) << "\n";
    else std::cout << format_problems(v.problems) << validation_summary(v) << "\n";
    bool empty = v.dataset.records.empty();
    FUNDUS_CHECK(v.ok() || (o->skip_bad && !empty),
                 v.problems.size() << " problem" << (v.problems.size() == 1 ? "" : "s") << " in " << v.file
                                   << (empty ? "" : " (--skip-bad leaves those rows out)"));
  });
}

void add_stats(CLI::App& parent) {
  auto o = std::make_shared<SourceOptions>();
  auto no_sizes = std::make_shared<bool>(false);
  CLI::App* cmd = parent.add_subcommand("stats", "Grades, patients, eyes, splits, image sizes and formats");
  add_source_options(cmd, *o, false);
  cmd->add_flag("--no-sizes", *no_sizes, "Do not read image headers");
  cmd->callback([o, no_sizes] {
    LoadResult loaded = load_dataset(o->path, o->load());
    DatasetStats st = compute_dataset_stats(loaded, {!*no_sizes, o->threads});  // reports rows left out
    if (o->json) {
      Json j = stats_to_json(st);
      j["file"] = loaded.file;
      j["format"] = dataset_format_name(loaded.format);
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << loaded.file << " (" << dataset_format_name(loaded.format) << ")\n" << format_stats(st);
    }
  });
}

void add_split(CLI::App& parent) {
  auto o = std::make_shared<SourceOptions>();
  auto s = std::make_shared<SplitOptions>();
  auto mode = std::make_shared<std::string>("patient");
  auto out = std::make_shared<std::string>();
  CLI::App* cmd = parent.add_subcommand(
      "split", "Patient-disjoint, grade-stratified train/val/test split (or --mode image: the authors' protocol)");
  add_source_options(cmd, *o, true);
  cmd->add_option("--out", *out, "Output folder: manifest.csv, train.csv, val.csv, test.csv, split.json")->required();
  cmd->add_option("--mode", *mode, "patient (disjoint, stratified by worst-eye grade) or image")->capture_default_str();
  cmd->add_option("--val", s->val_fraction, "Validation fraction (image mode: of the non-test images)")
      ->capture_default_str();
  cmd->add_option("--test", s->test_fraction, "Test fraction")->capture_default_str();
  cmd->add_option("--seed", s->seed, "Seed (image mode: of the test split)")->capture_default_str();
  cmd->add_option("--seed2", s->seed2, "Image mode: seed of the val split")->capture_default_str();
  cmd->callback([o, s, mode, out] {
    SplitOptions options = *s;
    options.mode = parse_split_mode(*mode);
    Dataset split = split_dataset(usable_dataset(*o), options);
    SplitSummary summary = summarize_split(split, options);
    write_split(*out, split, summary);
    if (o->json) std::cout << split_summary_to_json(summary).dump(2) << "\n";
    else
      std::cout << format_split_summary(summary) << "wrote " << *out
                << "/{manifest,train,val,test}.csv and split.json\n";
  });
}

void add_import(CLI::App& parent) {
  auto o = std::make_shared<SourceOptions>();
  auto out = std::make_shared<std::string>();
  CLI::App* cmd =
      parent.add_subcommand("import", "Validate a dataset in any supported format and write our manifest CSV");
  add_source_options(cmd, *o, true);
  cmd->add_option("--out", *out, "Manifest CSV to write (image paths relative to its folder)")->required();
  cmd->callback([o, out] {
    Dataset d = usable_dataset(*o);
    write_manifest(*out, d);
    if (o->json) std::cout << Json{{"manifest", *out}, {"cases", d.size()}}.dump(2) << "\n";
    else std::cout << "wrote " << *out << " (" << d.size() << " cases)\n";
  });
}

}  // namespace

void add_dataset_commands(CLI::App& app) {
  CLI::App* dataset = app.add_subcommand("dataset", "Validate, describe, split and import datasets");
  dataset->require_subcommand(1);
  add_validate(*dataset);
  add_stats(*dataset);
  add_split(*dataset);
  add_import(*dataset);
}

}  // namespace fundus::cli

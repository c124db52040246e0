// `fundus store add|remove|stats|export|check|migrate` and `fundus index build|info`: the case store
// (fundus/store/case_store.h) and the vector indexes derived from it (fundus/index/*.h).
#include <chrono>
#include <iostream>
#include <memory>

#include "commands.h"
#include "fundus/core/error.h"
#include "fundus/core/strings.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/validate.h"
#include "fundus/index/index_factory.h"
#include "fundus/index/index_file.h"
#include "fundus/retrieval/store_index.h"
#include "fundus/store/store_report.h"

namespace fundus::cli {

namespace {

struct StoreArgs {
  std::string path;
  bool check = false;
  bool json = false;

  // Commands that only read open the file read-only: they work on a write-protected store and can
  // never change one (not even by creating a schema in an empty file).
  enum Mode { read_only, write, create };
  std::unique_ptr<CaseStore> open(Mode mode) const {
    StoreOptions options;
    options.create = mode == create;
    options.read_only = mode == read_only;
    options.check = check;
    return std::make_unique<CaseStore>(path, options);
  }
};

void add_store_option(CLI::App* cmd, StoreArgs& a, bool with_json = false) {
  cmd->add_option("--store", a.path, "Case store database (SQLite)")->required();
  cmd->add_flag("--check", a.check, "Run an integrity check when opening the store");
  if (with_json) cmd->add_flag("--json", a.json, "Print JSON instead of the readable report");
}

void add_add(CLI::App& parent) {
  auto a = std::make_shared<StoreArgs>();
  auto data = std::make_shared<std::string>();
  auto format = std::make_shared<std::string>("auto");
  auto skip_bad = std::make_shared<bool>(false);
  auto quick = std::make_shared<bool>(false);
  auto threads = std::make_shared<int>(0);
  CLI::App* cmd = parent.add_subcommand(
      "add",
      "Import a dataset (manifest, labels CSV or folder) into the store; identical cases already there are skipped");
  add_store_option(cmd, *a, true);
  cmd->add_option("--data", *data, "Manifest, labels CSV or dataset folder (any format `fundus dataset` reads)")
      ->required();
  cmd->add_option("--format", *format, "auto|generic|eyepacs|aptos|idrid|folders|manifest")->capture_default_str();
  cmd->add_flag("--skip-bad", *skip_bad, "Leave out rows with problems instead of failing");
  cmd->add_flag("--quick", *quick, "Only check that image files exist; do not decode them");
  add_threads_option(*cmd, *threads);
  cmd->callback([=] {
    ValidationResult v = validate_dataset(*data, {parse_dataset_format(*format), {}}, {!*quick, *threads, !a->json});
    const Dataset& dataset = require_valid(v, *skip_bad);
    if (!v.ok()) std::cerr << "skipped bad rows: " << validation_summary(v) << "\n";
    auto store = a->open(StoreArgs::create);
    AddCasesResult r = store->add_cases(dataset, *threads);
    int64_t total = store->stats().cases;
    if (a->json)
      std::cout << Json{{"store", a->path}, {"added", r.added}, {"skipped", r.skipped}, {"cases", total}}.dump(2)
                << "\n";
    else
      std::cout << "added " << r.added << " cases, skipped " << r.skipped << " already in the store; " << a->path
                << " now holds " << total << " cases\n";
  });
}

void add_remove(CLI::App& parent) {
  auto a = std::make_shared<StoreArgs>();
  auto ids = std::make_shared<std::vector<std::string>>();
  auto external = std::make_shared<bool>(false);
  CLI::App* cmd = parent.add_subcommand("remove", "Remove cases and their embeddings (all or none)");
  add_store_option(cmd, *a);
  cmd->add_option("ids", *ids, "Store ids, or with --external the dataset's case ids")->required();
  cmd->add_flag("--external", *external, "The ids are dataset case ids (e.g. Patient002_L), not store ids");
  cmd->callback([=] {
    auto store = a->open(StoreArgs::write);
    std::vector<int64_t> found;
    for (auto& text : *ids) {
      auto c = *external ? store->find_by_external_id(text)
                         : store->get_case(parse_int(text, "store id '" + text + "' (use --external for case ids)"));
      FUNDUS_CHECK(c, a->path << ": no case with " << (*external ? "case id '" : "store id '") << text
                              << "' (nothing was removed)");
      found.push_back(c->id);
    }
    int64_t n = store->remove_cases(found);
    std::cout << "removed " << n << " case" << (n == 1 ? "" : "s") << "; " << store->stats().cases << " left\n";
  });
}

void add_stats(CLI::App& parent) {
  auto a = std::make_shared<StoreArgs>();
  CLI::App* cmd = parent.add_subcommand("stats", "Cases per grade and split, patients, models and their embeddings");
  add_store_option(cmd, *a, true);
  cmd->callback([=] {
    auto store = a->open(StoreArgs::read_only);
    StoreStats s = store->stats();
    auto models = store->list_models();
    if (a->json) std::cout << store_stats_to_json(s, models).dump(2) << "\n";
    else std::cout << a->path << ": " << format_store_stats(s, models);
  });
}

void add_export(CLI::App& parent) {
  auto a = std::make_shared<StoreArgs>();
  auto out = std::make_shared<std::string>();
  auto model = std::make_shared<int64_t>(-1);
  CLI::App* cmd = parent.add_subcommand("export", "Write cases.csv and the embeddings as NumPy .npy (+ ids CSV)");
  add_store_option(cmd, *a);
  cmd->add_option("--out", *out, "Output folder")->required();
  cmd->add_option("--model", *model, "Only this model's embeddings (default: every model)");
  cmd->callback([=] {
    for (auto& file : export_store(*a->open(StoreArgs::read_only), *out, *model)) std::cout << "wrote " << file << "\n";
  });
}

void add_check(CLI::App& parent) {
  auto a = std::make_shared<StoreArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "check",
      "Every invariant the readers rely on: SQLite integrity and foreign keys, schema, grades, text, meta JSON "
      "(depth included), model dimensions, vector sizes and finite values. Reads only");
  add_store_option(cmd, *a);
  cmd->callback([=] {
    StoreCheck c = a->open(StoreArgs::read_only)->check();
    for (auto& p : c.problems) std::cout << p << "\n";
    FUNDUS_CHECK(c.ok(), a->path << ": " << c.problems.size() << " problem" << (c.problems.size() == 1 ? "" : "s"));
    std::cout << a->path << ": ok\n";
  });
}

void add_migrate(CLI::App& parent) {
  auto a = std::make_shared<StoreArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "migrate", "Upgrade the store's schema to this build's version (read-only commands never do it themselves)");
  add_store_option(cmd, *a);
  cmd->callback([=] {
    auto store = a->open(StoreArgs::write);  // opening for writing runs the migrations
    std::cout << a->path << ": schema version " << store->schema_version() << " (current)\n";
  });
}

void add_index_build(CLI::App& parent) {
  auto a = std::make_shared<StoreArgs>();
  auto model = std::make_shared<int64_t>(0);
  auto type = std::make_shared<std::string>("hnsw");
  auto out = std::make_shared<std::string>();
  auto threads = std::make_shared<int>(0);
  CLI::App* cmd = parent.add_subcommand("build", "Build a vector index of a model's embeddings and save it");
  add_store_option(cmd, *a);
  cmd->add_option("--model", *model, "Model id (see `fundus store stats`)")->required();
  cmd->add_option("--type", *type,
                  "exact | hnsw[:M=32,efc=200,ef=64] | ivfpq[:nlist=1024,m=64,nbits=8,nprobe=16,rerank=500]")
      ->capture_default_str();
  cmd->add_option("--out", *out, "Index file to write")->required();
  add_threads_option(*cmd, *threads);
  cmd->callback([=] {
    auto store = a->open(StoreArgs::read_only);
    IndexProvenance provenance = store_provenance(*store, *model);  // before the vectors: see store_index.h
    auto start = std::chrono::steady_clock::now();
    auto index = build_index(*store, *model, *type, *threads);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    index->save(*out, provenance);
    std::cout << "built " << index->describe() << " over " << index->size() << " vectors of model " << *model << " in "
              << strprintf("%.2f s", seconds) << "; wrote " << *out << "\n";
  });
}

void add_index_info(CLI::App& parent) {
  auto file = std::make_shared<std::string>();
  auto store_path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  CLI::App* cmd = parent.add_subcommand("info", "Verify an index file and print what it was built from");
  cmd->add_option("file", *file, "Index file")->required();
  cmd->add_option("--store", *store_path, "Also tell whether the index is current for this store");
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([=] {
    IndexFileInfo info = read_index_info(*file);
    Json j = index_info_to_json(info);
    std::string text = format_index_info(info);
    if (!store_path->empty()) {
      StoreOptions options;
      options.read_only = true;
      std::string why = index_staleness(CaseStore(*store_path, options), info);
      j["current"] = why.empty();
      j["stale_reason"] = why;
      text += "current:            " + (why.empty() ? std::string("yes") : "no (" + why + ")") + "\n";
    }
    std::cout << (*json ? j.dump(2) + "\n" : text);
  });
}

}  // namespace

void add_store_commands(CLI::App& app) {
  CLI::App* store = app.add_subcommand("store", "The case store: import, remove, describe, export, check");
  store->require_subcommand(1);
  add_add(*store);
  add_remove(*store);
  add_stats(*store);
  add_export(*store);
  add_check(*store);
  add_migrate(*store);
  CLI::App* index = app.add_subcommand("index", "Vector indexes built from the store");
  index->require_subcommand(1);
  add_index_build(*index);
  add_index_info(*index);
}

}  // namespace fundus::cli

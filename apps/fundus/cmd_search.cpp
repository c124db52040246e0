// `fundus embed | query | eval | explain`: the retrieval engine (fundus/retrieval/*.h).
#include <iostream>
#include <memory>

#include "commands.h"
#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/concurrency.h"
#include "fundus/core/strings.h"
#include "fundus/data/image_io.h"
#include "fundus/data/preprocess.h"
#include "fundus/model/runtime.h"
#include "fundus/retrieval/embed_store.h"
#include "fundus/retrieval/eval_run.h"
#include "fundus/retrieval/localisation.h"
#include "fundus/retrieval/model_runner.h"
#include "fundus/retrieval/query_report.h"
#include "fundus/retrieval/search_engine.h"

namespace fundus::cli {

namespace {

std::vector<int> parse_int_list(const std::string& text, const std::string& what) {
  std::vector<int> out;
  for (const std::string& part : split(text, ','))
    if (!trim(part).empty()) out.push_back(int(parse_int(part, what)));
  return out;
}

// "out.jpg" for one image; "out-1.jpg", "out-2.jpg", ... for several.
std::string numbered(const std::string& path, size_t i, size_t n) {
  if (n == 1) return path;
  size_t dot = path.rfind('.'), slash = path.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) dot = path.size();
  return path.substr(0, dot) + "-" + std::to_string(i + 1) + path.substr(dot);
}

void add_embed(CLI::App& app) {
  struct Args {
    std::string model, store, cache, index_path, index_spec = "exact", device = "cpu";
    EmbedStoreOptions options;
    int threads = 0;
    bool json = false;
    LaunchOptions launch;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "embed", "Embed the store's cases with a model (resumable: only cases without a vector), then refresh the index");
  cmd->add_option("--model", a->model, "Checkpoint (RUN/checkpoints/best.ckpt)")->required();
  cmd->add_option("--store", a->store, "Case store database")->required();
  cmd->add_option("--split", a->options.splits, "Only cases of these splits (comma-separated; default all)");
  cmd->add_option("--batch", a->options.batch_size, "Images per forward pass")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--workers", a->options.workers, "Decode/preprocess threads")->capture_default_str();
  cmd->add_option("--cache", a->options.cache_dir, "Preprocessed-image cache folder");
  cmd->add_option("--commit-every", a->options.commit_every, "Images per committed transaction")->capture_default_str();
  cmd->add_option("--limit", a->options.limit, "Embed at most N cases now (the rest on the next run)");
  cmd->add_option("--index-spec", a->options.index_spec, "exact | hnsw[:M=..] | ivfpq[:...]")->capture_default_str();
  cmd->add_option("--index", a->options.index_path, "Index file (default <store>.model<id>.index)");
  add_threads_option(*cmd, a->threads);
  add_device_option(*cmd, a->device);
  cmd->add_option("--precision", a->options.precision, "fp32, or bf16/fp16 (CUDA autocast)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  add_distributed_options(*cmd, a->launch);
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->callback([a] {
    std::optional<DistributedOptions> world = launch_or_join(a->launch);
    if (!world) return;  // this process launched the workers; rank 0 printed the result
    // Local processes share the cores: --threads 0 means this process's share.
    set_compute_threads(a->threads > 0 ? a->threads : std::max(1, available_cores() / world->local_world_size));
    a->options.threads = a->threads;
    EmbedStoreResult r;
    run_as_rank(*world, [&] {
      ModelRunner model(a->model, resolve_device_for_rank(a->device, world->local_rank));
      if (world->distributed()) {
        r = embed_store_distributed(a->store, model, *world, a->options);
        return;
      }
      StoreOptions so;
      so.create = false;
      CaseStore store(a->store, so);
      r = embed_store(store, model, a->options);
    });
    if (!world->is_main()) return;
    if (a->json) std::cout << r.to_json().dump(2) << "\n";
    else std::cout << r.summary() << "\n";
  });
}

void add_query(CLI::App& app) {
  struct Args {
    std::vector<std::string> images;
    std::string store, model, exclude_patient, grades, sheet, index_spec = "exact", attention, device = "cpu";
    int k = 10, threads = 0;
    bool json = false, embed_missing = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "query",
      "Find the most similar graded cases for fundus images. Reads the store only (it may be write-protected): "
      "the model must have been embedded with `fundus embed`, cases without a vector are left out with a warning; "
      "--embed-missing embeds them first (writes to the store)");
  cmd->add_option("images", a->images, "Query images (JPEG/PNG)")->required();
  cmd->add_option("--store", a->store, "Case store database")->required();
  cmd->add_option("--model", a->model, "Checkpoint")->required();
  cmd->add_option("-k", a->k, "Number of similar cases")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--exclude-patient", a->exclude_patient, "Leave out this patient's cases (e.g. the query's own)");
  cmd->add_option("--grades", a->grades, "Only cases of these grades, e.g. 2,3,4");
  cmd->add_option("--index-spec", a->index_spec, "exact | hnsw[:M=..,ef=..] | ivfpq[:...]")->capture_default_str();
  cmd->add_option("--sheet", a->sheet, "Write a contact sheet (query + hits) to this JPEG/PNG");
  cmd->add_option("--attention", a->attention, "Write the query's attention overlay to this JPEG/PNG");
  cmd->add_flag("--embed-missing", a->embed_missing,
                "Before searching, embed the cases that have no vector for this model (registers the model and "
                "writes the vectors into the store; as `fundus embed` would)");
  add_threads_option(*cmd, a->threads);
  add_device_option(*cmd, a->device);
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->callback([a] {
    EngineOptions eo;
    eo.store_path = a->store;
    eo.checkpoint_path = a->model;
    eo.index_spec = a->index_spec;
    eo.threads = a->threads;
    eo.device = a->device;
    eo.create_store = false;
    eo.embed_missing = a->embed_missing;
    eo.read_only = !a->embed_missing;
    SearchEngine engine(eo);
    QueryOptions qo;
    qo.k = a->k;
    qo.exclude_patient = a->exclude_patient;
    qo.grades = parse_int_list(a->grades, "--grades");
    qo.with_attention = !a->attention.empty();
    Json all = Json::array();
    for (size_t i = 0; i < a->images.size(); ++i) {
      const std::string& image = a->images[i];
      QueryResult r = engine.query_file(image, qo);
      Json j = query_result_to_json(r);
      j["image"] = image;
      if (!a->sheet.empty()) {
        std::string path = numbered(a->sheet, i, a->images.size());
        write_image_rgb(path, render_query_sheet(r, engine.preprocess_options()), 92);
        j["sheet"] = path;
      }
      if (!a->attention.empty()) {
        std::string path = numbered(a->attention, i, a->images.size());
        write_image_rgb(path, r.attention_overlay, 92);
        j["attention"] = path;
      }
      if (a->json) {
        all.push_back(j);
        continue;
      }
      std::cout << "query: " << image
                << strprintf("  (decode %.0f ms, embed %.0f ms, search %.1f ms)\n",
                             j["timing_ms"]["decode"].get<double>(), j["timing_ms"]["embed"].get<double>(),
                             j["timing_ms"]["search"].get<double>())
                << format_query_result(r);
      if (j.contains("sheet")) std::cout << "wrote " << j["sheet"].get<std::string>() << "\n";
      if (j.contains("attention")) std::cout << "wrote " << j["attention"].get<std::string>() << "\n";
      std::cout << "\n";
    }
    // Text from stores written by older builds may not be UTF-8: shown replaced, never a failure.
    if (a->json) std::cout << all.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
  });
}

void add_eval(CLI::App& app) {
  struct Args {
    std::string model, ks = "1,5,10,20,50", device = "cpu";
    EvalRunOptions options;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Evaluate retrieval on a manifest's splits: per grade, micro/macro, chance floors, leakage effect");
  cmd->add_option("--model", a->model, "Checkpoint")->required();
  cmd->add_option("--data", a->options.data, "Manifest with a split column")->required();
  cmd->add_option("--queries", a->options.queries, "Query split(s)")->capture_default_str();
  cmd->add_option("--gallery", a->options.gallery, "Gallery split(s)")->capture_default_str();
  cmd->add_option("--out", a->options.out_dir, "Write eval.json/csv/md, per_query.csv, report.html, config.json here");
  cmd->add_flag("--exclude-same-patient", a->options.exclude_same_patient,
                "Leave the query patient's other images out of the gallery (the other setting is reported too)");
  cmd->add_option("--relevance", a->options.relevance, "grade | referable")->capture_default_str();
  cmd->add_option("--k", a->ks, "Cut-offs, ascending")->capture_default_str();
  cmd->add_option("--knn-k", a->options.knn_k, "Neighbours in the grade vote")->capture_default_str();
  cmd->add_option("--cache", a->options.cache_dir, "Preprocessed-image cache folder");
  cmd->add_option("--batch", a->options.batch_size, "Images per forward pass")->capture_default_str();
  cmd->add_option("--workers", a->options.workers, "Decode/preprocess threads")->capture_default_str();
  cmd->add_option("--post", a->options.postprocess,
                  "Retrieval post-processing before evaluating: none, pcaw[:dims=N], dba[:n=N], aqe[:n=N,alpha=A], "
                  "joined with '+'")
      ->capture_default_str();
  add_threads_option(*cmd, a->threads);
  add_device_option(*cmd, a->device);
  cmd->callback([a] {
    set_compute_threads(a->threads);
    a->options.threads = a->threads;
    a->options.ks = parse_int_list(a->ks, "--k");
    ModelRunner model(a->model, a->device);
    EvalRunResult r = run_evaluation(model, a->options);
    std::cout << r.markdown;
    for (const std::string& f : r.files) std::cout << "wrote " << f << "\n";
  });
}

void add_explain(CLI::App& app) {
  struct Args {
    std::string image, model, out, store, case_id, data, splits = "test", masks, device = "cpu";
    ExplainOptions explain;
    double tolerance = 8;
    int64_t limit = 0;
    int threads = 0;
    bool localisation = false, json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "explain",
      "Attention maps (mirror attention, or Grad-CAM) for an image; --localisation measures them on lesion masks");
  cmd->add_option("image", a->image, "Fundus image");
  cmd->add_option("--model", a->model, "Checkpoint")->required();
  cmd->add_option("-o,--out", a->out, "Output panel (PNG/JPEG): preprocessed | overlay | branch maps");
  cmd->add_option("--method", a->explain.method, "auto | attention | gradcam")->capture_default_str();
  cmd->add_option("--store", a->store, "Case store holding the reference case (Grad-CAM target)");
  cmd->add_option("--case", a->case_id, "Reference case: case id or store id");
  cmd->add_flag("--localisation", a->localisation, "Measure attention on lesion masks instead (synthetic set)");
  cmd->add_option("--data", a->data, "Manifest (with --localisation)");
  cmd->add_option("--split", a->splits, "Split(s) to measure (with --localisation)")->capture_default_str();
  cmd->add_option("--masks", a->masks, "Lesion masks folder <id>.png (with --localisation)");
  cmd->add_option("--tolerance", a->tolerance, "Pointing-game tolerance in input pixels")->capture_default_str();
  cmd->add_option("--limit", a->limit, "At most N images with lesions (with --localisation)");
  add_threads_option(*cmd, a->threads);
  add_device_option(*cmd, a->device);
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->callback([a] {
    set_compute_threads(a->threads);
    ModelRunner model(a->model, a->device);
    if (a->localisation) {
      FUNDUS_CHECK(!a->data.empty() && !a->masks.empty(), "--localisation needs --data MANIFEST and --masks DIR");
      LocalisationOptions lo;
      lo.data = a->data;
      lo.splits = a->splits;
      lo.masks_dir = a->masks;
      lo.tolerance_px = a->tolerance;
      lo.explain = a->explain;
      lo.limit = a->limit;
      LocalisationReport r = evaluate_localisation(model, lo);
      std::cout << (a->json ? r.to_json().dump(2) + "\n" : r.to_text());
      return;
    }
    FUNDUS_CHECK(!a->image.empty(), "explain: give an IMAGE (or --localisation)");
    FUNDUS_CHECK(!a->out.empty(), "explain: give the output file with -o OUT.png");
    std::vector<float> reference;
    std::string reference_id;
    if (!a->case_id.empty()) {
      FUNDUS_CHECK(!a->store.empty(), "--case needs --store");
      StoreOptions so;
      so.read_only = true;
      CaseStore store(a->store, so);
      auto c = store.find_by_external_id(a->case_id);
      int64_t numeric = 0;
      if (!c && try_parse_int(a->case_id, numeric)) c = store.get_case(numeric);
      FUNDUS_CHECK(c, a->store << ": no case with id '" << a->case_id << "'");
      reference = model.embed(preprocess_fundus_file(c->image_path, model.preprocess()).image);
      reference_id = c->external_id;
    }
    Explanation e = model.explain(preprocess_fundus_file(a->image, model.preprocess()).image, a->explain, reference);
    write_image_rgb(a->out, e.panel, 95);
    if (e.method != "grad-cam" && !reference_id.empty()) {
      std::cerr << "note: --case only steers Grad-CAM maps (--method gradcam); the " << e.method
                << " map does not depend on it\n";
      reference_id.clear();
    }
    if (a->json)
      std::cout << Json{{"image", a->image},
                        {"method", e.method},
                        {"out", a->out},
                        {"reference", reference_id},
                        {"feature_grid", {e.feature_grid.width, e.feature_grid.height}}}
                       .dump(2)
                << "\n";
    else
      std::cout << e.method << " map (" << e.feature_grid.width << "x" << e.feature_grid.height << " grid"
                << (reference_id.empty() ? "" : ", similarity to case " + reference_id) << ") -> " << a->out << "\n";
  });
}

}  // namespace

void add_search_commands(CLI::App& app) {
  add_embed(app);
  add_query(app);
  add_eval(app);
  add_explain(app);
}

}  // namespace fundus::cli

// `fundus model info|presets|fetch|list-weights`: the network's architecture summary, the
// model-section presets, and torchvision's ImageNet weights in torch.hub's cache (weights_hub.h).
#include <iostream>
#include <memory>

#include "commands.h"
#include "fundus/core/error.h"
#include "fundus/core/json.h"
#include "fundus/core/strings.h"
#include "fundus/model/model_config.h"
#include "fundus/model/retrieval_net.h"
#include "fundus/model/runtime.h"
#include "fundus/model/weights_hub.h"

namespace fundus::cli {

namespace {

void add_info(CLI::App& parent) {
  struct Args {
    std::string config, preset, pretrained;
    std::vector<std::string> overrides;
    bool json = false;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = parent.add_subcommand("info", "Architecture summary: parameters per part, feature map, descriptor");
  auto* config = cmd->add_option("--config", a->config, "JSON file: a model section or a run config with \"model\"");
  cmd->add_option("--preset", a->preset, "Model preset (see `fundus model presets`)")->excludes(config);
  cmd->add_option("--pretrained", a->pretrained,
                  "Backbone weights to load and report on: .pth, imagenet, or a weights name");
  cmd->add_option("--set", a->overrides, "Override a model key, e.g. --set attention=self");
  cmd->add_flag("--json", a->json, "Print JSON");
  add_threads_option(*cmd, a->threads);
  cmd->callback([a] {
    set_compute_threads(a->threads);
    FUNDUS_CHECK(!a->config.empty() || !a->preset.empty(), "model info needs --config FILE or --preset NAME");
    Json section = a->config.empty() ? model_preset(a->preset) : model_section(load_json_file(a->config));
    for (const auto& o : a->overrides) apply_override(section, o);
    if (!a->pretrained.empty()) section["pretrained"] = a->pretrained;
    ModelConfig config =
        ModelConfig::from_json(section, a->config.empty() ? "preset " + a->preset : a->config + ": model");
    RetrievalNet net(config, /*load_weights=*/false);
    Json summary = net->summary();
    if (!config.pretrained.empty()) {
      LoadReport report = net->load_pretrained(config.pretrained);
      summary["load_report"] = {{"loaded", report.loaded.size()},
                                {"unused", report.ignored},
                                {"kept_initialised", report.allowed_missing.size()},
                                {"summary", report.summary()}};
    }
    if (a->json) {
      std::cout << summary.dump(2) << "\n";
      return;
    }
    std::cout << format_model_summary(summary);
    if (summary.contains("load_report"))
      std::cout << "weights:       " << config.pretrained << ": "
                << summary["load_report"]["summary"].get<std::string>() << "\n";
  });
}

void add_fetch(CLI::App& parent) {
  struct Args {
    std::vector<std::string> names;
    std::string dir, base_url;
    bool all = false, force = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = parent.add_subcommand(
      "fetch", "Download torchvision's ImageNet weights into torch.hub's cache (SHA-256 checked, resumable)");
  cmd->add_option("names", a->names,
                  "mobilenet_v2, resnet18, resnet34, resnet50, densenet121 (their default) or "
                  "BACKBONE:VERSION, e.g. mobilenet_v2:IMAGENET1K_V1 (see list-weights)");
  cmd->add_flag("--all", a->all, "Every known file (both versions where there are two)");
  cmd->add_flag("--force", a->force, "Download again even when a verified file is cached");
  cmd->add_option("--dir", a->dir, "Folder instead of $TORCH_HOME/hub/checkpoints");
  cmd->add_option("--base-url", a->base_url,
                  "Server folder instead of $FUNDUS_WEIGHTS_URL or download.pytorch.org/models");
  cmd->callback([a] {
    FUNDUS_CHECK(
        a->all || !a->names.empty(),
        "name the weights to fetch, e.g. `fundus model fetch mobilenet_v2` (`fundus model list-weights` shows all)");
    std::vector<const KnownWeights*> todo;  // every name is checked before anything is downloaded
    if (a->all)
      for (const auto& w : known_weights()) todo.push_back(&w);
    for (const auto& name : a->names) todo.push_back(&known_weights_named(name));
    FetchOptions options;
    options.dir = a->dir;
    options.base_url = a->base_url;
    options.force = a->force;
    for (const KnownWeights* w : todo) {
      FetchResult r = fetch_weights(*w, options);
      std::cout << w->name() << " -> " << r.path << strprintf(" (%.1f MiB, ", double(r.bytes) / (1024.0 * 1024.0))
                << (r.downloaded ? (r.resumed_from > 0 ? "download resumed, " : "downloaded, ") : "already cached, ")
                << "SHA-256 prefix " << w->sha256_prefix() << " verified)\n";
    }
  });
}

void add_list_weights(CLI::App& parent) {
  struct Args {
    std::string dir;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = parent.add_subcommand("list-weights", "Known ImageNet weights, and which are in torch.hub's cache");
  cmd->add_option("--dir", a->dir, "Folder instead of $TORCH_HOME/hub/checkpoints");
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->callback([a] {
    Json status = weights_status(a->dir);
    if (a->json) std::cout << status.dump(2) << "\n";
    else std::cout << format_weights_status(status, a->dir.empty() ? hub_checkpoint_dir() : a->dir);
  });
}

}  // namespace

void add_model_commands(CLI::App& app) {
  CLI::App* model = app.add_subcommand("model", "Network architecture: summaries, presets, pretrained weights");
  model->require_subcommand(1);
  add_info(*model);
  add_fetch(*model);
  add_list_weights(*model);
  model->add_subcommand("presets", "Print the model-section presets as JSON")->callback([] {
    Json all = Json::object();
    for (const auto& name : model_preset_names()) all[name] = model_preset(name);
    std::cout << all.dump(2) << "\n";
  });
}

}  // namespace fundus::cli

// `fundus model info|presets`: the network's architecture summary and the model-section presets.
#include <iostream>
#include <memory>

#include "commands.h"
#include "fundus/core/error.h"
#include "fundus/core/json.h"
#include "fundus/model/model_config.h"
#include "fundus/model/retrieval_net.h"
#include "fundus/model/runtime.h"

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
  cmd->add_option("--pretrained", a->pretrained, "Backbone weights (.pth) to load and report on");
  cmd->add_option("--set", a->overrides, "Override a model key, e.g. --set attention=self");
  cmd->add_flag("--json", a->json, "Print JSON");
  add_threads_option(*cmd, a->threads);
  cmd->callback([a] {
    set_compute_threads(a->threads);
    FUNDUS_CHECK(!a->config.empty() || !a->preset.empty(), "model info needs --config FILE or --preset NAME");
    Json section = a->config.empty() ? model_preset(a->preset) : model_section(load_json_file(a->config));
    for (const auto& o : a->overrides) apply_override(section, o);
    if (!a->pretrained.empty()) section["pretrained"] = a->pretrained;
    ModelConfig config = ModelConfig::from_json(section, a->config.empty() ? "preset " + a->preset : a->config + ": model");
    RetrievalNet net(config, /*load_weights=*/false);
    Json summary = net->summary();
    if (!config.pretrained.empty()) {
      LoadReport report = net->load_pretrained(config.pretrained);
      summary["load_report"] = {{"loaded", report.loaded.size()},       {"unused", report.ignored},
                                {"kept_initialised", report.allowed_missing.size()}, {"summary", report.summary()}};
    }
    if (a->json) {
      std::cout << summary.dump(2) << "\n";
      return;
    }
    std::cout << format_model_summary(summary);
    if (summary.contains("load_report"))
      std::cout << "weights:       " << config.pretrained << ": " << summary["load_report"]["summary"].get<std::string>()
                << "\n";
  });
}

}  // namespace

void add_model_commands(CLI::App& app) {
  CLI::App* model = app.add_subcommand("model", "Network architecture: summaries and presets");
  model->require_subcommand(1);
  add_info(*model);
  model->add_subcommand("presets", "Print the model-section presets as JSON")->callback([] {
    Json all = Json::object();
    for (const auto& name : model_preset_names()) all[name] = model_preset(name);
    std::cout << all.dump(2) << "\n";
  });
}

}  // namespace fundus::cli

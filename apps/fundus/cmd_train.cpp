#include <iostream>

#include "commands.h"
#include "fundus/core/strings.h"
#include "fundus/train/trainer.h"

namespace fundus::cli {

void add_train_commands(CLI::App& app) {
  struct Options {
    std::string preset, config, data, out, pretrained, train_split = "train", val_split = "val";
    std::string device = "cpu", precision = "fp32";
    std::vector<std::string> overrides;
    bool resume = false, print_config = false;
    int epochs = 0, threads = -1;
    LaunchOptions launch;
  };
  auto opt = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("train", "Train a retrieval model (checkpoints, exact --resume, Ctrl-C saves)");
  cmd->add_option("--preset", opt->preset,
                  "Start from a preset: paper, cpu, cpu-finetune, baseline-gem, self-attention, scratch, tiny");
  cmd->add_option("--config", opt->config, "JSON run configuration merged over the preset");
  cmd->add_option("--set", opt->overrides, "Override a config value, e.g. --set optim.lr=1e-4 (repeatable)");
  add_pretrained_option(*cmd, opt->pretrained);
  cmd->add_option("--epochs", opt->epochs, "Shortcut for --set train.epochs=N");
  cmd->add_option("--threads", opt->threads, "Compute threads (0 = all cores)");
  cmd->add_option("--data", opt->data, "Manifest with a split column (fundus dataset split)");
  cmd->add_option("--out", opt->out, "Run directory (checkpoints, metrics, config); required unless --print-config");
  cmd->add_option("--train-split", opt->train_split, "Split used for training");
  cmd->add_option("--val-split", opt->val_split, "Split used for validation queries (gallery: the train split)");
  cmd->add_flag("--resume", opt->resume, "Continue the run in --out from its last checkpoint");
  cmd->add_flag("--print-config", opt->print_config, "Print the resolved configuration and exit");
  add_device_option(*cmd, opt->device);
  cmd->add_option("--precision", opt->precision, "fp32, or bf16 (CUDA autocast)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  add_distributed_options(*cmd, opt->launch);
  cmd->callback([opt] {
    std::vector<std::string> overrides = opt->overrides;
    if (!opt->pretrained.empty()) overrides.push_back("model.pretrained=" + opt->pretrained);
    if (opt->epochs > 0) overrides.push_back("train.epochs=" + std::to_string(opt->epochs));
    if (opt->threads >= 0) overrides.push_back("train.threads=" + std::to_string(opt->threads));
    FUNDUS_CHECK(!opt->out.empty() || (opt->print_config && !opt->resume), "--out is required (the run directory)");
    TrainRequest req;
    std::string preset = opt->preset, config = opt->config;
    if (preset.empty() && config.empty()) {
      // --resume without a config continues with the run's own; a new run defaults to the cpu preset.
      std::string saved = opt->out + "/config.json";
      if (opt->resume) config = saved;
      else preset = "cpu";
    }
    req.config = resolve_run_config(preset, config, overrides);
    if (opt->print_config) {
      std::cout << req.config.to_json().dump(2) << "\n";
      return;
    }
    FUNDUS_CHECK(!opt->data.empty(), "--data is required (a manifest with a split column)");
    req.data = opt->data;
    req.out_dir = opt->out;
    req.resume = opt->resume;
    req.train_split = opt->train_split;
    req.val_split = opt->val_split;
    req.device = opt->device;
    req.precision = opt->precision;
    std::optional<DistributedOptions> world = launch_or_join(opt->launch);
    if (!world) {  // this process launched the workers; rank 0 printed the results
      std::cout << "distributed run finished: " << opt->out << "\n";
      return;
    }
    req.distributed = *world;
    TrainSummary s;
    run_as_rank(*world, [&] { s = train_model(req); });
    if (!world->is_main()) return;
    std::cout << (s.interrupted ? "interrupted" : "finished") << ": " << s.steps << " steps, " << s.epochs_completed
              << " epochs, " << strprintf("%.1f", s.images_per_second) << " img/s";
    if (world->distributed())
      std::cout << " (" << world->world_size << " processes, communication " << strprintf("%.1f", s.comm_ms_per_step)
                << " ms/step)";
    std::cout << "\n";
    if (s.best_epoch > 0) std::cout << describe_selection(s) << " -> " << s.best_checkpoint << "\n";
    if (s.interrupted) std::cout << "resume with: fundus train --out " << opt->out << " --resume ...\n";
  });
}

}  // namespace fundus::cli

// `fundus cv`: patient-disjoint K-fold cross-validation of a training recipe (train/cross_validation.h).
#include <iostream>

#include "commands.h"
#include "fundus/core/strings.h"
#include "fundus/train/cross_validation.h"

namespace fundus::cli {

void add_cv_command(CLI::App& app) {
  struct Options {
    std::string preset, config, data, out, pretrained, seeds = "1", post = "none";
    std::vector<std::string> overrides;
    int folds = 5, threads = -1;
    uint64_t fold_seed = 11;
    bool keep = false;
  };
  auto opt = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "cv",
      "Cross-validate a training recipe: patient-disjoint, grade-stratified K folds, mean +- std with chance floors");
  cmd->add_option("--preset", opt->preset, "Start from a preset (default cpu)");
  cmd->add_option("--config", opt->config, "JSON run configuration merged over the preset");
  cmd->add_option("--set", opt->overrides, "Override a config value, e.g. --set optim.lr=1e-4 (repeatable)");
  add_pretrained_option(*cmd, opt->pretrained);
  cmd->add_option("--data", opt->data, "Labelled dataset (CSV, manifest or folder); any split column is ignored")
      ->required();
  cmd->add_option("--out", opt->out, "Output folder (resumable; cv.md / cv.json / cv.csv)")->required();
  cmd->add_option("--folds", opt->folds, "Number of folds")->capture_default_str();
  cmd->add_option("--fold-seed", opt->fold_seed, "Seed of the fold assignment (keep it fixed to compare recipes)")
      ->capture_default_str();
  cmd->add_option("--seeds", opt->seeds, "Training seeds, comma-separated (each trains every fold)")
      ->capture_default_str();
  cmd->add_option("--post", opt->post,
                  "Retrieval post-processing variants to evaluate, comma-separated: none, pcaw[:dims=N,shrink=S], "
                  "dba[:n=N,alpha=A], aqe[:n=N,alpha=A], combined with '+' (e.g. none,pcaw,pcaw+aqe)")
      ->capture_default_str();
  cmd->add_option("--threads", opt->threads, "Compute threads (0 = all cores)");
  cmd->add_flag("--keep-checkpoints", opt->keep, "Keep every fold's checkpoints (default: deleted after embedding)");
  cmd->callback([opt] {
    std::vector<std::string> overrides = opt->overrides;
    if (!opt->pretrained.empty()) overrides.push_back("model.pretrained=" + opt->pretrained);
    if (opt->threads >= 0) overrides.push_back("train.threads=" + std::to_string(opt->threads));
    CvOptions o;
    o.config =
        resolve_run_config(opt->preset.empty() && opt->config.empty() ? "cpu" : opt->preset, opt->config, overrides);
    o.data = opt->data;
    o.out_dir = opt->out;
    o.folds = opt->folds;
    o.fold_seed = opt->fold_seed;
    o.seeds.clear();
    for (const auto& s : split(opt->seeds, ',')) {
      double v = 0;
      FUNDUS_CHECK(try_parse_double(trim(s), v) && v >= 0 && v == double(uint64_t(v)),
                   "--seeds: '" << s << "' is not a seed");
      o.seeds.push_back(uint64_t(v));
    }
    o.postprocess = split(opt->post, ',');
    o.keep_checkpoints = opt->keep;
    CvResult r = run_cross_validation(o);
    std::cout << "\n" << r.table << "\n-> " << opt->out << "/cv.md, cv.json, cv.csv\n";
  });
}

}  // namespace fundus::cli

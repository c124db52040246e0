// `fundus synth`: writes a synthetic fundus dataset with lesion masks (see fundus/data/synth.h).
#include <iostream>

#include "commands.h"
#include "fundus/core/error.h"
#include "fundus/core/strings.h"
#include "fundus/data/synth.h"

namespace fundus::cli {

void add_synth_command(CLI::App& app) {
  auto opts = std::make_shared<SynthOptions>();
  auto grades = std::make_shared<std::string>("balanced");
  auto quality = std::make_shared<std::string>("80,95");
  auto single_eye = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "synth", "Generate synthetic fundus photographs with lesion masks (images/, masks/, labels.csv, synth.json)");
  cmd->add_option("--out", opts->out_dir, "Output directory")->required();
  cmd->add_option("--count", opts->count, "Number of images")->capture_default_str();
  cmd->add_option("--size", opts->size, "Image side in pixels (64-4096)")->capture_default_str();
  cmd->add_option("--seed", opts->seed, "Random seed (same seed, same bytes)")->capture_default_str();
  cmd->add_option("--grades", *grades, "'balanced' or five weights for grades 0-4, e.g. 0.5,0.2,0.2,0.05,0.05")
      ->capture_default_str();
  cmd->add_flag("--single-eye", *single_eye, "One image per patient (default: two eyes per patient)");
  cmd->add_option("--jpeg-quality", *quality, "JPEG quality range MIN,MAX (or one value)")->capture_default_str();
  add_threads_option(*cmd, opts->threads);
  cmd->callback([=] {
    SynthOptions o = *opts;
    o.grade_weights = parse_grade_weights(*grades, "--grades");
    o.both_eyes = !*single_eye;
    std::vector<std::string> q = split(*quality, ',');
    FUNDUS_CHECK(q.size() == 1 || q.size() == 2,
                 "--jpeg-quality: expected MIN,MAX or one value, got '" << *quality << "'");
    o.jpeg_quality_min = int(parse_int(q[0], "--jpeg-quality"));
    o.jpeg_quality_max = int(parse_int(q.back(), "--jpeg-quality"));
    SynthDatasetResult result = generate_synthetic_dataset(o);
    std::cout << format_synth_summary(result);
  });
}

}  // namespace fundus::cli

// `fundus demo`: the whole system end to end on synthetic data, in a few minutes on a laptop CPU:
// generate -> validate -> split -> preprocess -> train -> store + embed + index -> query -> evaluate.
// Each step is one library call; the output folder holds every artefact for inspection.
#include <iostream>

#include "commands.h"
#include "demo_steps.h"

namespace fundus::cli {

void add_demo_command(CLI::App& app) {
  auto opt = std::make_shared<DemoOptions>();
  auto* cmd =
      app.add_subcommand("demo", "Run the whole pipeline on synthetic data (synth, split, train, index, query, eval)");
  cmd->add_option("--out", opt->out, "Output folder")->capture_default_str();
  cmd->add_option("--count", opt->count, "Synthetic images")->capture_default_str();
  cmd->add_option("--seed", opt->seed, "Random seed")->capture_default_str();
  cmd->add_option("--epochs", opt->epochs, "Training epochs (default: 4 with ImageNet weights, 12 from scratch)");
  cmd->add_option("--size", opt->input_size, "Network input size in pixels")->capture_default_str();
  cmd->add_option("--pretrained", opt->pretrained,
                  "ImageNet MobileNetV2 weights: a .pth, imagenet or mobilenet_v2:VERSION; default: torch.hub's cache "
                  "(`fundus model fetch mobilenet_v2`), else ../shared/models/mobilenet_v2_imagenet1k.pth if present; "
                  "none = train the small scratch recipe from random initialisation");
  cmd->add_option("--threads", opt->threads, "Compute threads (0 = all cores)");
  cmd->add_flag("--fresh", opt->fresh, "Delete the output folder first");
  cmd->callback([opt] { run_demo(*opt); });
}

}  // namespace fundus::cli

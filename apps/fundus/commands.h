// The `fundus` CLI: one binary, one CLI11 subcommand per task. Each cmd_*.cpp registers its
// subcommands and turns options into calls of the library; no logic lives here.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "fundus/infer/launcher.h"

namespace fundus {
struct TrainSummary;  // train/trainer.h
}

namespace fundus::cli {

void add_dataset_commands(CLI::App& app);  // dataset validate|stats|split
void add_image_commands(CLI::App& app);    // preprocess
void add_synth_command(CLI::App& app);     // synth
void add_model_commands(CLI::App& app);    // model info|presets
void add_train_commands(CLI::App& app);    // train
void add_cv_command(CLI::App& app);        // cv
void add_store_commands(CLI::App& app);    // store add|remove|stats|export|check, index build|info
void add_search_commands(CLI::App& app);   // embed, query, eval, explain (cmd_search.cpp)
void add_serve_command(CLI::App& app);     // serve (cmd_serve.cpp)
void add_demo_command(CLI::App& app);      // demo

/// Makes every integer and floating-point option of `app` and its subcommands accept decimal numbers
/// only (no hex, octal or exponent readings of "0x10", "010", "1e2"). Call once all are registered.
void require_decimal_numbers(CLI::App& app);

/// Shared option: compute threads (0 = all cores). Applies to torch, OpenMP and our pools.
void add_threads_option(CLI::App& cmd, int& threads);
/// Shared option: --pretrained, backbone weights (sets model.pretrained) of train and cv.
void add_pretrained_option(CLI::App& cmd, std::string& pretrained);
/// Which epoch a finished run kept: "kept the last epoch (8)" or "best val_mAP@10 = 0.4210 at epoch 5".
std::string describe_selection(const TrainSummary& summary);
/// Shared option: --device cpu|cuda|auto (where the model runs; model/runtime.h resolve_device).
void add_device_option(CLI::App& cmd, std::string& device);
/// Shared options of distributed commands: --nproc, --nnodes, --node-rank, --master-addr,
/// --master-port, --dist-timeout (infer/launcher.h).
void add_distributed_options(CLI::App& cmd, LaunchOptions& options);
/// This process's place in the run. A launcher (--nproc > 1, or --nnodes > 1) starts the local
/// workers, waits, returns nullopt when they all succeeded and throws when one failed.
std::optional<DistributedOptions> launch_or_join(const LaunchOptions& options);
/// Runs `body`; errors of a distributed worker are prefixed with its rank ("rank 1/2: ...").
void run_as_rank(const DistributedOptions& world, const std::function<void()>& body);

}  // namespace fundus::cli

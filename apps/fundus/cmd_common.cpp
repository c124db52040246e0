#include "commands.h"

#include "fundus/core/error.h"
#include "fundus/core/strings.h"
#include "fundus/train/trainer.h"

namespace fundus::cli {

void require_decimal_numbers(CLI::App& app) {
  // CLI11 converts with strtoll(..., 0) and strtold: "-k 0x10" would be 16, "-k 010" 8, "1e2" 100.
  const CLI::Validator integer(
      [](std::string& text) -> std::string {
        int64_t v = 0;
        return try_parse_int(text, v) ? "" : "'" + text + "' is not a decimal integer";
      },
      "");
  const CLI::Validator number(
      [](std::string& text) -> std::string {
        double v = 0;
        return try_parse_double(text, v) ? "" : "'" + text + "' is not a decimal number";
      },
      "");
  for (CLI::Option* option : app.get_options([](CLI::Option*) { return true; })) {
    const std::string type = option->get_type_name();
    if (starts_with(type, "INT") || starts_with(type, "UINT")) option->check(integer);
    else if (starts_with(type, "FLOAT")) option->check(number);
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) require_decimal_numbers(*sub);
}

void add_threads_option(CLI::App& cmd, int& threads) {
  cmd.add_option("--threads", threads, "Compute threads (0 = all cores)")->check(CLI::NonNegativeNumber);
}

void add_pretrained_option(CLI::App& cmd, std::string& pretrained) {
  cmd.add_option("--pretrained", pretrained,
                 "Backbone weights (sets model.pretrained): a .pth, imagenet (torch.hub's cache; see `fundus model "
                 "fetch`) or a weights name like mobilenet_v2:IMAGENET1K_V1");
}

std::string describe_selection(const TrainSummary& s) {
  if (s.select == "last") return strprintf("kept the last epoch (%d)", s.best_epoch);
  return strprintf("best %s = %.4f at epoch %d", s.select.c_str(), s.best_value, s.best_epoch);
}

void add_device_option(CLI::App& cmd, std::string& device) {
  cmd.add_option("--device", device, "Where the model runs: cpu, cuda (fails without a CUDA device) or auto")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
}

void add_distributed_options(CLI::App& cmd, LaunchOptions& o) {
  const char* group = "Distributed (docs/scaling.md)";
  cmd.add_option("--nproc", o.nproc, "Worker processes on this machine")->group(group)->check(CLI::Range(1, 256));
  cmd.add_option("--nnodes", o.nnodes, "Machines taking part")->group(group)->check(CLI::Range(1, 4096));
  cmd.add_option("--node-rank", o.node_rank, "This machine, 0..nnodes-1 (node 0 hosts rank 0)")->group(group);
  cmd.add_option("--master-addr", o.master_addr, "Address of node 0, reachable from every node")->group(group);
  cmd.add_option("--master-port", o.master_port, "TCP port of the rendezvous store on node 0 (default: free / 29500)")
      ->group(group);
  cmd.add_option("--dist-timeout", o.timeout_seconds, "Seconds a rank waits for a silent peer before failing")
      ->capture_default_str()
      ->group(group);
}

std::optional<DistributedOptions> launch_or_join(const LaunchOptions& options) {
  LaunchPlan plan = plan_launch(options);
  if (plan.role != LaunchRole::launcher) return plan.world;
  const int status = run_local_workers(plan);
  FUNDUS_CHECK(status == 0, "distributed run failed: a worker ended with status "
                                << status
                                << " (its error is above); the others were stopped. Restart from the last "
                                   "checkpoint with --resume (docs/scaling.md)");
  return std::nullopt;
}

void run_as_rank(const DistributedOptions& world, const std::function<void()>& body) {
  if (!world.distributed()) return body();
  try {
    body();
  } catch (const Error& e) {
    if (starts_with(e.message(), "rank ")) throw;
    FUNDUS_THROW(world.describe() << ": " << e.message());
  }
}

}  // namespace fundus::cli

#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "commands.h"
#include "fundus/core/error.h"

namespace {
// libgomp reads OMP_WAIT_POLICY when it is loaded, before main: setting it here is too late, so the
// process re-executes itself once. PASSIVE keeps 2 threads fast on a shared 2-core box (docs/build.md).
void ensure_passive_openmp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("FUNDUS_NO_REEXEC")) return;
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::execv("/proc/self/exe", argv);  // on failure just continue with the default policy
}
}  // namespace

int main(int argc, char** argv) {
  ensure_passive_openmp(argv);
  CLI::App app{
      "fundus: similar-case retrieval for retinal (fundus) photographs.\n"
      "Research tool, not a diagnostic device."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "fundus 0.1.0");
  fundus::cli::add_demo_command(app);
  fundus::cli::add_dataset_commands(app);
  fundus::cli::add_image_commands(app);
  fundus::cli::add_synth_command(app);
  fundus::cli::add_model_commands(app);
  fundus::cli::add_train_commands(app);
  fundus::cli::add_cv_command(app);
  fundus::cli::add_store_commands(app);
  fundus::cli::add_search_commands(app);
  fundus::cli::add_serve_command(app);
  fundus::cli::require_decimal_numbers(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const fundus::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

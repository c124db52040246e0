#include "commands.h"

namespace fundus::cli {

void add_threads_option(CLI::App& cmd, int& threads) {
  cmd.add_option("--threads", threads, "Compute threads (0 = all cores)")->check(CLI::NonNegativeNumber);
}

}  // namespace fundus::cli

#include "commands.h"

namespace fundus::cli {

void add_synth_command(CLI::App& app) { (void)app; }

}  // namespace fundus::cli

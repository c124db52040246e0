#include "commands.h"

namespace fundus::cli {

void add_demo_command(CLI::App& app) { (void)app; }

}  // namespace fundus::cli

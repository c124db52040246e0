#include "commands.h"

namespace fundus::cli {

void add_serve_commands(CLI::App& app) { (void)app; }

}  // namespace fundus::cli

#include "commands.h"

namespace fundus::cli {

void add_store_commands(CLI::App& app) { (void)app; }

}  // namespace fundus::cli

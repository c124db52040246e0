#include "commands.h"

namespace fundus::cli {

void add_model_commands(CLI::App& app) { (void)app; }

}  // namespace fundus::cli

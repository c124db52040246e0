#include "commands.h"

namespace fundus::cli {

void add_image_commands(CLI::App& app) { (void)app; }

}  // namespace fundus::cli

#include <iostream>

#include "demo_steps.h"

namespace fundus::cli {

void run_demo_retrieval(const DemoOptions&, const std::string&, const std::string& checkpoint) {
  std::cout << "\n(model checkpoint: " << checkpoint << ")\n";
}

}  // namespace fundus::cli

#pragma once

#include <cstdint>
#include <string>

namespace fundus::cli {

struct DemoOptions {
  std::string out = "demo-out";
  int count = 240;
  uint64_t seed = 7;
  int epochs = 0;  // 0 = the recipe's demo default (cpu: 4, scratch: 8)
  int input_size = 128;
  std::string pretrained;  // "" = look in the usual places; "none" = train from scratch
  int threads = 0;
  bool fresh = false;
};

void run_demo(const DemoOptions& options);

}  // namespace fundus::cli

namespace fundus::cli {
/// "== 3. split by patient ... ==": the heading of one demo step.
void banner(int step, const std::string& title);

/// Steps 6-8: store + embed + index, queries, evaluation (demo_retrieval.cpp).
void run_demo_retrieval(const DemoOptions& options, const std::string& split_dir, const std::string& checkpoint);
}  // namespace fundus::cli

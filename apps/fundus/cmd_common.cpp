#include "commands.h"

#include "fundus/core/strings.h"

namespace fundus::cli {

void require_decimal_numbers(CLI::App& app) {
  // CLI11 converts with strtoll(..., 0) and strtold: "-k 0x10" would be 16, "-k 010" 8, "1e2" 100.
  const CLI::Validator integer(
      [](std::string& text) -> std::string {
        int64_t v = 0;
        return try_parse_int(text, v) ? "" : "'" + text + "' is not a decimal integer";
      },
      "");
  const CLI::Validator number(
      [](std::string& text) -> std::string {
        double v = 0;
        return try_parse_double(text, v) ? "" : "'" + text + "' is not a decimal number";
      },
      "");
  for (CLI::Option* option : app.get_options([](CLI::Option*) { return true; })) {
    const std::string type = option->get_type_name();
    if (starts_with(type, "INT") || starts_with(type, "UINT")) option->check(integer);
    else if (starts_with(type, "FLOAT")) option->check(number);
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) require_decimal_numbers(*sub);
}

void add_threads_option(CLI::App& cmd, int& threads) {
  cmd.add_option("--threads", threads, "Compute threads (0 = all cores)")->check(CLI::NonNegativeNumber);
}

}  // namespace fundus::cli

// Shared test helpers (torch-free): temporary directories, the optional shared data, running the
// real `fundus` CLI and the Python oracle (/usr/bin/python3 with Debian's torch) as subprocesses.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fundus/core/error.h"

namespace fundus::test {

/// A fresh directory under $TMPDIR removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string source_dir();  // the repository root
std::string shared_dir();  // ../shared (may not exist)
/// Path of a shared dataset ("rahim-dr-tiny", "rahim-dr") or "" when absent.
std::string shared_dataset(const std::string& name);
std::string shared_model(const std::string& file);  // "" when absent

/// Skips the current test with a clear message when the shared dataset is absent.
#define FUNDUS_REQUIRE_SHARED_DATASET(var, name)                                                     \
  std::string var = ::fundus::test::shared_dataset(name);                                            \
  if (var.empty())                                                                                   \
  GTEST_SKIP() << "shared dataset '" << name << "' not found under " << ::fundus::test::shared_dir() \
               << " (tests on real images skipped)"

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr interleaved
};
/// Runs `command` through /bin/sh, capturing output.
CommandResult run_command(const std::string& command);
/// Runs the built `fundus` CLI with the given argument string.
CommandResult run_cli(const std::string& args);

/// Whether FUNDUS_PYTHON can `import torch, torchvision`; cached.
bool python_oracle_available();
#define FUNDUS_REQUIRE_PYTHON_ORACLE()            \
  if (!::fundus::test::python_oracle_available()) \
  GTEST_SKIP() << "Python oracle (" << FUNDUS_PYTHON << " with torch+torchvision) not available"
/// Writes `script` to a file and runs it with FUNDUS_PYTHON and `args`; fails the test on error.
CommandResult run_python(const std::string& script, const std::string& args = "");

/// Shell-quotes one argument.
std::string shell_quote(const std::string& s);

/// A TCP port on 127.0.0.1 where nothing listens (bound, then closed): connections are refused.
int closed_local_port();
/// `depth` nested JSON objects, {"a":{"a":...1...}} (hostile-input tests).
std::string nested_json(int depth);
/// Runs SQL on a SQLite file directly (to build old schemas or damage a store on purpose); a failure
/// fails the current test.
void run_sql(const std::string& db_path, const std::string& sql);

/// The message of the fundus::Error thrown by f ("" when nothing is thrown).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

}  // namespace fundus::test

// Shared by the libFuzzer harnesses (fuzz/fuzz_*.cpp): the rule every reader must keep on hostile
// bytes, and a private temporary folder for readers that take a path.
//
// The rule: a reader either succeeds or throws fundus::Error (whose message names the input). A
// crash, a sanitizer report, an allocation beyond libFuzzer's -malloc_limit_mb, or any other
// exception (std::bad_alloc, std::length_error, a LibTorch c10::Error, an nlohmann exception: each
// means a size or value was used before it was validated, and none names the file) is a finding:
// the harness aborts so that libFuzzer saves the input.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <typeinfo>

#include "fundus/core/error.h"
#include "fundus/core/log.h"

namespace fundus::fuzz {

/// Reports a broken contract and aborts, so that libFuzzer saves the input.
[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "FINDING: %s\n", what.c_str());
  std::abort();
}

template <typename F>
void expect_only_fundus_errors(F&& run) {
  try {
    run();
  } catch (const fundus::Error&) {
    // the documented outcome for bad input
  } catch (const std::exception& e) {
    finding(std::string("exception ") + typeid(e).name() + " escaped a reader: " + e.what());
  }
}

/// A folder of this process under $TMPDIR (scripts/fuzz.sh points it into the build folder),
/// removed at normal exit.
inline const std::string& temp_dir() {
  static const std::string dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/fundus-fuzz-XXXXXX";
    if (!mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    static std::string keep = tmpl;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(keep, ec);
    });
    return tmpl;
  }();
  return dir;
}

inline void write_bytes(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::abort();
  }
}

/// Warnings about the hostile input itself (libjpeg warnings, skipped rows) would flood the output.
inline void quiet_logs() { set_log_level(LogLevel::error); }

}  // namespace fundus::fuzz

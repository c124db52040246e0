// Progress reporting for long work: a bar with count, rate, ETA and a free-text suffix
// (e.g. "loss 0.231"). On a terminal it redraws one line on stderr at most 10 times a second; when
// stderr is not a terminal (logs, CI) it prints a plain line every `log_every_s` seconds and at the end.
// Thread-safe: workers may call advance() concurrently. Silent when quiet() is set globally
// (FUNDUS_QUIET=1 or set_progress_quiet(true)).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace fundus {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "it");
  ~Progress();  // calls finish() if not finished
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(int64_t n = 1, const std::string& suffix = "");
  void set_suffix(const std::string& suffix);
  void finish(const std::string& suffix = "");

  int64_t done() const { return done_; }
  double elapsed_seconds() const;
  double rate() const;  // units per second so far

 private:
  void draw(bool final_line);
  std::string label_, unit_, suffix_;
  int64_t total_, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool finished_ = false, tty_;
  double log_every_s_ = 10.0;
  mutable std::mutex mu_;
};

void set_progress_quiet(bool quiet);
bool progress_quiet();

/// "1m 23s", "2h 05m", "12.3s".
std::string format_duration(double seconds);

}  // namespace fundus

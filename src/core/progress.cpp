#include "fundus/core/progress.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace fundus {

namespace {
std::atomic<int> g_quiet{-1};
}

void set_progress_quiet(bool quiet) { g_quiet = quiet ? 1 : 0; }
bool progress_quiet() {
  if (g_quiet < 0) {
    const char* env = std::getenv("FUNDUS_QUIET");
    g_quiet = (env && *env && std::string(env) != "0") ? 1 : 0;
  }
  return g_quiet == 1;
}

std::string format_duration(double s) {
  char buf[64];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm %02ds", int(s) / 60, int(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh %02dm", int(s) / 3600, (int(s) % 3600) / 60);
  }
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_),
      tty_(::isatty(2) == 1) {}

Progress::~Progress() {
  if (!finished_) finish();
}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double Progress::rate() const {
  double e = elapsed_seconds();
  return e > 0 ? double(done_) / e : 0.0;
}

void Progress::advance(int64_t n, const std::string& suffix) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ += n;
  if (!suffix.empty()) suffix_ = suffix;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if ((tty_ && since >= 0.1) || (!tty_ && since >= log_every_s_)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::set_suffix(const std::string& suffix) {
  std::lock_guard<std::mutex> lock(mu_);
  suffix_ = suffix;
}

void Progress::finish(const std::string& suffix) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (!suffix.empty()) suffix_ = suffix;
  draw(true);
}

void Progress::draw(bool final_line) {
  if (progress_quiet()) return;
  double elapsed = elapsed_seconds();
  double r = elapsed > 0 ? double(done_) / elapsed : 0.0;
  char line[512];
  if (total_ > 0) {
    double frac = std::min(1.0, double(done_) / double(total_));
    const int width = 24;
    int filled = int(frac * width);
    std::string bar(size_t(filled), '#');
    bar += std::string(size_t(width - filled), '.');
    double eta = r > 0 ? double(total_ - done_) / r : NAN;
    std::snprintf(line, sizeof line, "%s [%s] %lld/%lld %5.1f%% %.1f %s/s %s %s %s", label_.c_str(), bar.c_str(),
                  (long long)done_, (long long)total_, 100.0 * frac, r, unit_.c_str(), final_line ? "in" : "ETA",
                  format_duration(final_line ? elapsed : eta).c_str(), suffix_.c_str());
  } else {
    std::snprintf(line, sizeof line, "%s %lld %s %.1f %s/s %s %s", label_.c_str(), (long long)done_, unit_.c_str(), r,
                  unit_.c_str(), format_duration(elapsed).c_str(), suffix_.c_str());
  }
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line, final_line ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line);
  }
  std::fflush(stderr);
}

}  // namespace fundus

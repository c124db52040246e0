// A small deterministic random generator (xoshiro256**, seeded by splitmix64) with its own
// distributions, so that "the same seed gives the same split / augmentation / batch order on any
// machine": std:: distributions are implementation-defined and differ between standard libraries.
// Not thread-safe: give each thread its own Rng (derive seeds with Rng::derive).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace fundus {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0x5eed);
  uint64_t next_u64();
  /// Uniform in [0, 1) with 53 random bits.
  double uniform();
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n); n > 0. Unbiased (rejection sampling).
  uint64_t below(uint64_t n);
  /// Standard normal (Box-Muller, no cached second value so the state stays a pure 256-bit word).
  double normal();
  bool bernoulli(double p) { return uniform() < p; }

  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

  /// A new independent seed from this seed and a stream id (for per-worker / per-epoch generators).
  static uint64_t derive(uint64_t seed, uint64_t stream);

  /// Serialisable state (for checkpoint/resume).
  std::array<uint64_t, 4> state() const { return s_; }
  void set_state(const std::array<uint64_t, 4>& s) { s_ = s; }
  std::string state_string() const;  // "s0 s1 s2 s3" in hex
  void set_state_string(const std::string& text);

 private:
  std::array<uint64_t, 4> s_;
};

uint64_t splitmix64(uint64_t& x);

}  // namespace fundus

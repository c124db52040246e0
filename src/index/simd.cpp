#include "fundus/index/simd.h"

#include <cmath>
#include <cstring>

namespace fundus {

// The helpers below never cross a library boundary, so GCC's note about the vector ABI is moot.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace {
// 16 floats: one AVX-512 register, two AVX2 or four SSE registers, whatever the clone targets.
typedef float v16f __attribute__((vector_size(64)));
// The same vector at float alignment: dereferencing it is an unaligned load. (Not a helper function
// returning v16f: clang rejects such a call in the clones without AVX-512 as an ABI change.)
typedef float v16f_unaligned __attribute__((vector_size(64), aligned(4), may_alias));
}  // namespace

#define load16(p) (*reinterpret_cast<const v16f_unaligned*>(p))

// fp-contract=fast lets GCC fuse a*b+s into FMA (off by default in ISO C++ mode). Four accumulators
// hide the FMA latency when the vectors are in cache (HNSW); long scans are bandwidth-bound anyway.
__attribute__((optimize("fp-contract=fast"), target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) float
dot_f32(const float* a, const float* b, int64_t n) {
  v16f s0 = {}, s1 = {}, s2 = {}, s3 = {};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 += load16(a + i) * load16(b + i);
    s1 += load16(a + i + 16) * load16(b + i + 16);
    s2 += load16(a + i + 32) * load16(b + i + 32);
    s3 += load16(a + i + 48) * load16(b + i + 48);
  }
  for (; i + 16 <= n; i += 16) s0 += load16(a + i) * load16(b + i);
  s0 += s1 + s2 + s3;
  float s = 0;
  for (int j = 0; j < 16; ++j) s += s0[j];
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void l2_normalize_rows(float* x, int64_t rows, int dim) {
  for (int64_t r = 0; r < rows; ++r) {
    float* v = x + r * dim;
    double ss = 0;
    for (int j = 0; j < dim; ++j) ss += double(v[j]) * v[j];
    if (ss <= 0) continue;
    float inv = float(1.0 / std::sqrt(ss));
    for (int j = 0; j < dim; ++j) v[j] *= inv;
  }
}

const char* simd_level() {
  __builtin_cpu_init();
#if defined(__clang__)  // clang (14) knows no "x86-64-vN" feature strings: test their main features
  const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
  if (v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "avx512";
  if (v3) return "avx2";
#else
  if (__builtin_cpu_supports("x86-64-v4")) return "avx512";
  if (__builtin_cpu_supports("x86-64-v3")) return "avx2";
#endif
  return "baseline";
}

}  // namespace fundus

#undef load16

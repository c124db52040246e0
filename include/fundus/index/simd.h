// Vector kernels shared by the indexes. The binary targets baseline x86-64; the hot kernels are
// compiled three times (x86-64-v4 = AVX-512, v3 = AVX2+FMA, baseline SSE2) and the loader picks the
// best one for the CPU at start-up (GCC target_clones / ifunc). Pure functions, thread-safe.
#pragma once

#include <cstdint>

namespace fundus {

/// sum_i a[i] * b[i] in float with several independent accumulators (so the result may differ from
/// a sequential sum in the last bits).
float dot_f32(const float* a, const float* b, int64_t n);

/// Scales each of the `rows` rows of `x` [rows x dim] to unit L2 norm; all-zero rows stay zero.
void l2_normalize_rows(float* x, int64_t rows, int dim);

/// Name of the kernel variant the CPU runs: "avx512", "avx2" or "baseline" (for benchmarks/logs).
const char* simd_level();

}  // namespace fundus

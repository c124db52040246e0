// Process-wide compute settings for LibTorch: thread count, seeding, device choice.
// Debian's LibTorch starts with 1 intra-op thread (hardware_concurrency/2), so every entry point
// calls set_compute_threads() explicitly.
#pragma once

#include <cstdint>
#include <string>

namespace fundus {

/// Sets LibTorch intra-op threads and OpenMP threads; 0 means all available cores. Returns the count.
int set_compute_threads(int threads);
/// Seeds LibTorch's global generator (model init, dropout).
void seed_torch(uint64_t seed);
/// "cpu", or "cuda" when requested ("auto"/"cuda") and available; throws for "cuda" without a GPU.
std::string resolve_device(const std::string& requested);

}  // namespace fundus

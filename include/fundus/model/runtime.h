// Process-wide compute settings for LibTorch: thread count, seeding, device choice.
// Debian's LibTorch starts with 1 intra-op thread (hardware_concurrency/2), so every entry point
// calls set_compute_threads() explicitly.
#pragma once

#include <cstdint>
#include <string>

namespace fundus {

/// Sets LibTorch intra-op threads and OpenMP threads; 0 means all available cores. Returns the count.
/// Also calls keep_freed_memory() (once per process).
int set_compute_threads(int threads);
/// Keeps freed memory in the process heap for reuse instead of handing large blocks back to the OS
/// (glibc mallopt: no mmap for big blocks, no trimming). A CPU forward allocates and frees tensors of
/// hundreds of MB; by default each is a fresh mmap that page-faults in again on every iteration,
/// which made MobileNetV2 inference ~4x slower on the development box (docs/bench-model.md). The
/// price: the resident size stays at its high-water mark. Idempotent; a no-op outside glibc.
void keep_freed_memory();
/// Seeds LibTorch's global generator (model init, dropout).
void seed_torch(uint64_t seed);
/// "cpu", or "cuda" when requested ("auto"/"cuda") and available; throws for "cuda" without a GPU
/// (one line naming --device). "cuda:N" asks for device N (throws when there is no such device).
std::string resolve_device(const std::string& requested);
/// resolve_device() for one of several processes on a machine: a CUDA request becomes
/// "cuda:<local_rank modulo the device count>" (one GPU per process); "cpu" stays "cpu".
std::string resolve_device_for_rank(const std::string& requested, int local_rank);

}  // namespace fundus

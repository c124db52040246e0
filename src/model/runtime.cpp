#include "fundus/model/runtime.h"

#include <omp.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <climits>
#include <torch/torch.h>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"

namespace fundus {

void keep_freed_memory() {
#if defined(__GLIBC__)
  static const bool done = [] {
    mallopt(M_MMAP_MAX, 0);                 // big blocks from the heap, where they can be reused
    mallopt(M_TRIM_THRESHOLD, INT_MAX);     // and do not return the heap top to the OS
    return true;
  }();
  (void)done;
#endif
}

int set_compute_threads(int threads) {
  keep_freed_memory();
  if (threads <= 0) threads = available_cores();
  torch::set_num_threads(threads);
  omp_set_num_threads(threads);
  return threads;
}

void seed_torch(uint64_t seed) { torch::manual_seed(seed); }

std::string resolve_device(const std::string& requested) {
  if (requested == "cpu") return "cpu";
  bool cuda = torch::cuda::is_available();
  if (requested == "auto") return cuda ? "cuda" : "cpu";
  FUNDUS_CHECK(requested == "cuda", "device must be cpu, cuda or auto, not '" << requested << "'");
  FUNDUS_CHECK(cuda, "device 'cuda' requested but no CUDA device is available (this LibTorch build: "
                         << (torch::cuda::is_available() ? "CUDA" : "CPU-only") << ")");
  return "cuda";
}

}  // namespace fundus

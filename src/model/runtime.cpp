#include "fundus/model/runtime.h"

#include <omp.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <climits>
#include <torch/torch.h>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"
#include "fundus/core/strings.h"

namespace fundus {

void keep_freed_memory() {
#if defined(__GLIBC__)
  static const bool done = [] {
    mallopt(M_MMAP_MAX, 0);              // big blocks from the heap, where they can be reused
    mallopt(M_TRIM_THRESHOLD, INT_MAX);  // and do not return the heap top to the OS
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
  int64_t index = -1;
  const bool indexed = requested.rfind("cuda:", 0) == 0 && try_parse_int(requested.substr(5), index) && index >= 0;
  FUNDUS_CHECK(requested == "cuda" || indexed, "--device must be cpu, cuda or auto, not '" << requested << "'");
  FUNDUS_CHECK(cuda, "--device " << requested << ": no CUDA device is available (this machine or this LibTorch "
                                 << "build has none); use --device cpu");
  FUNDUS_CHECK(!indexed || index < int64_t(torch::cuda::device_count()),
               "--device " << requested << ": this machine has " << torch::cuda::device_count() << " CUDA device(s)");
  return requested;
}

std::string resolve_device_for_rank(const std::string& requested, int local_rank) {
  const std::string device = resolve_device(requested);
  if (device != "cuda") return device;
  return "cuda:" + std::to_string(local_rank % std::max<int64_t>(1, int64_t(torch::cuda::device_count())));
}

}  // namespace fundus

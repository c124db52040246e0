// CUDA-only queries (FUNDUS_WITH_CUDA=ON): the one place that includes c10/cuda and ATen/cuda headers,
// which need the CUDA toolkit's include directory. Compiled only against a CUDA LibTorch.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>

#include "fundus/core/strings.h"
#include "fundus/model/device.h"

namespace fundus {

std::string cuda_summary() {
  const int64_t n = torch::cuda::is_available() ? int64_t(torch::cuda::device_count()) : 0;
  std::string s = "CUDA build (FUNDUS_WITH_CUDA), " + std::to_string(n) + " device(s)";
  for (int64_t i = 0; i < n; ++i) {
    const cudaDeviceProp* p = at::cuda::getDeviceProperties(i);
    s += strprintf("%s%s (%.1f GiB, sm_%d%d)", i == 0 ? ": " : ", ", p->name, double(p->totalGlobalMem) / (1 << 30),
                   p->major, p->minor);
  }
  return s;
}

int64_t cuda_peak_memory_bytes() {
  if (!torch::cuda::is_available()) return 0;
  int64_t peak = 0;
  for (int64_t i = 0; i < int64_t(torch::cuda::device_count()); ++i)
    // allocated_bytes[0]: StatType::AGGREGATE (index 0 in 1.13 and 2.x).
    peak = std::max<int64_t>(peak, c10::cuda::CUDACachingAllocator::getDeviceStats(int(i)).allocated_bytes[0].peak);
  return peak;
}

void reset_cuda_peak_memory() {
  if (!torch::cuda::is_available()) return;
  for (int64_t i = 0; i < int64_t(torch::cuda::device_count()); ++i)
    c10::cuda::CUDACachingAllocator::resetPeakStats(int(i));
}

}  // namespace fundus

#include "fundus/model/device.h"

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "fundus/core/error.h"

// LibTorch 2.4 replaced the CUDA-only autocast calls by device-typed ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define FUNDUS_AUTOCAST_DEVICE_TYPED 1
#else
#define FUNDUS_AUTOCAST_DEVICE_TYPED 0
#endif

namespace fundus {

torch::Device module_device(const torch::nn::Module& module) {
  for (const auto& p : module.parameters()) return p.device();
  return torch::kCPU;
}

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  if (name == "fp16") return Precision::fp16;
  FUNDUS_THROW("--precision: '" << name << "' is not fp32, bf16 or fp16");
}

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::fp32:
      return "fp32";
    case Precision::bf16:
      return "bf16";
    case Precision::fp16:
      return "fp16";
  }
  return "?";
}

void check_precision(Precision precision, const torch::Device& device, bool training) {
  if (precision == Precision::fp32) return;
  FUNDUS_CHECK(device.is_cuda(), "--precision " << precision_name(precision)
                                                << ": mixed precision runs on CUDA only (--device cuda); use fp32 on "
                                                << device.str());
  FUNDUS_CHECK(!(training && precision == Precision::fp16),
               "--precision fp16: training in fp16 needs loss scaling, which fundus does not do; use bf16");
}

AutocastGuard::AutocastGuard(Precision precision, const torch::Device& device) {
  if (precision == Precision::fp32 || !device.is_cuda()) return;
  const at::ScalarType dtype = precision == Precision::bf16 ? at::kBFloat16 : at::kHalf;
  active_ = true;
#if FUNDUS_AUTOCAST_DEVICE_TYPED
  was_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
  previous_dtype_ = int(at::autocast::get_autocast_dtype(at::kCUDA));
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
  was_enabled_ = at::autocast::is_enabled();
  previous_dtype_ = int(at::autocast::get_autocast_gpu_dtype());
  at::autocast::set_autocast_gpu_dtype(dtype);
  at::autocast::set_enabled(true);
#endif
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  at::autocast::clear_cache();  // cached lower-precision copies of the weights belong to this scope
#if FUNDUS_AUTOCAST_DEVICE_TYPED
  at::autocast::set_autocast_enabled(at::kCUDA, was_enabled_);
  at::autocast::set_autocast_dtype(at::kCUDA, at::ScalarType(previous_dtype_));
#else
  at::autocast::set_enabled(was_enabled_);
  at::autocast::set_autocast_gpu_dtype(at::ScalarType(previous_dtype_));
#endif
}

#ifndef FUNDUS_WITH_CUDA
// CPU builds: the CUDA-specific queries live in src/model/cuda/ (FUNDUS_WITH_CUDA=ON).
std::string cuda_summary() {
  return std::string("CPU-only build (FUNDUS_WITH_CUDA off); LibTorch ") +
         (torch::cuda::is_available() ? "sees " + std::to_string(torch::cuda::device_count()) + " CUDA device(s)"
                                      : "sees no CUDA device");
}
int64_t cuda_peak_memory_bytes() { return 0; }
void reset_cuda_peak_memory() {}
#endif

}  // namespace fundus

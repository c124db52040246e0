// Where a model computes and in which precision: the device of a module, mixed precision
// (autocast) on CUDA, and a summary of what this build can use. The device is chosen with
// resolve_device() (model/runtime.h: cpu | cuda | auto).
//
// Portability: the autocast API differs between LibTorch 1.13 (at::autocast::set_enabled,
// set_autocast_gpu_dtype) and 2.4+ (set_autocast_enabled(device_type, on), set_autocast_dtype);
// src/model/device.cpp is the one translation unit that knows both (a TORCH_VERSION guard).
// CUDA-specific headers (c10/cuda, ATen/cuda) appear only in src/model/cuda/, compiled with the
// CMake option FUNDUS_WITH_CUDA=ON (docs/scaling.md, "GPU builds"). Nothing here needs a GPU.
#pragma once

#include <string>

#include <torch/torch.h>

namespace fundus {

/// The device of the module's first parameter (CPU for a module without parameters).
torch::Device module_device(const torch::nn::Module& module);

enum class Precision { fp32, bf16, fp16 };
/// "fp32" | "bf16" | "fp16"; throws naming the valid values otherwise.
Precision parse_precision(const std::string& name);
const char* precision_name(Precision precision);

/// Throws fundus::Error (one line naming --precision) when `precision` cannot run on `device`:
/// bf16/fp16 need a CUDA device; fp16 training would need loss scaling, which we do not do
/// (bf16 has fp32's exponent range and needs none).
void check_precision(Precision precision, const torch::Device& device, bool training);

/// Mixed precision for the forward passes in its scope (forward + loss; not backward): CUDA
/// autocast to bf16 or fp16 (convolutions and matmuls in the lower precision, reductions, norms and
/// losses in fp32, as PyTorch's autocast lists decide). fp32 or a CPU device: does nothing.
/// Restores the previous autocast state. Not thread-safe across threads sharing a scope (autocast
/// state is thread-local in LibTorch).
class AutocastGuard {
 public:
  AutocastGuard(Precision precision, const torch::Device& device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false, was_enabled_ = false;
  int previous_dtype_ = 0;
};

/// One line: "CUDA build (FUNDUS_WITH_CUDA), 1 device: NVIDIA H100 80GB HBM3 (79.1 GiB)" or
/// "CPU-only build (FUNDUS_WITH_CUDA off); LibTorch sees no CUDA device".
std::string cuda_summary();
/// Peak CUDA memory allocated by tensors since the last reset, in bytes (0 without CUDA).
int64_t cuda_peak_memory_bytes();
void reset_cuda_peak_memory();

}  // namespace fundus

// resolve_device: cpu | cuda | cuda:N | auto, checked against what this machine and LibTorch build have.
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fundus/core/error.h"
#include "fundus/model/runtime.h"
#include "test_support.h"

namespace fundus {
namespace {

TEST(Runtime, ResolveDevice) {
  EXPECT_EQ(resolve_device("cpu"), "cpu");
  EXPECT_EQ(resolve_device_for_rank("cpu", 3), "cpu");
  EXPECT_NE(test::error_of([] { resolve_device("gpu"); }).find("--device must be cpu, cuda or auto, not 'gpu'"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { resolve_device("cuda:x"); }).find("not 'cuda:x'"), std::string::npos);
  EXPECT_NE(test::error_of([] { resolve_device("cuda:-1"); }).find("not 'cuda:-1'"), std::string::npos);
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(resolve_device("auto"), "cpu");
    EXPECT_NE(test::error_of([] { resolve_device("cuda"); }).find("--device cuda: no CUDA device is available"),
              std::string::npos);
    EXPECT_THROW(resolve_device("cuda:0"), Error);
  } else {
    const int64_t count = int64_t(torch::cuda::device_count());
    EXPECT_EQ(resolve_device("auto"), "cuda");
    EXPECT_EQ(resolve_device("cuda:0"), "cuda:0");
    EXPECT_EQ(resolve_device_for_rank("cuda", int(count)), "cuda:0");  // ranks wrap around the devices
    EXPECT_NE(test::error_of([&] { resolve_device("cuda:" + std::to_string(count)); }).find("CUDA device(s)"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace fundus

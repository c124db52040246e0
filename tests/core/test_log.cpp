// Logging: the level set by set_log_level filters messages below it; the message carries its level.
#include <string>

#include <gtest/gtest.h>

#include "fundus/core/log.h"

namespace fundus {
namespace {

TEST(Log, SetLogLevelFiltersLowerLevels) {
  const LogLevel before = log_level();
  set_log_level(LogLevel::warn);
  EXPECT_EQ(log_level(), LogLevel::warn);
  testing::internal::CaptureStderr();
  FUNDUS_INFO("below the level " << 1);
  FUNDUS_DEBUG("below the level " << 2);
  FUNDUS_WARN("at the level " << 3);
  std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.find("below the level"), std::string::npos) << out;
  EXPECT_NE(out.find(" warn] at the level 3\n"), std::string::npos) << out;

  set_log_level(LogLevel::debug);
  testing::internal::CaptureStderr();
  FUNDUS_DEBUG("now shown");
  out = testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find(" debug] now shown\n"), std::string::npos) << out;
  set_log_level(before);
}

}  // namespace
}  // namespace fundus

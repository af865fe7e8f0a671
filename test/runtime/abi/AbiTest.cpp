//===- test/runtime/abi/AbiTest.cpp - ABI version rules ------------------===//
#include "runtime/abi/moec_abi.h"

#include <gtest/gtest.h>

#include <string>

namespace {

moec_abi_version_t version(unsigned major, unsigned minor) {
  return moec_abi_version_t{static_cast<uint16_t>(major),
                            static_cast<uint16_t>(minor)};
}

std::string describe(moec_abi_status_t status, moec_abi_version_t v) {
  char buf[256];
  int n = moec_abi_describe(status, v, buf, sizeof(buf));
  EXPECT_GT(n, 0);
  EXPECT_LT(n, static_cast<int>(sizeof(buf)));
  return buf;
}

TEST(Abi, RuntimeVersionIsTheHeaderVersion) {
  moec_abi_version_t v = moec_abi_runtime_version();
  EXPECT_EQ(v.major, MOEC_ABI_VERSION_MAJOR);
  EXPECT_EQ(v.minor, MOEC_ABI_VERSION_MINOR);
}

TEST(Abi, SameVersionIsCompatible) {
  EXPECT_EQ(moec_abi_check(moec_abi_runtime_version()), MOEC_ABI_COMPATIBLE);
}

TEST(Abi, OlderMinorIsCompatible) {
  for (unsigned minor = 0; minor <= MOEC_ABI_VERSION_MINOR; ++minor)
    EXPECT_EQ(moec_abi_check(version(MOEC_ABI_VERSION_MAJOR, minor)),
              MOEC_ABI_COMPATIBLE)
        << "minor " << minor;
}

TEST(Abi, NewerMinorIsRefused) {
  EXPECT_EQ(moec_abi_check(
                version(MOEC_ABI_VERSION_MAJOR, MOEC_ABI_VERSION_MINOR + 1)),
            MOEC_ABI_MINOR_TOO_NEW);
}

TEST(Abi, OtherMajorIsRefused) {
  EXPECT_EQ(moec_abi_check(version(MOEC_ABI_VERSION_MAJOR + 1, 0)),
            MOEC_ABI_MAJOR_MISMATCH);
  if (MOEC_ABI_VERSION_MAJOR > 0)
    EXPECT_EQ(moec_abi_check(version(MOEC_ABI_VERSION_MAJOR - 1, 0)),
              MOEC_ABI_MAJOR_MISMATCH);
}

TEST(Abi, MismatchMessageNamesBothVersionsAndTheRemedy) {
  moec_abi_version_t artifact = version(MOEC_ABI_VERSION_MAJOR + 1, 3);
  std::string msg = describe(MOEC_ABI_MAJOR_MISMATCH, artifact);
  std::string artifactText =
      std::to_string(MOEC_ABI_VERSION_MAJOR + 1) + ".3";
  std::string runtimeText = std::to_string(MOEC_ABI_VERSION_MAJOR) + "." +
                            std::to_string(MOEC_ABI_VERSION_MINOR);
  EXPECT_NE(msg.find(artifactText), std::string::npos) << msg;
  EXPECT_NE(msg.find(runtimeText), std::string::npos) << msg;
  EXPECT_NE(msg.find("recompile"), std::string::npos) << msg;
}

TEST(Abi, DescribeTruncatesSafely) {
  char buf[8];
  int n = moec_abi_describe(MOEC_ABI_MINOR_TOO_NEW, version(0, 99), buf,
                            sizeof(buf));
  EXPECT_GT(n, static_cast<int>(sizeof(buf)));
  EXPECT_EQ(buf[sizeof(buf) - 1], '\0');
}

} // namespace

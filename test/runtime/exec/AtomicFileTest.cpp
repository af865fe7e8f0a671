//===- AtomicFileTest.cpp - Files written whole or not at all -------------===//
//
// writeFileAtomically: the path holds exactly the bytes written and no
// temporary is left; a failed write reports the file and the reason and
// leaves what the path held before.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/AtomicFile.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using moec::exec::writeFileAtomically;

namespace {

class AtomicFile : public ::testing::Test {
protected:
  void SetUp() override {
    char pattern[] = "/tmp/moec-atomic-file-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir = pattern;
  }
  void TearDown() override {
    for (const std::string &name : names())
      std::remove((dir + "/" + name).c_str());
    ::rmdir(dir.c_str());
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    if (DIR *d = ::opendir(dir.c_str())) {
      while (dirent *e = ::readdir(d))
        if (std::string(e->d_name) != "." && std::string(e->d_name) != "..")
          out.push_back(e->d_name);
      ::closedir(d);
    }
    return out;
  }
  std::string contents(const std::string &path) const {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string dir;
};

TEST_F(AtomicFile, WritesTheBytesAndLeavesNoTemporary) {
  std::string path = dir + "/stats.json", error;
  std::string bytes("MOECCAL1\0\x01\xff tail", 15);
  ASSERT_TRUE(writeFileAtomically(path, bytes, error)) << error;
  EXPECT_EQ(contents(path), bytes);
  EXPECT_EQ(names(), std::vector<std::string>{"stats.json"});
  // Replacing: the new bytes only, shorter than the old.
  ASSERT_TRUE(writeFileAtomically(path, std::string("{}\n"), error)) << error;
  EXPECT_EQ(contents(path), "{}\n");
  EXPECT_EQ(names(), std::vector<std::string>{"stats.json"});
}

TEST_F(AtomicFile, StreamedWritesArriveInOrder) {
  std::string path = dir + "/h.bin", error;
  ASSERT_TRUE(writeFileAtomically(
      path,
      [](std::FILE *f) {
        for (int i = 0; i < 1000; ++i)
          if (std::fprintf(f, "%d,", i) < 0)
            return false;
        return true;
      },
      error))
      << error;
  std::string expected;
  for (int i = 0; i < 1000; ++i)
    expected += std::to_string(i) + ",";
  EXPECT_EQ(contents(path), expected);
}

TEST_F(AtomicFile, FailedWriteKeepsTheOldFile) {
  std::string path = dir + "/calib.dat", error;
  ASSERT_TRUE(writeFileAtomically(path, std::string("old"), error));
  EXPECT_FALSE(writeFileAtomically(
      path,
      [](std::FILE *f) {
        std::fputs("half", f);
        errno = ENOSPC;
        return false;
      },
      error));
  EXPECT_EQ(error, "cannot write " + path + ": " + std::strerror(ENOSPC));
  EXPECT_EQ(contents(path), "old");
  EXPECT_EQ(names(), std::vector<std::string>{"calib.dat"});
}

TEST_F(AtomicFile, UnwritableDirectoryNamesTheTemporary) {
  std::string path = dir + "/missing/out.json", error;
  EXPECT_FALSE(writeFileAtomically(path, std::string("x"), error));
  EXPECT_EQ(error, "cannot write " + path + ".tmp" +
                       std::to_string(::getpid()) + ": " +
                       std::strerror(ENOENT));
}

} // namespace

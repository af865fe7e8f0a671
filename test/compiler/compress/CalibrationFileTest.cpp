//===- CalibrationFileTest.cpp - calib.dat and Hessian files read back ----===//
//
// Files built byte by byte as docs/compression.md lays them out (magic, u64
// JSON size, JSON, padding to 8, data) read back to the values written, and
// damaged ones refused with a message naming the file and the fault.
//
//===----------------------------------------------------------------------===//

#include "compiler/compress/CalibrationFile.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace llvm;
using namespace moec::compress;

namespace {

/// magic, u64 JSON size, JSON, zero padding to 8, data.
std::string fileBytes(const char *magic, const std::string &json,
                      const void *data, size_t dataBytes) {
  std::string out(magic, 8);
  uint64_t size = json.size();
  for (int i = 0; i < 8; ++i)
    out += char((size >> (8 * i)) & 0xff);
  out += json;
  out.resize((out.size() + 7) / 8 * 8, '\0');
  out.append(static_cast<const char *>(data), dataBytes);
  return out;
}

std::string writeTemp(const std::string &bytes) {
  SmallString<128> path;
  EXPECT_FALSE(sys::fs::createTemporaryFile("moec-calib-test", "dat", path));
  std::error_code ec;
  raw_fd_ostream os(path, ec);
  os << bytes;
  return std::string(path);
}

template <typename File>
std::string readError(const std::string &bytes) {
  std::string path = writeTemp(bytes);
  auto file = File::read(path);
  sys::fs::remove(path);
  if (file)
    return "";
  std::string message = toString(file.takeError());
  EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
  return message.substr(path.size() + 2);
}

// Two tensors: an attention weight (one "expert", 3 columns) and a routed
// experts' weight (2 experts, 2 columns) after it.
const char *kCalibJson =
    R"({"format": "moec-calibration", "version": 1, "tokens": 5,)"
    R"( "source": {"text": "t.txt", "context": 64, "chunks": 2},)"
    R"( "experts": [{"layer": 0, "tokens": [3, 2], "weight_mass": [1.5, 0.5],)"
    R"( "reap": [2.25, 0.75]}],)"
    R"( "tensors": [{"name": "blk.0.attn_q.weight", "experts": 1,)"
    R"( "columns": 3, "rows": [5], "offset": 0},)"
    R"( {"name": "blk.0.ffn_up_exps.weight", "experts": 2, "columns": 2,)"
    R"( "rows": [3, 2], "offset": 12}]})";
const float kCalibData[] = {0.5f, 1.0f, 2.0f, 3.0f, 4.0f, 0.0f, 6.0f};

TEST(CalibrationFile, ReadsWhatTheLayoutSays) {
  std::string path = writeTemp(
      fileBytes("MOECCAL1", kCalibJson, kCalibData, sizeof(kCalibData)));
  auto file = CalibrationFile::read(path);
  sys::fs::remove(path);
  ASSERT_TRUE(bool(file)) << toString(file.takeError());
  EXPECT_EQ((*file)->getTokens(), 5u);
  EXPECT_EQ((*file)->getSource().text, "t.txt");
  EXPECT_EQ((*file)->getSource().context, 64);
  EXPECT_EQ((*file)->getSource().chunks, 2);
  const CalibrationFile::TensorStats *q = (*file)->find("blk.0.attn_q.weight");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->experts, 1u);
  EXPECT_EQ(q->columns, 3);
  EXPECT_EQ(q->rows, std::vector<uint64_t>{5});
  EXPECT_EQ(std::vector<float>(q->meanSquares, q->meanSquares + 3),
            (std::vector<float>{0.5f, 1.0f, 2.0f}));
  const CalibrationFile::TensorStats *up =
      (*file)->find("blk.0.ffn_up_exps.weight");
  ASSERT_TRUE(up);
  EXPECT_EQ(up->experts, 2u);
  EXPECT_EQ(up->rows, (std::vector<uint64_t>{3, 2}));
  EXPECT_EQ(std::vector<float>(up->meanSquares, up->meanSquares + 4),
            (std::vector<float>{3.0f, 4.0f, 0.0f, 6.0f}));
  EXPECT_FALSE((*file)->find("blk.0.attn_k.weight"));
  ASSERT_EQ((*file)->getLayers().size(), 1u);
  EXPECT_EQ((*file)->getLayers()[0].tokens, (std::vector<uint64_t>{3, 2}));
  EXPECT_EQ((*file)->getLayers()[0].reap, (std::vector<double>{2.25, 0.75}));
}

TEST(CalibrationFile, RefusesDamagedFiles) {
  std::string good =
      fileBytes("MOECCAL1", kCalibJson, kCalibData, sizeof(kCalibData));
  EXPECT_EQ(readError<CalibrationFile>(good), "");
  EXPECT_EQ(readError<CalibrationFile>("XOECCAL1" + good.substr(8)),
            "not a moec calibration file");
  EXPECT_EQ(readError<CalibrationFile>(good.substr(0, 40)),
            "truncated: the header says " +
                std::to_string(std::strlen(kCalibJson)) +
                " bytes of JSON, the file has 24");
  // The data's last float missing: the experts' tensor runs past the end.
  EXPECT_EQ(readError<CalibrationFile>(good.substr(0, good.size() - 4)),
            "tensor blk.0.ffn_up_exps.weight's data lies outside the file");
  auto edited = [&](const std::string &from, const std::string &to) {
    std::string json = kCalibJson;
    size_t at = json.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    json.replace(at, from.size(), to);
    return fileBytes("MOECCAL1", json, kCalibData, sizeof(kCalibData));
  };
  EXPECT_EQ(readError<CalibrationFile>(edited("\"offset\": 12", "\"offset\": 10")),
            "malformed tensor entry");
  EXPECT_EQ(readError<CalibrationFile>(edited("\"rows\": [3, 2]", "\"rows\": [3]")),
            "malformed tensor entry");
  EXPECT_EQ(readError<CalibrationFile>(edited("\"rows\": [3, 2]", "\"rows\": [3, -2]")),
            "tensor blk.0.ffn_up_exps.weight: rows must be non-negative");
  EXPECT_EQ(readError<CalibrationFile>(edited("\"version\": 1", "\"version\": 2")),
            "not a version 1 moec-calibration header");
  EXPECT_EQ(readError<CalibrationFile>(edited("ffn_up_exps", "attn_q")),
            "tensor blk.0.attn_q.weight appears twice");
  float negative[7];
  std::memcpy(negative, kCalibData, sizeof(negative));
  negative[4] = -1.0f;
  EXPECT_EQ(readError<CalibrationFile>(
                fileBytes("MOECCAL1", kCalibJson, negative, sizeof(negative))),
            "tensor blk.0.ffn_up_exps.weight has a negative or non-finite "
            "mean square");
}

// q and k read one input and name one offset; the experts' gate after it:
// per expert a symmetric columns x columns f64 matrix.
const char *kHessianJson =
    R"({"format": "moec-hessians", "version": 1, "layer": 0, "tensors": [)"
    R"({"name": "blk.0.attn_q.weight", "experts": 1, "columns": 2,)"
    R"( "rows": [7], "offset": 0},)"
    R"( {"name": "blk.0.attn_k.weight", "experts": 1, "columns": 2,)"
    R"( "rows": [7], "offset": 0},)"
    R"( {"name": "blk.0.ffn_gate_exps.weight", "experts": 2, "columns": 1,)"
    R"( "rows": [4, 3], "offset": 32}]})";
const double kHessianData[] = {2.0, 0.5, 0.5, 1.0, 9.0, 16.0};

TEST(HessianFile, ReadsWhatTheLayoutSays) {
  std::string path = writeTemp(fileBytes("MOECHES1", kHessianJson,
                                         kHessianData, sizeof(kHessianData)));
  auto file = HessianFile::read(path);
  sys::fs::remove(path);
  ASSERT_TRUE(bool(file)) << toString(file.takeError());
  const HessianFile::Entry *q = (*file)->find("blk.0.attn_q.weight");
  const HessianFile::Entry *k = (*file)->find("blk.0.attn_k.weight");
  const HessianFile::Entry *gate = (*file)->find("blk.0.ffn_gate_exps.weight");
  ASSERT_TRUE(q && k && gate);
  EXPECT_EQ(q->columns, 2);
  EXPECT_EQ(q->rows, std::vector<uint64_t>{7});
  EXPECT_EQ(std::vector<double>(q->data, q->data + 4),
            (std::vector<double>{2.0, 0.5, 0.5, 1.0}));
  EXPECT_EQ(std::vector<double>(k->data, k->data + 4),
            std::vector<double>(q->data, q->data + 4));
  EXPECT_EQ(gate->experts, 2u);
  EXPECT_EQ(gate->rows, (std::vector<uint64_t>{4, 3}));
  EXPECT_EQ(gate->data[0], 9.0);
  EXPECT_EQ(gate->data[1], 16.0);
}

TEST(HessianFile, RefusesDamagedFiles) {
  std::string good = fileBytes("MOECHES1", kHessianJson, kHessianData,
                               sizeof(kHessianData));
  EXPECT_EQ(readError<HessianFile>(good), "");
  EXPECT_EQ(readError<HessianFile>("MOECCAL1" + good.substr(8)),
            "not a moec Hessian file");
  EXPECT_EQ(readError<HessianFile>(good.substr(0, good.size() - 8)),
            "tensor blk.0.ffn_gate_exps.weight's data lies outside the file");
  std::string json = kHessianJson;
  json.replace(json.find("\"offset\": 32"), 12, "\"offset\": 28");
  EXPECT_EQ(readError<HessianFile>(fileBytes("MOECHES1", json, kHessianData,
                                             sizeof(kHessianData))),
            "malformed tensor entry");
  json = kHessianJson;
  json.replace(json.find("moec-hessians"), 13, "moec-hessianz");
  EXPECT_EQ(readError<HessianFile>(fileBytes("MOECHES1", json, kHessianData,
                                             sizeof(kHessianData))),
            "not a moec-hessians header");
}

} // namespace

//===- GgufFileTest.cpp - GGUF reader and writer --------------------------===//
//
// Round trips through the writer, files written by the GGUF project's own
// Python writer (the tokenizer vocabularies of shared/testdata), and every
// kind of malformed input the reader must refuse with a message naming the
// file and the offset.

#include "compiler/gguf/GgufFile.h"
#include "compiler/gguf/GgufWriter.h"
#include "runtime/abi/moec_bundle.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

using namespace llvm;
using namespace moec::gguf;
using ::testing::HasSubstr;

namespace {

/// Builds GGUF bytes by hand, for inputs the writer would never produce.
struct Bytes {
  std::string data;
  Bytes &u32(uint32_t v) { return raw(&v, 4); }
  Bytes &u64(uint64_t v) { return raw(&v, 8); }
  Bytes &str(StringRef s) {
    u64(s.size());
    data += s.str();
    return *this;
  }
  Bytes &raw(const void *p, size_t n) {
    data.append(static_cast<const char *>(p), n);
    return *this;
  }
  Bytes &header(uint64_t tensors, uint64_t kvs, uint32_t version = 3) {
    data += "GGUF";
    return u32(version).u64(tensors).u64(kvs);
  }
  Bytes &kvU32(StringRef key, uint32_t v) {
    return str(key).u32(static_cast<uint32_t>(ValueType::UInt32)).u32(v);
  }
  /// A tensor info: name, dims, type id, offset.
  Bytes &tensor(StringRef name, std::vector<uint64_t> dims, uint32_t type,
                uint64_t offset) {
    str(name).u32(dims.size());
    for (uint64_t d : dims)
      u64(d);
    return u32(type).u64(offset);
  }
  Bytes &padTo(size_t alignment) {
    data.resize((data.size() + alignment - 1) / alignment * alignment, '\0');
    return *this;
  }
  Bytes &zeros(size_t n) {
    data.append(n, '\0');
    return *this;
  }
};

Expected<std::unique_ptr<GgufFile>> parseBytes(StringRef bytes) {
  return GgufFile::parse(
      MemoryBuffer::getMemBufferCopy(bytes, "test.gguf"));
}

/// The error message of parsing `bytes`, or "" when it parsed.
std::string parseError(StringRef bytes) {
  Expected<std::unique_ptr<GgufFile>> file = parseBytes(bytes);
  if (file)
    return "";
  return toString(file.takeError());
}

std::string tempPath(StringRef name) {
  SmallString<128> dir;
  sys::fs::createUniqueDirectory("moec-gguf-test", dir);
  sys::path::append(dir, name);
  return std::string(dir);
}

TEST(GgufWriter, RoundTripsEveryValueTypeAndTensors) {
  GgufWriter writer;
  writer.setMetadata("general.architecture", WriteValue::str("qwen3moe"));
  writer.setMetadata("u8", WriteValue::u8(200));
  writer.setMetadata("i8", WriteValue::i8(-100));
  writer.setMetadata("u16", WriteValue::u16(60000));
  writer.setMetadata("i16", WriteValue::i16(-30000));
  writer.setMetadata("u32", WriteValue::u32(4000000000u));
  writer.setMetadata("i32", WriteValue::i32(-2000000000));
  writer.setMetadata("u64", WriteValue::u64(UINT64_MAX));
  writer.setMetadata("i64", WriteValue::i64(INT64_MIN));
  writer.setMetadata("f32", WriteValue::f32(0.5f));
  writer.setMetadata("f64", WriteValue::f64(-1e300));
  writer.setMetadata("bool", WriteValue::boolean(true));
  writer.setMetadata("strings",
                     WriteValue::array(ValueType::String,
                                       {WriteValue::str("a"),
                                        WriteValue::str(""),
                                        WriteValue::str("<0x0A>")}));
  writer.setMetadata(
      "nested",
      WriteValue::array(ValueType::Array,
                        {WriteValue::array(ValueType::Int32,
                                           {WriteValue::i32(1),
                                            WriteValue::i32(-2)})}));
  std::vector<uint8_t> seen;
  ASSERT_FALSE(errorToBool(writer.addTensor(
      "a", {32, 3}, GgmlType::Q8_0, [](MutableArrayRef<uint8_t> out) {
        for (size_t i = 0; i < out.size(); ++i)
          out[i] = static_cast<uint8_t>(i * 7);
      })));
  ASSERT_FALSE(errorToBool(writer.addTensor(
      "b", {5}, GgmlType::F32, [](MutableArrayRef<uint8_t> out) {
        std::memset(out.data(), 0xab, out.size());
      })));
  std::string path = tempPath("roundtrip.gguf");
  ASSERT_FALSE(errorToBool(writer.write(path)));

  Expected<std::unique_ptr<GgufFile>> file = GgufFile::open(path);
  ASSERT_TRUE(bool(file)) << toString(file.takeError());
  const GgufFile &f = **file;
  EXPECT_EQ(f.getVersion(), 3u);
  EXPECT_EQ(f.getFileSize(), writer.getFileSize());
  EXPECT_EQ(*f.getString("general.architecture"), "qwen3moe");
  EXPECT_EQ(*f.lookup("u8")->getAsUnsigned(), 200u);
  EXPECT_EQ(*f.lookup("i8")->getAsSigned(), -100);
  EXPECT_EQ(*f.lookup("u16")->getAsUnsigned(), 60000u);
  EXPECT_EQ(*f.lookup("i16")->getAsSigned(), -30000);
  EXPECT_EQ(*f.getUnsigned("u32"), 4000000000u);
  EXPECT_EQ(*f.lookup("i32")->getAsSigned(), -2000000000);
  EXPECT_EQ(*f.getUnsigned("u64"), UINT64_MAX);
  EXPECT_EQ(*f.lookup("i64")->getAsSigned(), INT64_MIN);
  EXPECT_EQ(*f.getDouble("f32"), 0.5);
  EXPECT_EQ(*f.getDouble("f64"), -1e300);
  EXPECT_TRUE(*f.getBool("bool"));
  std::vector<Value> strings = f.lookup("strings")->getArrayElements();
  ASSERT_EQ(strings.size(), 3u);
  EXPECT_EQ(*strings[0].getAsString(), "a");
  EXPECT_EQ(*strings[1].getAsString(), "");
  EXPECT_EQ(*strings[2].getAsString(), "<0x0A>");
  std::vector<Value> nested = f.lookup("nested")->getArrayElements();
  ASSERT_EQ(nested.size(), 1u);
  std::vector<Value> inner = nested[0].getArrayElements();
  ASSERT_EQ(inner.size(), 2u);
  EXPECT_EQ(*inner[1].getAsSigned(), -2);

  ASSERT_EQ(f.getTensors().size(), 2u);
  const TensorInfo *a = f.findTensor("a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->type.type, GgmlType::Q8_0);
  EXPECT_EQ(a->getShape(), (SmallVector<int64_t, 4>{3, 32}));
  EXPECT_EQ(a->numBytes, 3u * 34u);
  ArrayRef<uint8_t> data = f.getTensorData(*a);
  for (size_t i = 0; i < data.size(); ++i)
    ASSERT_EQ(data[i], static_cast<uint8_t>(i * 7));
  const TensorInfo *b = f.findTensor("b");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->offset % f.getAlignment(), 0u);
  EXPECT_EQ(f.getTensorData(*b)[19], 0xab);
}

// moec's own group-wise formats as tensor types: ids of moec_bundle.h,
// names, sizes, and a GGUF round trip (moec's files only).
TEST(GgmlType, OwnGroupTypes) {
  std::optional<GgmlType> int4 = parseGgmlTypeName("int4_g32");
  ASSERT_TRUE(int4);
  EXPECT_EQ(uint32_t(*int4), MOEC_BUNDLE_OWN_TYPE(4, 32, 0));
  EXPECT_EQ(parseGgmlTypeName("INT3_G64_ASYM"),
            makeOwnGroupType({3, 64, true}));
  EXPECT_EQ(parseGgmlTypeName("int8_g16_sym"), makeOwnGroupType({8, 16, false}));
  for (const char *bad : {"int5_g32", "int4_g30", "int4_g4096", "int4",
                          "int4_g32_asymx", "int4_g"})
    EXPECT_FALSE(parseGgmlTypeName(bad)) << bad;
  GgmlTypeInfo info = getGgmlTypeInfo(*parseGgmlTypeName("int3_g64_asym"));
  EXPECT_EQ(info.name, "INT3_G64_ASYM");
  EXPECT_EQ(info.blockSize, 64);
  EXPECT_EQ(info.blockBytes, 2 + 2 + 64 * 3 / 8);
  EXPECT_TRUE(info.computeSupported);
  // Ids that look like own ones but are not canonical are no type at all.
  EXPECT_FALSE(lookupGgmlType(MOEC_BUNDLE_OWN_TYPE(5, 32, 0)));
  EXPECT_FALSE(lookupGgmlType(MOEC_BUNDLE_OWN_TYPE_BASE | (1u << 17) | 32));
  EXPECT_FALSE(getOwnGroupType(GgmlType::Q4_K));

  GgufWriter writer;
  writer.setMetadata("general.architecture", WriteValue::str("qwen3moe"));
  ASSERT_FALSE(errorToBool(writer.addTensor(
      "w", {64, 2}, *int4, [](MutableArrayRef<uint8_t> out) {
        EXPECT_EQ(out.size(), 2u * 2 * 18);
        std::memset(out.data(), 0x11, out.size());
      })));
  std::string path = tempPath("own-types.gguf");
  ASSERT_FALSE(errorToBool(writer.write(path)));
  Expected<std::unique_ptr<GgufFile>> file = GgufFile::open(path);
  ASSERT_TRUE(bool(file)) << toString(file.takeError());
  ASSERT_EQ((*file)->getTensors().size(), 1u);
  EXPECT_EQ((*file)->getTensors()[0].type.type, *int4);
  EXPECT_EQ((*file)->getTensorData((*file)->getTensors()[0]).size(), 72u);
}

TEST(GgufWriter, LeavesNoFileBehindOnError) {
  GgufWriter writer;
  EXPECT_TRUE(errorToBool(writer.addTensor("x", {30}, GgmlType::Q4_0,
                                           [](MutableArrayRef<uint8_t>) {})));
  EXPECT_TRUE(errorToBool(writer.addTensor("x", {0}, GgmlType::F32,
                                           [](MutableArrayRef<uint8_t>) {})));
}

TEST(GgufFile, TypedGettersExplainMistakes) {
  Bytes b;
  b.header(0, 1).kvU32("n", 7);
  auto file = parseBytes(b.data);
  ASSERT_TRUE(bool(file)) << toString(file.takeError());
  std::string missing = toString((*file)->getUnsigned("absent").takeError());
  EXPECT_THAT(missing, HasSubstr("test.gguf: missing metadata key 'absent'"));
  std::string wrong = toString((*file)->getString("n").takeError());
  EXPECT_THAT(wrong, HasSubstr("metadata key 'n' is u32 7, expected a string"));
}

// The vocabularies in shared/testdata were written by the GGUF project's own
// Python writer: an independent producer of the format.
TEST(GgufFile, ReadsFilesOfTheGgufProjectsWriter) {
  for (const char *name : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"}) {
    SCOPED_TRACE(name);
    std::string path = std::string(MOEC_SHARED_TESTDATA) + "/tokenizers/" + name;
    auto file = GgufFile::open(path);
    ASSERT_TRUE(bool(file)) << toString(file.takeError());
    Expected<StringRef> model = (*file)->getString("tokenizer.ggml.model");
    ASSERT_TRUE(bool(model)) << toString(model.takeError());
    const Value *tokens = (*file)->lookup("tokenizer.ggml.tokens");
    ASSERT_TRUE(tokens);
    EXPECT_EQ(tokens->getArrayElementType(), ValueType::String);
    std::vector<Value> elements = tokens->getArrayElements();
    EXPECT_EQ(elements.size(), tokens->getArraySize());
    if (StringRef(name).contains("llama-spm")) {
      EXPECT_EQ(*model, "llama");
      EXPECT_EQ(elements.size(), 32000u);
      EXPECT_EQ(*elements[1].getAsString(), "<s>");
    } else {
      EXPECT_EQ(*model, "gpt2");
      EXPECT_EQ(elements.size(), 50257u);
      EXPECT_EQ(*elements[0].getAsString(), "!");
    }
  }
}

//===----------------------------------------------------------------------===//
// Malformed input
//===----------------------------------------------------------------------===//

/// A small valid file with metadata of several kinds and two tensors.
std::string validFile() {
  Bytes b;
  b.header(2, 3);
  b.kvU32("general.alignment", 32);
  b.str("name").u32(8).str("tiny");
  b.str("list").u32(9).u32(8).u64(2).str("x").str("yz");
  b.tensor("w", {32, 2}, /*Q8_0*/ 8, 0);
  b.tensor("v", {4}, /*F32*/ 0, 96);
  b.padTo(32).zeros(96 + 16);
  return b.data;
}

TEST(GgufFile, ValidFileParses) {
  EXPECT_EQ(parseError(validFile()), "");
}

TEST(GgufFile, EveryTruncationIsAnErrorNamingTheFile) {
  std::string full = validFile();
  // Cutting into the data section must be caught too (tensor past the end).
  for (size_t size = 0; size < full.size(); ++size) {
    std::string message = parseError(StringRef(full).take_front(size));
    ASSERT_NE(message, "") << "truncated to " << size << " bytes parsed";
    ASSERT_THAT(message, HasSubstr("test.gguf: ")) << size;
  }
}

TEST(GgufFile, BadMagic) {
  std::string bytes = validFile();
  bytes[0] = 'X';
  EXPECT_THAT(parseError(bytes),
              HasSubstr("offset 0: bad magic 0x46554758, expected \"GGUF\""));
}

TEST(GgufFile, UnsupportedVersions) {
  Bytes v1, v4, big;
  v1.header(0, 0, 1);
  v4.header(0, 0, 4);
  big.header(0, 0, 0x03000000);
  EXPECT_THAT(parseError(v1.data),
              HasSubstr("offset 4: GGUF version 1 is not supported, expected 2 or 3"));
  EXPECT_THAT(parseError(v4.data), HasSubstr("GGUF version 4 is not supported"));
  EXPECT_THAT(parseError(big.data),
              HasSubstr("offset 4: big-endian GGUF is not supported"));
  Bytes v2;
  v2.header(0, 0, 2);
  EXPECT_EQ(parseError(v2.data), "");
}

TEST(GgufFile, CountsThatCannotFit) {
  Bytes kv, tensors;
  kv.header(0, uint64_t(1) << 60);
  tensors.header(uint64_t(1) << 60, 0);
  EXPECT_THAT(parseError(kv.data),
              HasSubstr("offset 24: metadata count 1152921504606846976 cannot fit"));
  EXPECT_THAT(parseError(tensors.data),
              HasSubstr("offset 24: tensor count 1152921504606846976 cannot fit"));
}

TEST(GgufFile, StringLengthPastTheEnd) {
  Bytes b;
  b.header(0, 1).u64(UINT64_MAX).zeros(16);
  EXPECT_THAT(parseError(b.data),
              HasSubstr("offset 24: metadata key length 18446744073709551615 "
                        "runs past the end of the file"));
}

TEST(GgufFile, BadValueTypes) {
  Bytes unknown, element, boolean, nested;
  unknown.header(0, 1).str("k").u32(13).u32(0);
  EXPECT_THAT(parseError(unknown.data),
              HasSubstr("offset 33: key 'k' has unknown value type 13, expected 0-12"));
  element.header(0, 1).str("k").u32(9).u32(77).u64(0);
  EXPECT_THAT(parseError(element.data),
              HasSubstr("array of key 'k' has unknown element type 77"));
  boolean.header(0, 1).str("k").u32(7).raw("\x02", 1);
  EXPECT_THAT(parseError(boolean.data),
              HasSubstr("offset 37: bool value of key 'k' is 2, expected 0 or 1"));
  nested.header(0, 1).str("k").u32(9).u32(9).u64(1).u32(9).u64(0);
  EXPECT_THAT(parseError(nested.data), HasSubstr("nests arrays deeper than 2"));
}

TEST(GgufFile, ArrayCountPastTheEnd) {
  Bytes fixed, strings;
  fixed.header(0, 1).str("k").u32(9).u32(6).u64(uint64_t(1) << 62);
  EXPECT_THAT(parseError(fixed.data),
              HasSubstr("array of key 'k' has 4611686018427387904 elements of "
                        "f32, which run past the end of the file"));
  strings.header(0, 1).str("k").u32(9).u32(8).u64(1000).str("only one");
  EXPECT_THAT(parseError(strings.data),
              HasSubstr("array of key 'k' has 1000 elements of string, which "
                        "cannot fit"));
}

TEST(GgufFile, DuplicateKeysAndTensors) {
  Bytes keys, tensors;
  keys.header(0, 2).kvU32("k", 1).kvU32("k", 2);
  EXPECT_THAT(parseError(keys.data), HasSubstr("offset 41: duplicate metadata key 'k'"));
  tensors.header(2, 0).tensor("t", {4}, 0, 0).tensor("t", {4}, 0, 32);
  tensors.padTo(32).zeros(64);
  EXPECT_THAT(parseError(tensors.data), HasSubstr("duplicate tensor name 't'"));
}

TEST(GgufFile, BadTensorInfos) {
  auto one = [](std::vector<uint64_t> dims, uint32_t type, uint64_t offset,
                size_t dataBytes) {
    Bytes b;
    b.header(1, 0).tensor("t", dims, type, offset).padTo(32).zeros(dataBytes);
    return parseError(b.data);
  };
  EXPECT_THAT(one({}, 0, 0, 0), HasSubstr("offset 33: tensor 't' has 0 "
                                          "dimensions, expected 1 to 4"));
  EXPECT_THAT(one({1, 1, 1, 1, 1}, 0, 0, 0), HasSubstr("has 5 dimensions"));
  EXPECT_THAT(one({uint64_t(-3)}, 0, 0, 0),
              HasSubstr("tensor 't' dimension 0 is -3, expected a non-negative size"));
  EXPECT_THAT(one({uint64_t(1) << 40, uint64_t(1) << 40}, 0, 0, 0),
              HasSubstr("tensor 't': the product of its dimensions overflows 64 bits"));
  EXPECT_THAT(one({4}, 99, 0, 16), HasSubstr("tensor 't' has unknown ggml type id 99"));
  EXPECT_THAT(one({48}, 2, 0, 64),
              HasSubstr("tensor 't' of type Q4_0 has a row of 48 elements, not "
                        "a multiple of its block size 32"));
  EXPECT_THAT(one({4}, 0, 16, 64),
              HasSubstr("tensor 't' data offset 16 is not a multiple of the "
                        "alignment 32"));
  EXPECT_THAT(one({64}, 0, 0, 200),
              HasSubstr("tensor 't' (256 bytes at data offset 0, file offset "
                        "64) runs past the end of the file (size 264)"));
  EXPECT_THAT(one({4}, 0, uint64_t(-32), 64),
              HasSubstr("runs past the end of the file"));
}

TEST(GgufFile, OverlappingTensors) {
  Bytes b;
  b.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {16}, 0, 32);
  b.padTo(32).zeros(128);
  EXPECT_THAT(parseError(b.data),
              HasSubstr("tensors 'a' (data offset 0, 64 bytes) and 'b' (data "
                        "offset 32) overlap"));
}

TEST(GgufFile, BadAlignment) {
  Bytes b;
  b.header(0, 1).kvU32("general.alignment", 24);
  EXPECT_THAT(parseError(b.data),
              HasSubstr("general.alignment is u32 24, expected a u32 power of two"));
}

TEST(GgufFile, UnreadableFile) {
  auto file = GgufFile::open("/nonexistent/model.gguf");
  ASSERT_FALSE(bool(file));
  EXPECT_THAT(toString(file.takeError()),
              HasSubstr("/nonexistent/model.gguf: cannot open"));
}

} // namespace

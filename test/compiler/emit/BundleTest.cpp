//===- BundleTest.cpp - Writing bundles and reading them in the runtime ---===//
//
// Every tensor of a model must come back from the bundle byte for byte
// (resident tensors whole, each expert's gate|up|down in one aligned
// extent), from GGUF and from per-expert safetensors checkpoints; and every
// corruption must be caught with a message naming the file and the offset.

#include "compiler/emit/BundleWriter.h"
#include "compiler/model/Synth.h"
#include "compiler/model/WeightStore.h"
#include "runtime/bundle/Bundle.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

using namespace llvm;
using namespace moec;
using ::testing::HasSubstr;

namespace {

std::string tempPath(StringRef name) {
  SmallString<128> dir;
  EXPECT_FALSE(sys::fs::createUniqueDirectory("moec-bundle-test", dir));
  sys::path::append(dir, name);
  return std::string(dir);
}

std::vector<uint8_t> storedBytes(const model::WeightStore &store,
                                 const model::StoredTensor &t) {
  std::vector<uint8_t> bytes;
  for (const model::StoredTensor::Extent &e : t.extents) {
    ArrayRef<uint8_t> part = store.getExtentData(e);
    bytes.insert(bytes.end(), part.begin(), part.end());
  }
  return bytes;
}

void checkRoundTrip(const model::WeightStore &store, const std::string &path,
                    uint32_t ioBlock) {
  ASSERT_FALSE(errorToBool(emit::writeBundle(store, path, {ioBlock})));
  std::string error;
  auto b = bundle::Bundle::open(path, error);
  ASSERT_TRUE(b) << error;
  const model::ModelConfig &c = store.getConfig();
  EXPECT_THAT(b->getMetadata(),
              HasSubstr("\"family\":\"" + c.family->name.str() + "\""));
  EXPECT_THAT(b->getMetadata(),
              HasSubstr("\"plan\":{\"all_experts_resident\":true}"));
  EXPECT_EQ(b->getExperts().size(), size_t(c.numLayers * c.numExperts));
  for (const model::StoredTensor &t : store.getTensors()) {
    SCOPED_TRACE(t.name);
    std::vector<uint8_t> want = storedBytes(store, t);
    if (t.role->tensorClass != "experts") {
      const moec_bundle_tensor *bt = b->findTensor(t.name);
      ASSERT_TRUE(bt);
      EXPECT_EQ(bt->type, uint32_t(t.type));
      EXPECT_EQ(bt->offset % MOEC_BUNDLE_TENSOR_ALIGNMENT, 0u);
      std::vector<uint8_t> got;
      ASSERT_TRUE(b->readTensor(*bt, got, error)) << error;
      EXPECT_EQ(got, want);
      continue;
    }
    int part = t.role->kind == model::TensorRole::ExpertGate ? 0
               : t.role->kind == model::TensorRole::ExpertUp ? 1
                                                             : 2;
    uint64_t perExpert = t.numBytes / c.numExperts;
    for (int64_t x = 0; x < c.numExperts; ++x) {
      const moec_bundle_expert *e = b->findExpert(t.role->layer, x);
      ASSERT_TRUE(e);
      EXPECT_EQ(e->offset % ioBlock, 0u);
      std::vector<uint8_t> extent(e->size);
      ASSERT_TRUE(b->readExpert(*e, extent.data(), error)) << error;
      ASSERT_EQ(e->part_size[part], perExpert);
      EXPECT_TRUE(std::equal(want.begin() + x * perExpert,
                             want.begin() + (x + 1) * perExpert,
                             extent.begin() + e->part_offset[part]))
          << "expert " << x;
    }
  }
}

TEST(Bundle, EveryTensorComesBackFromGgufAndCheckpoints) {
  for (const char *family : {"qwen3moe", "qwen2moe", "mixtral", "olmoe"}) {
    SCOPED_TRACE(family);
    model::SynthOptions o;
    model::applyPreset("tiny", *model::lookupFamilyByName(family), o);
    o.expertsType = gguf::GgmlType::Q4_0;
    o.attentionType = gguf::GgmlType::Q8_0;
    std::string gguf = tempPath("m.gguf");
    ASSERT_FALSE(errorToBool(model::writeSynthGguf(o, gguf)));
    auto store = model::WeightStore::open(gguf);
    ASSERT_TRUE(bool(store)) << toString(store.takeError());
    checkRoundTrip(**store, tempPath("m.moeb"), 4096);

    o.expertsType = o.attentionType = gguf::GgmlType::F16;
    std::string ckpt = tempPath("ckpt");
    ASSERT_FALSE(errorToBool(model::writeSynthSafetensors(o, ckpt, 2)));
    auto hf = model::WeightStore::open(ckpt);
    ASSERT_TRUE(bool(hf)) << toString(hf.takeError());
    checkRoundTrip(**hf, tempPath("h.moeb"), 512);
  }
}

std::string writeTiny(uint32_t ioBlock = 4096) {
  model::SynthOptions o;
  model::applyPreset("tiny", *model::lookupFamilyByName("qwen3moe"), o);
  std::string gguf = tempPath("m.gguf"), out = tempPath("m.moeb");
  EXPECT_FALSE(errorToBool(model::writeSynthGguf(o, gguf)));
  auto store = model::WeightStore::open(gguf);
  EXPECT_TRUE(bool(store));
  EXPECT_FALSE(errorToBool(emit::writeBundle(**store, out, {ioBlock})));
  return out;
}

std::string contents(const std::string &path) {
  auto buffer = MemoryBuffer::getFile(path, false, false);
  return buffer ? (*buffer)->getBuffer().str() : "";
}

void overwrite(const std::string &path, const std::string &bytes) {
  std::error_code ec;
  raw_fd_ostream os(path, ec);
  os << bytes;
}

TEST(Bundle, SameInputsSameBytes) {
  std::string a = writeTiny(), b = writeTiny();
  EXPECT_EQ(contents(a), contents(b));
  EXPECT_FALSE(contents(a).empty());
}

TEST(Bundle, CorruptionIsCaughtAndNamed) {
  std::string path = writeTiny();
  std::string good = contents(path), error;
  auto b = bundle::Bundle::open(path, error);
  ASSERT_TRUE(b) << error;
  moec_bundle_expert e = *b->findExpert(1, 3);
  moec_bundle_header h = b->getHeader();

  std::string bytes = good;
  bytes[e.offset + e.part_offset[2] + 5] ^= 0x40;
  overwrite(path, bytes);
  b = bundle::Bundle::open(path, error);
  ASSERT_TRUE(b) << error; // the tables are intact
  std::vector<uint8_t> extent(e.size);
  EXPECT_FALSE(b->readExpert(e, extent.data(), error));
  EXPECT_THAT(error, HasSubstr(": offset " + std::to_string(e.offset) +
                               ": extent of layer 1 expert 3: checksum "
                               "mismatch"));

  bytes = good;
  bytes[h.tables_offset + 3] ^= 1;
  overwrite(path, bytes);
  EXPECT_FALSE(bundle::Bundle::open(path, error));
  EXPECT_THAT(error, HasSubstr("table checksum mismatch"));

  overwrite(path, good.substr(0, good.size() - 100));
  EXPECT_FALSE(bundle::Bundle::open(path, error));
  EXPECT_THAT(error, HasSubstr("but the file has " +
                               std::to_string(good.size() - 100) +
                               ": truncated or corrupt"));

  bytes = good;
  bytes[8] = 2; // major version 2
  overwrite(path, bytes);
  EXPECT_FALSE(bundle::Bundle::open(path, error));
  EXPECT_THAT(error, HasSubstr("offset 8: bundle format 2." +
                               std::to_string(MOEC_BUNDLE_VERSION_MINOR) +
                               ", but this runtime reads 1." +
                               std::to_string(MOEC_BUNDLE_VERSION_MINOR)));

  bytes = good;
  bytes[40] ^= 1; // a header field, not re-checksummed
  overwrite(path, bytes);
  EXPECT_FALSE(bundle::Bundle::open(path, error));
  EXPECT_THAT(error, HasSubstr("header checksum mismatch"));

  overwrite(path, "MOECBNDX" + good.substr(8));
  EXPECT_FALSE(bundle::Bundle::open(path, error));
  EXPECT_THAT(error, HasSubstr("offset 0: not a moec bundle (bad magic)"));

  EXPECT_FALSE(bundle::Bundle::open(path + ".missing", error));
  EXPECT_THAT(error, HasSubstr(".missing: cannot open"));
}

} // namespace

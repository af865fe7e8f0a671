//===- GgufFuzzer.cpp - libFuzzer target for the GGUF reader --------------===//
//
// Parses arbitrary bytes as GGUF and, when they parse, touches everything a
// consumer would: every metadata value (arrays decoded, nested ones too),
// every tensor's bytes, and the model configuration with its tensor checks.
// Any crash, sanitizer report or allocation beyond -rss_limit_mb is a bug.
//
//===----------------------------------------------------------------------===//

#include "compiler/gguf/GgufFile.h"
#include "compiler/model/ModelConfig.h"

#include "llvm/Support/MemoryBuffer.h"

using namespace llvm;
using namespace moec;

static uint64_t touch(const gguf::Value &value) {
  uint64_t sum = value.describe().size();
  if (value.getType() == gguf::ValueType::Array)
    for (const gguf::Value &element : value.getArrayElements())
      sum += touch(element);
  if (auto s = value.getAsString())
    sum += s->size();
  return sum;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  auto file = gguf::GgufFile::parse(MemoryBuffer::getMemBuffer(
      StringRef(reinterpret_cast<const char *>(data), size), "fuzz.gguf",
      /*RequiresNullTerminator=*/false));
  if (!file) {
    consumeError(file.takeError());
    return 0;
  }
  volatile uint64_t sink = 0;
  for (const gguf::KeyValue &kv : (*file)->getMetadata())
    sink += touch(kv.value);
  for (const gguf::TensorInfo &t : (*file)->getTensors()) {
    ArrayRef<uint8_t> bytes = (*file)->getTensorData(t);
    if (!bytes.empty())
      sink += bytes.front() + bytes.back();
  }
  Expected<model::ModelConfig> config = model::readGgufConfig(**file);
  if (!config)
    consumeError(config.takeError());
  (void)sink;
  return 0;
}

//===- SafetensorsFuzzer.cpp - libFuzzer target for safetensors headers ---===//
//
// Parses arbitrary bytes as a safetensors file and reads every tensor's
// bytes when they parse.
//
//===----------------------------------------------------------------------===//

#include "compiler/safetensors/SafetensorsFile.h"

using namespace llvm;
using namespace moec;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  auto file = safetensors::SafetensorsFile::parse(MemoryBuffer::getMemBuffer(
      StringRef(reinterpret_cast<const char *>(data), size), "fuzz.safetensors",
      /*RequiresNullTerminator=*/false));
  if (!file) {
    consumeError(file.takeError());
    return 0;
  }
  volatile uint64_t sink = 0;
  for (const safetensors::TensorInfo &t : (*file)->getTensors()) {
    ArrayRef<uint8_t> bytes = (*file)->getTensorData(t);
    if (!bytes.empty())
      sink += bytes.front() + bytes.back();
  }
  (void)sink;
  return 0;
}

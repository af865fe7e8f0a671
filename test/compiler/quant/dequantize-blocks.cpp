//===- dequantize-blocks.cpp - Runs the reference dequantizer on a file ---===//
//
// A test driver for check_dequantize_vs_gguf.py:
//
//   dequantize-blocks TYPE IN OUT   dequantizes the blocks of ggml type TYPE
//                                   in file IN, writes float32 LE to OUT
//   dequantize-blocks --list-types  prints "id name block_size block_bytes
//                                   supported" for every ggml type
//
//===----------------------------------------------------------------------===//

#include "compiler/gguf/GgmlType.h"
#include "compiler/quant/Dequantize.h"

#include <cstdio>
#include <cstring>
#include <vector>

using namespace moec;

static int fail(const char *message, const char *detail) {
  std::fprintf(stderr, "dequantize-blocks: %s%s\n", message, detail);
  return 1;
}

int main(int argc, char **argv) {
  if (argc == 2 && std::strcmp(argv[1], "--list-types") == 0) {
    for (uint32_t id = 0; id < 64; ++id)
      if (std::optional<gguf::GgmlTypeInfo> info = gguf::lookupGgmlType(id))
        std::printf("%u %s %lld %lld %d\n", id, info->name.str().c_str(),
                    static_cast<long long>(info->blockSize),
                    static_cast<long long>(info->blockBytes),
                    info->computeSupported ? 1 : 0);
    return 0;
  }
  if (argc != 4)
    return fail("usage: dequantize-blocks TYPE IN OUT | --list-types", "");
  std::optional<gguf::GgmlType> type = gguf::parseGgmlTypeName(argv[1]);
  if (!type || !quant::canDequantize(*type))
    return fail("no reference dequantizer for type ", argv[1]);
  gguf::GgmlTypeInfo info = gguf::getGgmlTypeInfo(*type);

  FILE *in = std::fopen(argv[2], "rb");
  if (!in)
    return fail("cannot open ", argv[2]);
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), in)) > 0)
    bytes.insert(bytes.end(), chunk, chunk + n);
  std::fclose(in);
  if (bytes.size() % info.blockBytes != 0)
    return fail("input is not a whole number of blocks: ", argv[2]);

  int64_t elements = bytes.size() / info.blockBytes * info.blockSize;
  std::vector<float> out(elements);
  quant::dequantizeRow(*type, bytes.data(), out.data(), elements);

  FILE *o = std::fopen(argv[3], "wb");
  if (!o || std::fwrite(out.data(), sizeof(float), out.size(), o) != out.size())
    return fail("cannot write ", argv[3]);
  std::fclose(o);
  return 0;
}

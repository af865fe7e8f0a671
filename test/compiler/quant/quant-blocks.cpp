//===- quant-blocks.cpp - Runs the reference (de)quantizers on a file -----===//
//
// A test driver for check_dequantize_vs_gguf.py, check_quantize_vs_gguf.py,
// check_quantize_kquants_vs_gguf.py, check_quantize_importance_vs_gguf.py and
// check_importance_vs_ggml.py:
//
//   quant-blocks TYPE IN OUT             dequantizes the blocks of ggml type
//                                        TYPE in file IN, writes float32 LE
//   quant-blocks --quantize TYPE IN OUT  quantizes float32 LE from IN into
//                                        blocks of TYPE
//   quant-blocks --list-types            prints "id name block_size
//                                        block_bytes supported" per type
//   quant-blocks --quantize-importance FORMAT IN IMATRIX OUT
//                                        quantizes the float32 LE rows of IN
//                                        into FORMAT (a QuantFormat name:
//                                        "q4_k", "int3_g32_asym") with the
//                                        importance-weighted quantizer; the
//                                        row length is that of IMATRIX
//                                        (float32 LE importance per column,
//                                        or "-": uniform, rows of one block)
//   quant-blocks --quantize-like-ggml TYPE IN IMATRIX OUT
//                                        the same with quantizeRowLikeGgml
//                                        (ggml's own importance search)
//
//===----------------------------------------------------------------------===//

#include "compiler/gguf/GgmlType.h"
#include "compiler/quant/Dequantize.h"
#include "compiler/quant/ImportanceQuantize.h"
#include "compiler/quant/QuantFormat.h"
#include "compiler/quant/Quantize.h"

#include <cstdio>
#include <cstring>
#include <vector>

using namespace moec;

static int fail(const char *message, const char *detail) {
  std::fprintf(stderr, "quant-blocks: %s%s\n", message, detail);
  return 1;
}

static bool readFile(const char *path, std::vector<uint8_t> &bytes) {
  FILE *in = std::fopen(path, "rb");
  if (!in)
    return false;
  uint8_t chunk[1 << 16];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), in)) > 0)
    bytes.insert(bytes.end(), chunk, chunk + n);
  std::fclose(in);
  return true;
}

static int quantizeImportance(char **argv, bool likeGgml) {
  std::optional<quant::QuantFormat> format = quant::parseQuantFormat(argv[0]);
  bool uniform = std::strcmp(argv[2], "-") == 0;
  if (!format || (likeGgml && (!format->isGgml() || uniform)))
    return fail("unknown format (or no ggml search, or no imatrix) ", argv[0]);
  std::vector<uint8_t> bytes, imatrixBytes;
  if (!readFile(argv[1], bytes))
    return fail("cannot open ", argv[1]);
  std::vector<float> values(bytes.size() / sizeof(float)), importance;
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
  int64_t rowLength = format->blockSize();
  if (!uniform) {
    if (!readFile(argv[2], imatrixBytes))
      return fail("cannot open ", argv[2]);
    importance.resize(imatrixBytes.size() / sizeof(float));
    std::memcpy(importance.data(), imatrixBytes.data(),
                importance.size() * sizeof(float));
    rowLength = int64_t(importance.size());
  }
  if (rowLength == 0 || rowLength % format->blockSize() != 0 ||
      values.size() % rowLength != 0)
    return fail("input is not whole rows of whole blocks: ", argv[1]);
  int64_t rows = int64_t(values.size()) / rowLength;
  int64_t rowBytes = format->rowBytes(rowLength);
  std::vector<uint8_t> blocks(rows * rowBytes);
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = values.data() + r * rowLength;
    uint8_t *out = blocks.data() + r * rowBytes;
    if (likeGgml)
      quant::quantizeRowLikeGgml(format->ggmlType(), row, out, rowLength,
                                 importance.data());
    else
      quant::quantizeRowImportance(*format, row, out, rowLength,
                                   importance.empty() ? nullptr
                                                      : importance.data());
  }
  FILE *o = std::fopen(argv[3], "wb");
  if (!o || std::fwrite(blocks.data(), 1, blocks.size(), o) != blocks.size())
    return fail("cannot write ", argv[3]);
  std::fclose(o);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 6 && std::strcmp(argv[1], "--quantize-importance") == 0)
    return quantizeImportance(argv + 2, /*likeGgml=*/false);
  if (argc == 6 && std::strcmp(argv[1], "--quantize-like-ggml") == 0)
    return quantizeImportance(argv + 2, /*likeGgml=*/true);
  if (argc == 2 && std::strcmp(argv[1], "--list-types") == 0) {
    for (uint32_t id = 0; id < 64; ++id)
      if (std::optional<gguf::GgmlTypeInfo> info = gguf::lookupGgmlType(id))
        std::printf("%u %s %lld %lld %d\n", id, info->name.str().c_str(),
                    static_cast<long long>(info->blockSize),
                    static_cast<long long>(info->blockBytes),
                    info->computeSupported ? 1 : 0);
    return 0;
  }
  bool quantize = argc == 5 && std::strcmp(argv[1], "--quantize") == 0;
  if (quantize) {
    ++argv;
    --argc;
  }
  if (argc != 4)
    return fail("usage: quant-blocks [--quantize] TYPE IN OUT | --list-types",
                "");
  std::optional<gguf::GgmlType> type = gguf::parseGgmlTypeName(argv[1]);
  if (!type || (quantize ? !quant::canQuantize(*type)
                         : !quant::canDequantize(*type)))
    return fail("no reference (de)quantizer for type ", argv[1]);
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
  if (quantize) {
    if (bytes.size() % (sizeof(float) * info.blockSize) != 0)
      return fail("input is not a whole number of blocks of floats: ", argv[2]);
    int64_t elements = bytes.size() / sizeof(float);
    std::vector<float> values(elements);
    std::memcpy(values.data(), bytes.data(), bytes.size());
    std::vector<uint8_t> blocks(elements / info.blockSize * info.blockBytes);
    quant::quantizeRow(*type, values.data(), blocks.data(), elements);
    FILE *o = std::fopen(argv[3], "wb");
    if (!o || std::fwrite(blocks.data(), 1, blocks.size(), o) != blocks.size())
      return fail("cannot write ", argv[3]);
    std::fclose(o);
    return 0;
  }
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

//===- Bundle.h - Opening and reading a weight bundle -----------*- C++ -*-===//
//
// The runtime side of runtime/abi/moec_bundle.h: opens a bundle, checks its
// header (magic, version, sizes, checksum) and tables (checksum, every
// extent inside the file), and reads resident tensors and expert extents
// with their checksums verified. Errors are one line naming the file, the
// offset and what was expected. No LLVM.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_BUNDLE_BUNDLE_H
#define MOEC_RUNTIME_BUNDLE_BUNDLE_H

#include "runtime/abi/moec_bundle.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace moec::bundle {

class Bundle {
public:
  ~Bundle();

  /// Opens and checks `path`; on failure returns null and sets `error`.
  static std::unique_ptr<Bundle> open(const std::string &path,
                                      std::string &error);

  const moec_bundle_header &getHeader() const { return header; }
  /// The metadata JSON (model, plan, sources).
  const std::string &getMetadata() const { return metadata; }
  /// The tokenizer's vocabulary in its binary form; "" if none.
  const std::string &getVocabulary() const { return vocabulary; }
  const std::vector<moec_bundle_tensor> &getTensors() const { return tensors; }
  std::string_view getTensorName(const moec_bundle_tensor &t) const;
  const moec_bundle_tensor *findTensor(std::string_view name) const;
  const std::vector<moec_bundle_expert> &getExperts() const { return experts; }
  /// The extent of (layer, expert), or null.
  const moec_bundle_expert *findExpert(uint32_t layer, uint32_t expert) const;

  /// Reads a resident tensor into `out` (resized) and checks its checksum.
  bool readTensor(const moec_bundle_tensor &t, std::vector<uint8_t> &out,
                  std::string &error) const;
  /// Reads one expert extent (one read) into `out` (at least `size` bytes)
  /// and checks its checksum.
  bool readExpert(const moec_bundle_expert &e, uint8_t *out,
                  std::string &error) const;

private:
  Bundle() = default;
  bool readAt(uint64_t offset, void *out, uint64_t size,
              std::string &error) const;

  std::string path;
  int fd = -1;
  moec_bundle_header header{};
  std::string metadata, strings, vocabulary;
  std::vector<moec_bundle_tensor> tensors;
  std::vector<moec_bundle_expert> experts;
};

/// XXH3-64 (seed 0), the bundle's checksum.
uint64_t checksum(const void *data, uint64_t size);

} // namespace moec::bundle

#endif // MOEC_RUNTIME_BUNDLE_BUNDLE_H

//===- Bundle.cpp - Opening and reading a weight bundle -------------------===//

#include "runtime/bundle/Bundle.h"

#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

// The layouts are the file format: no padding may change them.
static_assert(sizeof(moec_bundle_header) == 96, "header layout");
static_assert(sizeof(moec_bundle_tensor) == 80, "tensor entry layout");
static_assert(sizeof(moec_bundle_expert) == 104, "expert entry layout");

namespace moec::bundle {

uint64_t checksum(const void *data, uint64_t size) {
  return XXH3_64bits(data, size);
}

namespace {
std::string at(const std::string &path, uint64_t offset) {
  return path + ": offset " + std::to_string(offset) + ": ";
}
} // namespace

Bundle::~Bundle() {
  if (fd >= 0)
    ::close(fd);
}

bool Bundle::readAt(uint64_t offset, void *out, uint64_t size,
                    std::string &error) const {
  auto *p = static_cast<uint8_t *>(out);
  while (size > 0) {
    ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      error = at(path, offset) + (n == 0 ? "unexpected end of file"
                                         : std::string("read failed: ") +
                                               std::strerror(errno));
      return false;
    }
    p += n;
    offset += static_cast<uint64_t>(n);
    size -= static_cast<uint64_t>(n);
  }
  return true;
}

std::unique_ptr<Bundle> Bundle::open(const std::string &path,
                                     std::string &error) {
  std::unique_ptr<Bundle> b(new Bundle());
  b->path = path;
  b->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (b->fd < 0) {
    error = path + ": cannot open: " + std::strerror(errno);
    return nullptr;
  }
  struct stat st;
  if (::fstat(b->fd, &st) != 0) {
    error = path + ": cannot stat: " + std::strerror(errno);
    return nullptr;
  }
  uint64_t fileSize = static_cast<uint64_t>(st.st_size);
  moec_bundle_header &h = b->header;
  if (fileSize < sizeof(h)) {
    error = path + ": file is " + std::to_string(fileSize) +
            " bytes, too short for a bundle header";
    return nullptr;
  }
  if (!b->readAt(0, &h, sizeof(h), error))
    return nullptr;
  if (std::memcmp(h.magic, MOEC_BUNDLE_MAGIC, 8) != 0) {
    error = at(path, 0) + "not a moec bundle (bad magic)";
    return nullptr;
  }
  if (h.version_major != MOEC_BUNDLE_VERSION_MAJOR ||
      h.version_minor > MOEC_BUNDLE_VERSION_MINOR) {
    error = at(path, 8) + "bundle format " + std::to_string(h.version_major) +
            "." + std::to_string(h.version_minor) + ", but this runtime reads " +
            std::to_string(MOEC_BUNDLE_VERSION_MAJOR) + "." +
            std::to_string(MOEC_BUNDLE_VERSION_MINOR) +
            ": recompile the model with a matching moec";
    return nullptr;
  }
  moec_bundle_header zeroed = h;
  zeroed.header_checksum = 0;
  if (checksum(&zeroed, sizeof(zeroed)) != h.header_checksum) {
    error = at(path, 0) + "header checksum mismatch: the file is corrupt";
    return nullptr;
  }
  if (h.header_size != sizeof(h) || h.file_size != fileSize) {
    error = at(path, 0) + "header says " + std::to_string(h.file_size) +
            " bytes but the file has " + std::to_string(fileSize) +
            ": truncated or corrupt";
    return nullptr;
  }
  if (h.io_block == 0 || (h.io_block & (h.io_block - 1)) != 0) {
    error = at(path, 20) + "io_block " + std::to_string(h.io_block) +
            " is not a power of two";
    return nullptr;
  }
  // The tables, bounded by the file before anything is sized by them.
  uint64_t tableBytes = uint64_t(h.tensor_count) * sizeof(moec_bundle_tensor) +
                        uint64_t(h.expert_count) * sizeof(moec_bundle_expert) +
                        h.vocabulary_size;
  if (h.tables_offset > fileSize || h.metadata_size > fileSize ||
      h.strings_size > fileSize || tableBytes > fileSize ||
      h.tables_offset + h.metadata_size + h.strings_size + tableBytes >
          fileSize) {
    error = at(path, h.tables_offset) + "tables run past the end of the file";
    return nullptr;
  }
  std::vector<uint8_t> tables(h.metadata_size + h.strings_size + tableBytes);
  if (!b->readAt(h.tables_offset, tables.data(), tables.size(), error))
    return nullptr;
  if (checksum(tables.data(), tables.size()) != h.tables_checksum) {
    error = at(path, h.tables_offset) +
            "table checksum mismatch: the file is corrupt";
    return nullptr;
  }
  const uint8_t *p = tables.data();
  b->metadata.assign(reinterpret_cast<const char *>(p), h.metadata_size);
  p += h.metadata_size;
  b->strings.assign(reinterpret_cast<const char *>(p), h.strings_size);
  p += h.strings_size;
  b->tensors.resize(h.tensor_count);
  std::memcpy(b->tensors.data(), p, h.tensor_count * sizeof(moec_bundle_tensor));
  p += h.tensor_count * sizeof(moec_bundle_tensor);
  b->experts.resize(h.expert_count);
  std::memcpy(b->experts.data(), p,
              h.expert_count * sizeof(moec_bundle_expert));
  p += h.expert_count * sizeof(moec_bundle_expert);
  b->vocabulary.assign(reinterpret_cast<const char *>(p), h.vocabulary_size);

  auto inside = [&](uint64_t offset, uint64_t size) {
    return offset <= fileSize && size <= fileSize - offset;
  };
  for (const moec_bundle_tensor &t : b->tensors) {
    if (uint64_t(t.name_offset) + t.name_size > b->strings.size() ||
        !inside(t.offset, t.size) || t.n_dims == 0 || t.n_dims > 4) {
      error = at(path, t.offset) + "tensor entry out of bounds";
      return nullptr;
    }
  }
  for (const moec_bundle_expert &e : b->experts) {
    bool ok = inside(e.offset, e.size) && e.offset % h.io_block == 0;
    for (int i = 0; i < 3 && ok; ++i)
      ok = e.part_offset[i] <= e.size &&
           e.part_size[i] <= e.size - e.part_offset[i];
    if (!ok) {
      error = at(path, e.offset) + "extent of layer " +
              std::to_string(e.layer) + " expert " + std::to_string(e.expert) +
              " is out of bounds or not aligned to the " +
              std::to_string(h.io_block) + "-byte I/O block";
      return nullptr;
    }
  }
  return b;
}

std::string_view Bundle::getTensorName(const moec_bundle_tensor &t) const {
  return std::string_view(strings).substr(t.name_offset, t.name_size);
}

const moec_bundle_tensor *Bundle::findTensor(std::string_view name) const {
  for (const moec_bundle_tensor &t : tensors)
    if (getTensorName(t) == name)
      return &t;
  return nullptr;
}

const moec_bundle_expert *Bundle::findExpert(uint32_t layer,
                                             uint32_t expert) const {
  for (const moec_bundle_expert &e : experts)
    if (e.layer == layer && e.expert == expert)
      return &e;
  return nullptr;
}

bool Bundle::readTensor(const moec_bundle_tensor &t, std::vector<uint8_t> &out,
                        std::string &error) const {
  out.resize(t.size);
  if (!readAt(t.offset, out.data(), t.size, error))
    return false;
  if (checksum(out.data(), t.size) != t.checksum) {
    error = at(path, t.offset) + "tensor '" + std::string(getTensorName(t)) +
            "': checksum mismatch";
    return false;
  }
  return true;
}

bool Bundle::readExpert(const moec_bundle_expert &e, uint8_t *out,
                        std::string &error) const {
  if (!readAt(e.offset, out, e.size, error))
    return false;
  if (checksum(out, e.size) != e.checksum) {
    error = at(path, e.offset) + "extent of layer " + std::to_string(e.layer) +
            " expert " + std::to_string(e.expert) + ": checksum mismatch";
    return false;
  }
  return true;
}

} // namespace moec::bundle

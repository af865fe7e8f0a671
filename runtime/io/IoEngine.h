//===- IoEngine.h - Reading expert extents from storage ---------*- C++ -*-===//
//
// Submits many reads at once (all missed experts of a layer) and reports
// them as they complete, so that compute on cached experts overlaps the
// reads. Two engines behind one interface: io_uring (liburing), and a pool
// of pread threads where io_uring is not available or not wanted. Files are
// opened by the caller, with O_DIRECT where the file system allows it, so
// that the page cache does not hide the memory budget; the buffers,
// offsets and sizes of O_DIRECT reads are multiples of the I/O block.
// Plain C++, no LLVM.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_IO_IOENGINE_H
#define MOEC_RUNTIME_IO_IOENGINE_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moec::io {

enum class EngineKind { Auto, IoUring, PreadPool };

struct ReadRequest {
  int fd;
  uint64_t offset;
  uint64_t size;
  uint8_t *destination;
  /// Returned with the completion.
  uint64_t tag;
};

struct Completion {
  uint64_t tag;
  /// 0, or the errno of the failed read (EIO for a read past the end).
  int error;
};

class IoEngine {
public:
  virtual ~IoEngine() = default;

  /// io_uring when `kind` is Auto and the kernel has it, else the pool.
  /// Null with `error` set when the requested engine cannot start.
  static std::unique_ptr<IoEngine> create(EngineKind kind, unsigned depth,
                                          std::string &error);

  virtual const char *getName() const = 0;
  /// Queues reads; they complete in any order.
  virtual void submit(const std::vector<ReadRequest> &requests) = 0;
  /// Appends completions to `out`; with `block`, waits for at least one if
  /// any read is outstanding. Returns how many were appended.
  virtual size_t poll(std::vector<Completion> &out, bool block) = 0;
  /// Reads still outstanding.
  virtual size_t getPending() const = 0;
};

/// Opens `path` read-only with O_DIRECT when the file system supports it;
/// `direct` says whether it did. -1 with errno on failure.
int openForStreaming(const std::string &path, bool preferDirect, bool &direct);

} // namespace moec::io

#endif // MOEC_RUNTIME_IO_IOENGINE_H

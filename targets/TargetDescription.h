//===- TargetDescription.h - What moec compiles for -------------*- C++ -*-===//
//
// A target is a named description of a device: LLVM triple, CPU and feature
// flags, vector width, caches, memory and storage bandwidth, I/O block size,
// and the backend that generates its code. Named boards are rows of a table;
// `host` is detected from the machine, reporting only what the OS enables
// (XCR0 via xgetbv on x86; AMX only if the kernel grants this process the
// tile state), because some machines advertise AMX that dies with SIGILL.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TARGETS_TARGETDESCRIPTION_H
#define MOEC_TARGETS_TARGETDESCRIPTION_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace moec::targets {

/// The code generator a target's kernels come from.
enum class BackendKind { Cpu, Vulkan, OpenCL, Cuda, Hexagon };

llvm::StringRef getBackendName(BackendKind kind);

/// Whether moec has that backend yet. Descriptions exist before backends so
/// that planning and the bundle layout can be written against them.
bool isBackendImplemented(BackendKind kind);

struct TargetDescription {
  std::string name;
  std::string summary;
  /// LLVM target triple of the code that runs on the device's CPU.
  std::string triple;
  /// LLVM CPU name (generic where features are listed explicitly).
  std::string cpu;
  /// LLVM feature flags, "+avx2" style; the authoritative ISA list.
  std::vector<std::string> features;
  BackendKind backend;
  /// Widest vector register the kernels may use, in bits.
  unsigned vectorBits;
  /// Cache sizes in bytes (0 where unknown).
  uint64_t l1dBytes, l2Bytes, l3Bytes;
  /// Device memory, and its streaming read bandwidth in GB/s (nominal for
  /// boards; 0 for host, whose benchmarks measure it).
  uint64_t memoryBytes;
  double memoryGBps;
  /// Storage streaming read bandwidth in GB/s (nominal; 0 for host).
  double storageGBps;
  /// The block that O_DIRECT reads are aligned to.
  uint32_t ioBlockBytes;
  /// Rows of each quantized matrix that the bundle stores interleaved block
  /// by block, as this target's GEMV kernels read them (one sequential
  /// stream per tile of rows; compiler/emit/Repack.h); 1 keeps GGUF's
  /// row-major blocks. Measured on AVX2: 8 rows read 1.6x faster than 8
  /// row-major streams.
  unsigned weightInterleave = 8;

  bool hasFeature(llvm::StringRef feature) const;
};

/// The named targets, `host` first (detected).
std::vector<TargetDescription> getTargets();

/// The target called `name`; an unknown name is an error listing the names.
llvm::Expected<TargetDescription> lookupTarget(llvm::StringRef name);

/// Describes the machine moec runs on.
TargetDescription detectHost();

} // namespace moec::targets

#endif // MOEC_TARGETS_TARGETDESCRIPTION_H

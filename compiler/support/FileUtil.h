//===- FileUtil.h - Reading and writing model files -------------*- C++ -*-===//

#ifndef MOEC_COMPILER_SUPPORT_FILEUTIL_H
#define MOEC_COMPILER_SUPPORT_FILEUTIL_H

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <memory>

namespace moec {

/// Maps `path` read-only (model files are large: never copied), with an
/// error "PATH: cannot open: REASON".
llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>>
mapFile(llvm::StringRef path);

/// Writes `path` through a temporary file beside it that is renamed over it
/// once `contents` has written everything: a failed or killed run never
/// leaves a half-written file under the final name. The stream can pwrite
/// into what it has written (a header whose checksums cover what follows).
llvm::Error writeFileAtomically(
    llvm::StringRef path,
    llvm::function_ref<void(llvm::raw_pwrite_stream &)> contents);

} // namespace moec

#endif // MOEC_COMPILER_SUPPORT_FILEUTIL_H

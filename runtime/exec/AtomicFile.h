//===- AtomicFile.h - Files that appear whole or not at all -----*- C++ -*-===//
//
// The files the runtime writes for other programs to read (calib.dat, a
// Hessian file, the --stats JSON) go first to a temporary file beside their
// path, `<path>.tmp<pid>`, which is renamed over the path once written and
// closed: a reader never sees half a file, and a failed write leaves what
// the path held before. Plain C++ and POSIX: the runtime links no LLVM.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_EXEC_ATOMICFILE_H
#define MOEC_RUNTIME_EXEC_ATOMICFILE_H

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <unistd.h>

namespace moec::exec {

/// Writes `path` with `write`, which returns whether all its writes to the
/// open file succeeded. On failure returns false with `error` saying which
/// file could not be written and why; the temporary file is removed.
inline bool writeFileAtomically(const std::string &path,
                                const std::function<bool(std::FILE *)> &write,
                                std::string &error) {
  std::string temporary = path + ".tmp" + std::to_string(::getpid());
  std::FILE *f = std::fopen(temporary.c_str(), "wb");
  if (!f) {
    error = "cannot write " + temporary + ": " + std::strerror(errno);
    return false;
  }
  bool ok = write(f);
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(temporary.c_str(), path.c_str()) != 0) {
    error = "cannot write " + path + ": " + std::strerror(errno);
    std::remove(temporary.c_str());
    return false;
  }
  return true;
}

/// Writes `bytes` to `path` as above.
inline bool writeFileAtomically(const std::string &path,
                                const std::string &bytes, std::string &error) {
  return writeFileAtomically(
      path,
      [&](std::FILE *f) {
        return std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
      },
      error);
}

} // namespace moec::exec

#endif // MOEC_RUNTIME_EXEC_ATOMICFILE_H

//===- FileUtil.cpp - Reading and writing model files ---------------------===//

#include "compiler/support/FileUtil.h"

#include "llvm/Support/FileSystem.h"

using namespace llvm;

Expected<std::unique_ptr<MemoryBuffer>> moec::mapFile(StringRef path) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getFile(path, /*IsText=*/false,
                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return createStringError(buffer.getError(), "%s: cannot open: %s",
                             path.str().c_str(),
                             buffer.getError().message().c_str());
  return std::move(*buffer);
}

Error moec::writeFileAtomically(
    StringRef path, function_ref<void(raw_pwrite_stream &)> contents) {
  Expected<sys::fs::TempFile> temp =
      sys::fs::TempFile::create(path + ".tmp-%%%%%%");
  if (!temp)
    return createStringError(inconvertibleErrorCode(), "%s: cannot create: %s",
                             path.str().c_str(),
                             toString(temp.takeError()).c_str());
  {
    raw_fd_ostream os(temp->FD, /*shouldClose=*/false);
    os.SetBufferSize(1 << 22);
    contents(os);
    os.flush();
    if (os.has_error()) {
      std::string message = os.error().message();
      os.clear_error();
      consumeError(temp->discard());
      return createStringError(inconvertibleErrorCode(),
                               "%s: write failed: %s", path.str().c_str(),
                               message.c_str());
    }
  }
  if (Error e = temp->keep(path))
    return createStringError(inconvertibleErrorCode(), "%s: cannot rename: %s",
                             path.str().c_str(),
                             toString(std::move(e)).c_str());
  return Error::success();
}

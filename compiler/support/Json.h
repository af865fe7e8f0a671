//===- Json.h - JSON parsing for untrusted files ----------------*- C++ -*-===//

#ifndef MOEC_COMPILER_SUPPORT_JSON_H
#define MOEC_COMPILER_SUPPORT_JSON_H

#include "llvm/Support/JSON.h"

namespace moec {

/// Parses `text` as JSON, refusing nesting deeper than `maxDepth` before
/// parsing: LLVM's parser recurses once per level, so "[[[[..." from an
/// untrusted file could otherwise exhaust the stack.
llvm::Expected<llvm::json::Value> parseUntrustedJson(llvm::StringRef text,
                                                     unsigned maxDepth);

} // namespace moec

#endif // MOEC_COMPILER_SUPPORT_JSON_H

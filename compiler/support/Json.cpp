//===- Json.cpp - JSON parsing for untrusted files ------------------------===//

#include "compiler/support/Json.h"

#include <algorithm>

using namespace llvm;

Expected<json::Value> moec::parseUntrustedJson(StringRef text,
                                               unsigned maxDepth) {
  unsigned depth = 0, deepest = 0;
  bool inString = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (inString) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        inString = false;
    } else if (c == '"') {
      inString = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  if (deepest > maxDepth)
    return createStringError(inconvertibleErrorCode(),
                             "JSON nests %u levels deep, more than the %u "
                             "this file can need",
                             deepest, maxDepth);
  return json::parse(text);
}

//===- Vocabulary.h - A GGUF file's tokenizer metadata ----------*- C++ -*-===//
//
// Reads GGUF's tokenizer.ggml.* keys (and tokenizer.chat_template) into the
// runtime tokenizer's Vocabulary, with llama.cpp's defaults for what a file
// leaves out. The compiler copies it into the bundle; `moec tokenize` uses
// it directly.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_IMPORT_VOCABULARY_H
#define MOEC_COMPILER_IMPORT_VOCABULARY_H

#include "compiler/gguf/GgufFile.h"
#include "compiler/model/WeightStore.h"
#include "runtime/tokenizer/Tokenizer.h"

#include "llvm/Support/Error.h"

namespace moec::importer {

/// Whether `file` carries a tokenizer (tokenizer.ggml.model).
bool hasVocabulary(const gguf::GgufFile &file);

/// The vocabulary of `file`; an error naming the key that is missing or of
/// the wrong type.
llvm::Expected<tokenizer::Vocabulary>
readVocabulary(const gguf::GgufFile &file);

/// The vocabulary a bundle of `store`'s model carries, serialized: "" when
/// the model has none the runtime can use (a checkpoint directory, a GGUF
/// without tokenizer metadata, a pre-tokenizer moec lacks), with `note`
/// saying why for the user.
std::string getBundleVocabulary(const model::WeightStore &store,
                                std::string &note);

} // namespace moec::importer

#endif // MOEC_COMPILER_IMPORT_VOCABULARY_H

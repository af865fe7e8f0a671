//===- HfConfigFuzzer.cpp - libFuzzer target for config.json parsing ------===//
//
// Parses arbitrary bytes as a Hugging Face config.json (depth-bounded JSON)
// and reads a model configuration from it; when one results, enumerates the
// tensors and their checkpoint names as the weight store would.
//
//===----------------------------------------------------------------------===//

#include "compiler/model/ModelConfig.h"
#include "compiler/support/Json.h"

using namespace llvm;
using namespace moec;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Expected<json::Value> value = parseUntrustedJson(
      StringRef(reinterpret_cast<const char *>(data), size), 16);
  if (!value) {
    consumeError(value.takeError());
    return 0;
  }
  const json::Object *object = value->getAsObject();
  if (!object)
    return 0;
  Expected<model::ModelConfig> config =
      model::readHfConfig(*object, "fuzz/config.json");
  if (!config) {
    consumeError(config.takeError());
    return 0;
  }
  // A valid config may still be huge: the weight store bounds layers and
  // experts by the checkpoint's tensor count before enumerating roles, so
  // enumerate here only what a plausible checkpoint could hold.
  if (config->numLayers > 64 || config->numExperts > 256)
    return 0;
  volatile size_t sink = 0;
  for (const model::TensorRole &role : model::getTensorRoles(*config))
    sink += model::getHfTensorName(*config, role, 0).size();
  (void)sink;
  return 0;
}

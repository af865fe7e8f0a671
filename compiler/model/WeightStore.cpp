//===- WeightStore.cpp - A model's tensors under their canonical names ----===//

#include "compiler/model/WeightStore.h"

#include "compiler/gguf/GgufFile.h"
#include "compiler/safetensors/SafetensorsFile.h"
#include "compiler/support/FileUtil.h"
#include "compiler/support/Json.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <sys/mman.h>
#include <unistd.h>

using namespace llvm;
using namespace moec;
using namespace moec::model;

WeightStore::~WeightStore() = default;

Expected<std::unique_ptr<WeightStore>> WeightStore::open(StringRef path) {
  Expected<std::unique_ptr<WeightStore>> store = openByName(path);
  if (store) {
    // Releasing pages after use is for models that do not fit: below half
    // of the memory the source stays cached, and the release would only
    // cost its system calls (~1.3 s for a 3.8 GB GGUF) and a read of the
    // file from storage the next time (a copy, another compile).
    static const uint64_t physicalBytes =
        uint64_t(sysconf(_SC_PHYS_PAGES)) * uint64_t(sysconf(_SC_PAGESIZE));
    (*store)->releasesPages = (*store)->getTotalBytes() > physicalBytes / 2;
  }
  return store;
}

Expected<std::unique_ptr<WeightStore>> WeightStore::openByName(StringRef path) {
  if (sys::fs::is_directory(path))
    return openCheckpoint(path, "");
  StringRef name = sys::path::filename(path);
  StringRef dir = sys::path::parent_path(path);
  if (dir.empty())
    dir = ".";
  if (name == "config.json")
    return openCheckpoint(dir, "");
  if (name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json"))
    return openCheckpoint(dir, name);
  return openGguf(path);
}

uint64_t WeightStore::getTotalBytes() const {
  uint64_t total = 0;
  for (const StoredTensor &t : tensors)
    total += t.numBytes;
  return total;
}

const StoredTensor *WeightStore::find(StringRef name) const {
  auto it = index.find(name);
  return it == index.end() ? nullptr : &tensors[it->second];
}

namespace {

/// Calls `fn` with the bytes of each extent that bytes [offset, offset +
/// size) of `t` cover, in order (the range must lie inside the tensor).
void forEachRange(const WeightStore &store, const StoredTensor &t,
                  uint64_t offset, uint64_t size,
                  function_ref<void(ArrayRef<uint8_t>)> fn) {
  for (const StoredTensor::Extent &e : t.extents) {
    if (size == 0)
      return;
    if (offset >= e.size) {
      offset -= e.size;
      continue;
    }
    uint64_t n = std::min(size, e.size - offset);
    fn(store.getExtentData(e).slice(offset, n));
    size -= n;
    offset = 0;
  }
}

} // namespace

void WeightStore::copyBytes(const StoredTensor &t, uint64_t offset,
                            uint64_t size, uint8_t *out) const {
  forEachRange(*this, t, offset, size, [&](ArrayRef<uint8_t> bytes) {
    std::memcpy(out, bytes.data(), bytes.size());
    out += bytes.size();
  });
}

void WeightStore::releaseBytes(const StoredTensor &t, uint64_t offset,
                               uint64_t size) const {
  if (!releasesPages)
    return;
  static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  forEachRange(*this, t, offset, size, [&](ArrayRef<uint8_t> bytes) {
    // Whole pages inside the range only: a neighbour's bytes stay. PAGEOUT
    // (not DONTNEED) loses nothing even where the file was read into
    // anonymous memory rather than mapped.
    uintptr_t begin = reinterpret_cast<uintptr_t>(bytes.data());
    uintptr_t end = begin + bytes.size();
    begin = (begin + page - 1) / page * page;
    end = end / page * page;
    if (end > begin)
      ::madvise(reinterpret_cast<void *>(begin), end - begin, MADV_PAGEOUT);
  });
}

ArrayRef<uint8_t>
WeightStore::getExtentData(const StoredTensor::Extent &e) const {
  ArrayRef<uint8_t> file = format == SourceFormat::Gguf
                               ? ggufFile->getFileData()
                               : shards[e.file]->getFileData();
  return file.slice(e.offset, e.size);
}

//===----------------------------------------------------------------------===//
// GGUF
//===----------------------------------------------------------------------===//

uint64_t StoredTensor::getExpertBytes(int64_t e) const {
  if (!expertTypes.empty())
    return extents[size_t(e)].size;
  return numBytes / uint64_t(dims.back());
}

uint64_t StoredTensor::getExpertOffset(int64_t e) const {
  if (expertTypes.empty())
    return uint64_t(e) * getExpertBytes(0);
  uint64_t offset = 0;
  for (int64_t i = 0; i < e; ++i)
    offset += extents[size_t(i)].size;
  return offset;
}

Expected<std::unique_ptr<WeightStore>> WeightStore::openGguf(StringRef path) {
  Expected<std::unique_ptr<gguf::GgufFile>> file = gguf::GgufFile::open(path);
  if (!file)
    return file.takeError();
  Expected<ModelConfig> config = readGgufConfig(**file);
  if (!config)
    return config.takeError();
  std::unique_ptr<WeightStore> store(new WeightStore());
  store->format = SourceFormat::Gguf;
  store->config = *config;
  store->roles = getTensorRoles(*config);
  store->files.push_back(path.str());
  for (const TensorRole &role : store->roles) {
    // readGgufConfig checked that every role's tensor exists with its dims,
    // whole or (a bank of mixed formats) one tensor per expert.
    StoredTensor s;
    s.name = role.ggufName;
    s.dims.assign(role.dims.begin(), role.dims.end());
    if (const gguf::TensorInfo *t = (*file)->findTensor(role.ggufName)) {
      s.type = t->type.type;
      s.numBytes = t->numBytes;
      s.extents.push_back(
          {0, (*file)->getDataOffset() + t->offset, t->numBytes});
    } else {
      s.numBytes = 0;
      for (int64_t e = 0; e < config->numExperts; ++e) {
        const gguf::TensorInfo *slice =
            (*file)->findTensor(getExpertSliceName(role.ggufName, e));
        s.expertTypes.push_back(slice->type.type);
        s.numBytes += slice->numBytes;
        s.extents.push_back(
            {0, (*file)->getDataOffset() + slice->offset, slice->numBytes});
      }
      s.type = s.expertTypes.front();
      // One format throughout: an ordinary bank that was written in slices.
      if (llvm::all_equal(s.expertTypes))
        s.expertTypes.clear();
    }
    store->index[s.name] = store->tensors.size();
    store->tensors.push_back(std::move(s));
  }
  for (size_t i = 0; i < store->tensors.size(); ++i)
    store->tensors[i].role = &store->roles[i];
  store->ggufFile = std::move(*file);
  return std::move(store);
}

//===----------------------------------------------------------------------===//
// Hugging Face checkpoints
//===----------------------------------------------------------------------===//

namespace {

Expected<json::Value> readJsonFile(StringRef path, unsigned maxDepth) {
  Expected<std::unique_ptr<MemoryBuffer>> buffer = mapFile(path);
  if (!buffer)
    return buffer.takeError();
  Expected<json::Value> value =
      parseUntrustedJson((*buffer)->getBuffer(), maxDepth);
  if (!value)
    return createStringError(inconvertibleErrorCode(), "%s: invalid JSON: %s",
                             path.str().c_str(),
                             toString(value.takeError()).c_str());
  return value;
}

Error checkedError(StringRef file, const Twine &message) {
  return createStringError(inconvertibleErrorCode(), file + ": " + message);
}

} // namespace

Expected<std::unique_ptr<WeightStore>>
WeightStore::openCheckpoint(StringRef directory, StringRef weightsFile) {
  SmallString<256> configPath(directory);
  sys::path::append(configPath, "config.json");
  Expected<json::Value> configJson = readJsonFile(configPath, 16);
  if (!configJson)
    return configJson.takeError();
  const json::Object *configObject = configJson->getAsObject();
  if (!configObject)
    return checkedError(configPath, "is not a JSON object");
  Expected<ModelConfig> config = readHfConfig(*configObject, configPath);
  if (!config)
    return config.takeError();

  std::unique_ptr<WeightStore> store(new WeightStore());
  store->format = SourceFormat::Safetensors;
  store->config = *config;

  // Which shard holds which tensor.
  StringMap<unsigned> shardOf;
  auto addShard = [&](StringRef name) -> Expected<unsigned> {
    if (name.contains('/') || name.contains('\\') || name == ".." ||
        name.empty())
      return checkedError(directory, "shard name '" + name +
                                         "' is not a file name in the "
                                         "checkpoint directory");
    for (unsigned i = 0; i < store->files.size(); ++i)
      if (sys::path::filename(store->files[i]) == name)
        return i;
    SmallString<256> path(directory);
    sys::path::append(path, name);
    Expected<std::unique_ptr<safetensors::SafetensorsFile>> shard =
        safetensors::SafetensorsFile::open(path);
    if (!shard)
      return shard.takeError();
    store->files.push_back(std::string(path));
    store->shards.push_back(std::move(*shard));
    return static_cast<unsigned>(store->shards.size() - 1);
  };

  SmallString<256> indexPath(directory);
  sys::path::append(indexPath, "model.safetensors.index.json");
  bool sharded = weightsFile.ends_with(".index.json") ||
                 (weightsFile.empty() && sys::fs::exists(indexPath));
  if (sharded) {
    if (!weightsFile.empty()) {
      indexPath = directory;
      sys::path::append(indexPath, weightsFile);
    }
    Expected<json::Value> indexJson = readJsonFile(indexPath, 8);
    if (!indexJson)
      return indexJson.takeError();
    const json::Object *root = indexJson->getAsObject();
    const json::Object *map = root ? root->getObject("weight_map") : nullptr;
    if (!map)
      return checkedError(indexPath, "has no 'weight_map' object");
    // Shards in name order, so that file indices are deterministic.
    std::map<std::string, std::vector<std::string>> byShard;
    for (const auto &[tensor, shard] : *map) {
      std::optional<StringRef> s = shard.getAsString();
      if (!s)
        return checkedError(indexPath, "weight_map entry '" + tensor.str() +
                                           "' is not a file name");
      byShard[s->str()].push_back(tensor.str());
    }
    for (const auto &[shard, names] : byShard) {
      Expected<unsigned> file = addShard(shard);
      if (!file)
        return file.takeError();
      for (const std::string &name : names) {
        if (!store->shards[*file]->findTensor(name))
          return checkedError(indexPath, "weight_map puts '" + name +
                                             "' in " + shard +
                                             ", which does not hold it");
        shardOf[name] = *file;
      }
    }
  } else {
    Expected<unsigned> file =
        addShard(weightsFile.empty() ? "model.safetensors" : weightsFile);
    if (!file)
      return file.takeError();
    for (const safetensors::TensorInfo &t : store->shards[*file]->getTensors())
      shardOf[t.name] = *file;
  }

  // Each layer and each expert has tensors of its own: counts beyond the
  // checkpoint's tensor count are wrong, and checking them first bounds the
  // work below (config.json is untrusted).
  const ModelConfig &c = store->config;
  if (static_cast<uint64_t>(c.numLayers) > shardOf.size() ||
      static_cast<uint64_t>(c.numExperts) > shardOf.size())
    return checkedError(configPath,
                        Twine(c.numLayers) + " layers of " +
                            Twine(c.numExperts) + " experts cannot be stored "
                            "in the checkpoint's " +
                            Twine(shardOf.size()) + " tensors");
  if (!c.tiedEmbeddings && !shardOf.count("lm_head.weight"))
    return checkedError(store->files.front(),
                        "missing tensor 'lm_head.weight' (config.json says "
                        "tie_word_embeddings is false)");
  store->roles = getTensorRoles(store->config);
  if (Error e = store->addTensors(shardOf))
    return std::move(e);
  for (size_t i = 0; i < store->tensors.size(); ++i)
    store->tensors[i].role = &store->roles[i];
  return std::move(store);
}

Error WeightStore::addTensors(const StringMap<unsigned> &shardOf) {
  // Each tensor is read from the shard the index assigns it (or the one
  // file), even if another shard also holds a tensor of that name.
  StringMap<std::pair<unsigned, const safetensors::TensorInfo *>> all;
  for (const auto &entry : shardOf)
    all[entry.getKey()] = {entry.getValue(),
                           shards[entry.getValue()]->findTensor(entry.getKey())};
  const int64_t experts = config.numExperts;
  for (const TensorRole &role : roles) {
    bool perExpert = role.tensorClass == "experts";
    StoredTensor s;
    s.name = role.ggufName;
    s.dims.assign(role.dims.begin(), role.dims.end());
    // One HF tensor holds what the role needs, or (experts) one per expert.
    SmallVector<int64_t, 4> wantShape;
    ArrayRef<int64_t> dims = role.dims;
    if (perExpert)
      dims = dims.drop_back(); // one expert
    for (int64_t d : llvm::reverse(dims))
      wantShape.push_back(d);
    uint64_t total = 0;
    std::optional<safetensors::DType> dtype;
    for (int64_t e = 0; e < (perExpert ? experts : 1); ++e) {
      std::string hfName = getHfTensorName(config, role, perExpert ? e : -1);
      auto it = all.find(hfName);
      if (it == all.end())
        return checkedError(files.empty() ? "checkpoint" : files.front(),
                            "missing tensor '" + hfName + "' (" +
                                config.family->hfArchitecture +
                                " with the configuration in config.json)");
      auto [file, info] = it->second;
      StringRef shardPath = files[file];
      // Qwen2-MoE's shared expert gate is [1, H] in the checkpoint, [H] in
      // GGUF: the same bytes.
      SmallVector<int64_t, 4> shape(info->shape.begin(), info->shape.end());
      if (role.kind == TensorRole::SharedInputGate && shape.size() == 2 &&
          shape[0] == 1)
        shape.erase(shape.begin());
      if (ArrayRef<int64_t>(shape) != ArrayRef<int64_t>(wantShape))
        return checkedError(shardPath, "tensor '" + hfName + "' has shape " +
                                           formatDims(info->shape) +
                                           " but config.json implies " +
                                           formatDims(wantShape));
      if (dtype && *dtype != info->dtype)
        return checkedError(shardPath, "tensor '" + hfName + "' is " +
                                           safetensors::getDTypeName(info->dtype) +
                                           " but expert 0 of it is " +
                                           safetensors::getDTypeName(*dtype));
      dtype = info->dtype;
      uint64_t dataOffset = shards[file]->getDataOffset();
      s.extents.push_back({file, dataOffset + info->begin, info->end - info->begin});
      total += info->end - info->begin;
    }
    switch (*dtype) {
    case safetensors::DType::F32:
      s.type = gguf::GgmlType::F32;
      break;
    case safetensors::DType::F16:
      s.type = gguf::GgmlType::F16;
      break;
    case safetensors::DType::BF16:
      s.type = gguf::GgmlType::BF16;
      break;
    default:
      return checkedError(files[s.extents.front().file],
                          "tensor '" + getHfTensorName(config, role, perExpert ? 0 : -1) +
                              "' has dtype " + safetensors::getDTypeName(*dtype) +
                              ", which moec does not compute with (F32, F16, "
                              "BF16)");
    }
    s.numBytes = total;
    index[s.name] = tensors.size();
    tensors.push_back(std::move(s));
  }
  return Error::success();
}

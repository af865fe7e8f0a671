//===- BundleWriter.cpp - Writing a model's weight bundle -----------------===//

#include "compiler/emit/BundleWriter.h"

#include "compiler/emit/Repack.h"
#include "compiler/gguf/GgmlType.h"
#include "compiler/support/FileUtil.h"
#include "runtime/abi/moec_bundle.h"

#include "llvm/Support/JSON.h"
#include "llvm/Support/MathExtras.h"

#include <array>
#include <cstring>
#include <xxhash.h>

using namespace llvm;
using namespace moec;
using namespace moec::emit;
using model::StoredTensor;
using model::TensorRole;

const BundleLayout::Resident *
BundleLayout::findResident(StringRef name) const {
  for (const Resident &r : resident)
    if (r.tensor->name == name)
      return &r;
  return nullptr;
}

namespace {
/// Bytes of one block of a block-quantized type; 0 for float types.
uint64_t quantizedBlockBytes(gguf::GgmlType type) {
  if (std::optional<gguf::OwnGroupType> own = gguf::getOwnGroupType(type))
    return 2 + (own->asymmetric ? 2 : 0) + own->group * own->bits / 8;
  std::optional<gguf::GgmlTypeInfo> info =
      gguf::lookupGgmlType(static_cast<uint32_t>(type));
  return info && info->blockSize > 1 ? uint64_t(info->blockBytes) : 0;
}
} // namespace

unsigned moec::emit::getWeightInterleave(const StoredTensor &t,
                                         int64_t numExperts,
                                         unsigned weightInterleave,
                                         std::optional<gguf::GgmlType> type) {
  if (weightInterleave <= 1 || !t.role || t.dims.size() < 2 ||
      quantizedBlockBytes(type.value_or(t.type)) == 0)
    return 1;
  switch (t.role->kind) {
  case TensorRole::Output:
  case TensorRole::AttnQ:
  case TensorRole::AttnK:
  case TensorRole::AttnV:
  case TensorRole::AttnOutput:
  case TensorRole::ExpertGate:
  case TensorRole::ExpertUp:
  case TensorRole::ExpertDown:
  case TensorRole::SharedGate:
  case TensorRole::SharedUp:
  case TensorRole::SharedDown:
    break;
  default:
    return 1;
  }
  // Rows of one matrix (ggml order: the stacked expert tensors are
  // [cols, rows, E]).
  (void)numExperts;
  int64_t rows = t.dims[1];
  return rows > 0 && rows % weightInterleave == 0 ? weightInterleave : 1;
}

BundleLayout moec::emit::computeBundleLayout(const model::WeightStore &store,
                                             unsigned weightInterleave) {
  const model::ModelConfig &c = store.getConfig();
  BundleLayout layout;
  std::vector<std::array<const StoredTensor *, 3>> expertSources(c.numLayers);
  uint64_t offset = 0;
  for (const StoredTensor &t : store.getTensors()) {
    if (t.role->tensorClass == "experts") {
      int slot = t.role->kind == TensorRole::ExpertGate ? 0
                 : t.role->kind == TensorRole::ExpertUp ? 1
                                                        : 2;
      expertSources[t.role->layer][slot] = &t;
      continue;
    }
    offset = alignTo(offset, MOEC_BUNDLE_TENSOR_ALIGNMENT);
    layout.resident.push_back(
        {&t, offset, t.numBytes,
         getWeightInterleave(t, c.numExperts, weightInterleave)});
    offset += t.numBytes;
  }
  layout.residentSize = offset;
  // Each layer's experts, grouped by their formats (gate, up, down).
  layout.expertGroups.resize(c.numLayers);
  layout.groupOfExpert.resize(c.numLayers);
  for (int64_t l = 0; l < c.numLayers; ++l) {
    const auto &sources = expertSources[l];
    std::vector<BundleLayout::ExpertGroup> &groups = layout.expertGroups[l];
    for (int64_t x = 0; x < c.numExperts; ++x) {
      std::array<gguf::GgmlType, 3> types;
      for (int i = 0; i < 3; ++i)
        types[i] = sources[i]->getExpertType(x);
      unsigned g = 0;
      while (g < groups.size() &&
             !(groups[g].parts[0].type == types[0] &&
               groups[g].parts[1].type == types[1] &&
               groups[g].parts[2].type == types[2]))
        ++g;
      if (g == groups.size()) {
        BundleLayout::ExpertGroup group;
        uint64_t inExtent = 0;
        for (int i = 0; i < 3; ++i) {
          const StoredTensor *t = sources[i];
          uint64_t perExpert = t->getExpertBytes(x);
          inExtent = alignTo(inExtent, MOEC_BUNDLE_TENSOR_ALIGNMENT);
          group.parts[i] = {
              t, types[i], inExtent, perExpert,
              getWeightInterleave(*t, c.numExperts, weightInterleave,
                                  types[i])};
          inExtent += perExpert;
        }
        group.extentSize = inExtent;
        groups.push_back(std::move(group));
      }
      groups[g].members.push_back(x);
      layout.groupOfExpert[l].push_back(g);
    }
  }
  // The hash covers what compiled code relies on: names, types, shapes and
  // offsets of everything it reads, and the version of the interleaved
  // layout (2: split headers, compiler/emit/Repack.h).
  std::string description;
  raw_string_ostream os(description);
  os << "interleave-layout=2;";
  for (const BundleLayout::Resident &r : layout.resident) {
    os << r.tensor->name << ':' << uint32_t(r.tensor->type) << ':';
    for (int64_t d : r.tensor->dims)
      os << d << ',';
    os << '@' << r.offset << '+' << r.size << '/' << r.interleave << ';';
  }
  for (const auto &groups : layout.expertGroups)
    for (const BundleLayout::ExpertGroup &g : groups) {
      os << '[';
      for (int64_t x : g.members)
        os << x << ',';
      os << ']';
      for (const BundleLayout::ExpertPart &p : g.parts) {
        os << p.tensor->name << ':' << uint32_t(p.type) << ':';
        for (int64_t d : p.tensor->dims)
          os << d << ',';
        os << '@' << p.offset << '+' << p.size << '/' << p.interleave << ';';
      }
    }
  layout.hash = int64_t(XXH3_64bits(description.data(), description.size()) >>
                        1);
  return layout;
}

namespace {
/// Bytes [offset, offset + size) of `t` (whole matrices) into `dst`, in the
/// layout `interleave` (through `scratch` when repacked); the source pages
/// are released after use, so a model larger than memory streams through.
void copyWeights(const model::WeightStore &store, const StoredTensor &t,
                 gguf::GgmlType type, uint64_t offset, uint64_t size,
                 unsigned interleave, uint8_t *dst,
                 std::vector<uint8_t> &scratch) {
  if (interleave <= 1) {
    store.copyBytes(t, offset, size, dst);
  } else {
    scratch.resize(size);
    store.copyBytes(t, offset, size, scratch.data());
    // Whole matrices of dims[1] rows of dims[0] elements in `type`.
    uint64_t blockBytes = quantizedBlockBytes(type);
    uint64_t rowBytes = uint64_t(t.dims[0]) /
                        uint64_t(gguf::getGgmlTypeInfo(type).blockSize) *
                        blockBytes;
    repackRows(scratch.data(), dst, size / rowBytes, rowBytes, blockBytes,
               uint64_t(gguf::getSplitHeaderBytes(type)), interleave);
  }
  store.releaseBytes(t, offset, size);
}
} // namespace

Error moec::emit::writeBundle(const model::WeightStore &store, StringRef path,
                              const BundleOptions &options,
                              std::function<void(uint64_t, uint64_t)> progress) {
  if (options.ioBlock == 0 || !isPowerOf2_32(options.ioBlock) ||
      options.ioBlock < MOEC_BUNDLE_TENSOR_ALIGNMENT)
    return createStringError(inconvertibleErrorCode(),
                             "I/O block %u is not a power of two >= 64",
                             options.ioBlock);
  const model::ModelConfig &c = store.getConfig();

  BundleLayout layout = computeBundleLayout(store, options.weightInterleave);

  // Metadata: what the runtime needs to know of the model and the plan.
  json::Object model{
      {"family", c.family->name},
      {"vocab_size", c.vocabSize},
      {"hidden_size", c.hiddenSize},
      {"layers", c.numLayers},
      {"heads", c.numHeads},
      {"kv_heads", c.numKvHeads},
      {"head_dim", c.headDim},
      {"experts", c.numExperts},
      {"experts_used", c.numExpertsUsed},
      {"expert_ffn", c.expertFfnSize},
      {"shared_expert_ffn", c.sharedExpertFfnSize},
      {"context_length", c.contextLength},
      {"rms_norm_eps", c.rmsNormEps},
      {"rope_theta", c.ropeTheta},
      {"rope_style",
       c.rope == model::RopeStyle::NeoX ? "neox" : "interleaved"},
      {"norm_top_k", c.normTopK},
      {"tied_embeddings", c.tiedEmbeddings}};
  json::Value plan = options.plan;
  if (plan.kind() == json::Value::Null)
    plan = json::Object{{"all_experts_resident", true}};
  json::Object metadataObject{{"model", std::move(model)},
                              {"plan", std::move(plan)},
                              {"layout_hash", layout.hash}};
  if (options.compression.kind() != json::Value::Null)
    metadataObject["compression"] = options.compression;
  std::string metadata;
  raw_string_ostream(metadata) << json::Value(std::move(metadataObject));

  std::string strings;
  std::vector<moec_bundle_tensor> tensors;
  for (const BundleLayout::Resident &r : layout.resident) {
    const StoredTensor &t = *r.tensor;
    moec_bundle_tensor e{};
    e.name_offset = static_cast<uint32_t>(strings.size());
    e.name_size = static_cast<uint32_t>(t.name.size());
    strings += t.name;
    e.type = static_cast<uint32_t>(t.type);
    e.n_dims = static_cast<uint32_t>(t.dims.size());
    for (size_t i = 0; i < t.dims.size(); ++i)
      e.dims[i] = t.dims[i];
    e.size = t.numBytes;
    e.layout = r.interleave > 1 ? r.interleave : 0;
    tensors.push_back(e);
  }

  // Layout.
  moec_bundle_header h{};
  std::memcpy(h.magic, MOEC_BUNDLE_MAGIC, 8);
  h.version_major = MOEC_BUNDLE_VERSION_MAJOR;
  h.version_minor = MOEC_BUNDLE_VERSION_MINOR;
  h.header_size = sizeof(h);
  h.io_block = options.ioBlock;
  h.tables_offset = sizeof(h);
  h.metadata_size = metadata.size();
  h.strings_size = strings.size();
  h.tensor_count = static_cast<uint32_t>(tensors.size());
  h.expert_count = static_cast<uint32_t>(c.numLayers * c.numExperts);
  if (options.vocabulary.size() > UINT32_MAX)
    return createStringError(inconvertibleErrorCode(),
                             "the vocabulary takes more than 4 GiB");
  h.vocabulary_size = static_cast<uint32_t>(options.vocabulary.size());
  uint64_t tablesEnd = h.tables_offset + metadata.size() + strings.size() +
                       tensors.size() * sizeof(moec_bundle_tensor) +
                       uint64_t(h.expert_count) * sizeof(moec_bundle_expert) +
                       h.vocabulary_size;
  h.resident_offset = alignTo(tablesEnd, options.ioBlock);
  for (size_t i = 0; i < tensors.size(); ++i)
    tensors[i].offset = h.resident_offset + layout.resident[i].offset;
  h.resident_size = layout.residentSize;
  uint64_t offset = h.resident_offset + h.resident_size;

  std::vector<moec_bundle_expert> experts;
  for (int64_t l = 0; l < c.numLayers; ++l)
    for (int64_t x = 0; x < c.numExperts; ++x) {
      moec_bundle_expert e{};
      e.layer = static_cast<uint32_t>(l);
      e.expert = static_cast<uint32_t>(x);
      e.offset = offset = alignTo(offset, options.ioBlock);
      const BundleLayout::ExpertGroup &g =
          layout.expertGroups[l][layout.groupOfExpert[l][x]];
      for (int i = 0; i < 3; ++i) {
        const BundleLayout::ExpertPart &p = g.parts[i];
        e.type[i] = static_cast<uint32_t>(p.type);
        e.layout[i] = p.interleave > 1 ? p.interleave : 0;
        e.part_offset[i] = p.offset;
        e.part_size[i] = p.size;
      }
      e.size = g.extentSize;
      offset += e.size;
      experts.push_back(e);
    }
  // The file ends on an I/O block so that O_DIRECT reads of whole blocks
  // never run past it.
  h.file_size = alignTo(offset, options.ioBlock);

  // One pass over the weights: the data first, each piece checksummed as
  // it is written; then the tables, which record those checksums, and the
  // header go to the file's start. Every source page is read once and
  // released after use, so a model larger than memory streams through.
  std::vector<uint8_t> buffer, scratch;
  auto fillExtent = [&](size_t i) {
    buffer.assign(experts[i].size, 0);
    const moec_bundle_expert &e = experts[i];
    const BundleLayout::ExpertGroup &g =
        layout.expertGroups[e.layer][layout.groupOfExpert[e.layer][e.expert]];
    for (const BundleLayout::ExpertPart &p : g.parts)
      copyWeights(store, *p.tensor, p.type,
                  p.tensor->getExpertOffset(e.expert), p.size, p.interleave,
                  buffer.data() + p.offset, scratch);
  };
  return writeFileAtomically(path, [&](raw_pwrite_stream &os) {
    uint64_t written = 0;
    auto padTo = [&](uint64_t target) {
      os.write_zeros(target - written);
      written = target;
    };
    for (size_t i = 0; i < tensors.size(); ++i) {
      padTo(tensors[i].offset);
      buffer.resize(tensors[i].size);
      copyWeights(store, *layout.resident[i].tensor,
                  layout.resident[i].tensor->type, 0, buffer.size(),
                  layout.resident[i].interleave, buffer.data(), scratch);
      tensors[i].checksum = XXH3_64bits(buffer.data(), buffer.size());
      os.write(reinterpret_cast<const char *>(buffer.data()), buffer.size());
      written += buffer.size();
    }
    for (size_t i = 0; i < experts.size(); ++i) {
      padTo(experts[i].offset);
      fillExtent(i);
      experts[i].checksum = XXH3_64bits(buffer.data(), buffer.size());
      os.write(reinterpret_cast<const char *>(buffer.data()), buffer.size());
      written += buffer.size();
      if (progress)
        progress(written, h.file_size);
    }
    padTo(h.file_size);

    std::string tables = metadata + strings;
    tables.append(reinterpret_cast<const char *>(tensors.data()),
                  tensors.size() * sizeof(moec_bundle_tensor));
    tables.append(reinterpret_cast<const char *>(experts.data()),
                  experts.size() * sizeof(moec_bundle_expert));
    tables += options.vocabulary;
    assert(sizeof(h) + tables.size() == tablesEnd &&
           "the tables changed size after the layout was made");
    h.tables_checksum = XXH3_64bits(tables.data(), tables.size());
    h.header_checksum = XXH3_64bits(&h, sizeof(h));
    os.pwrite(reinterpret_cast<const char *>(&h), sizeof(h), 0);
    os.pwrite(tables.data(), tables.size(), sizeof(h));
  });
}

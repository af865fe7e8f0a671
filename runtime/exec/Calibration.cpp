//===- Calibration.cpp - Statistics of an instrumented model's run --------===//

#include "runtime/exec/Calibration.h"
#include "runtime/exec/AtomicFile.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

using namespace moec::exec;

bool CalibrationRecorder::observeInput(const char *tensor, const float *x,
                                       int64_t rows, int64_t cols,
                                       const int32_t *expertOffsets,
                                       std::string &error) {
  uint32_t experts = expertOffsets ? expertsPerLayer : 1;
  auto [it, inserted] = index.try_emplace(tensor, tensors.size());
  if (inserted) {
    TensorStats t;
    t.name = tensor;
    t.experts = experts;
    t.cols = cols;
    t.sumSquares.assign(size_t(experts) * size_t(cols), 0.0);
    t.rows.assign(experts, 0);
    tensors.push_back(std::move(t));
  }
  TensorStats &t = tensors[it->second];
  if (t.cols != cols || t.experts != experts) {
    error = "instrumented code reported " + t.name + " with " +
            std::to_string(cols) + " columns" +
            (expertOffsets ? " by expert" : "") + ", earlier with " +
            std::to_string(t.cols);
    return false;
  }
  for (uint32_t e = 0; e < experts; ++e) {
    int64_t begin = expertOffsets ? expertOffsets[e] : 0;
    int64_t end = expertOffsets ? expertOffsets[e + 1] : rows;
    double *sums = t.sumSquares.data() + size_t(e) * size_t(cols);
    for (int64_t r = begin; r < end; ++r) {
      const float *row = x + r * cols;
      for (int64_t c = 0; c < cols; ++c)
        sums[c] += double(row[c]) * double(row[c]);
    }
    t.rows[e] += uint64_t(end - begin);
  }
  if (hessianLayer != INT32_MIN)
    accumulateHessian(tensor, x, rows, cols, expertOffsets, experts);
  return true;
}

namespace {
/// The layer of a weight name: N of "blk.N.", -1 for others.
int32_t layerOfName(const char *name) {
  if (std::strncmp(name, "blk.", 4) != 0)
    return -1;
  char *end = nullptr;
  long layer = std::strtol(name + 4, &end, 10);
  return end && *end == '.' ? int32_t(layer) : -1;
}
} // namespace

namespace {
/// The weight whose input `name`'s is (q for k and v, gate for up): they
/// share one Hessian. GGUF names.
std::string inputGroupOf(const char *name) {
  std::string s = name;
  for (auto [from, to] : {std::pair<const char *, const char *>{".attn_k.", ".attn_q."},
                          {".attn_v.", ".attn_q."},
                          {".ffn_up_exps.", ".ffn_gate_exps."},
                          {".ffn_up_shexp.", ".ffn_gate_shexp."}}) {
    size_t at = s.find(from);
    if (at != std::string::npos)
      return s.replace(at, std::strlen(from), to);
  }
  return s;
}
} // namespace

void CalibrationRecorder::accumulateHessian(const char *tensor, const float *x,
                                            int64_t rows, int64_t cols,
                                            const int32_t *expertOffsets,
                                            uint32_t experts) {
  if (layerOfName(tensor) != hessianLayer)
    return;
  // Weights that read one input (q, k, v; gate and up) share a Hessian,
  // which the first of them observed adds to.
  auto [it, inserted] = hessianIndex.try_emplace(tensor, 0);
  if (inserted) {
    std::string group = inputGroupOf(tensor);
    auto owner = hessianGroups.find(group);
    if (owner != hessianGroups.end() &&
        hessians[owner->second.second].cols == cols &&
        hessians[owner->second.second].experts == experts) {
      it->second = owner->second.second;
      hessianOf.push_back({tensor, it->second});
      return;
    }
    Hessian h;
    h.experts = experts;
    h.cols = cols;
    h.sums.assign(size_t(experts) * size_t(cols) * size_t(cols), 0.0);
    h.rows.assign(experts, 0);
    it->second = hessians.size();
    hessians.push_back(std::move(h));
    hessianOf.push_back({tensor, it->second});
    hessianGroups[group] = {tensor, it->second};
  } else {
    auto owner = hessianGroups.find(inputGroupOf(tensor));
    if (owner == hessianGroups.end() || owner->second.first != tensor)
      return; // a sharer: the owner added this input
  }
  Hessian &h = hessians[it->second];
  for (uint32_t e = 0; e < experts; ++e) {
    int64_t begin = expertOffsets ? expertOffsets[e] : 0;
    int64_t end = expertOffsets ? expertOffsets[e + 1] : rows;
    double *H = h.sums.data() + size_t(e) * size_t(cols) * size_t(cols);
    for (int64_t r = begin; r < end; ++r) {
      const float *row = x + r * cols;
      for (int64_t i = 0; i < cols; ++i) {
        double xi = row[i];
        if (xi == 0.0)
          continue;
        double *Hi = H + i * cols;
        for (int64_t j = i; j < cols; ++j)
          Hi[j] += xi * double(row[j]);
      }
    }
    h.rows[e] += uint64_t(end - begin);
  }
}

void CalibrationRecorder::recordRouting(int32_t layer, const int32_t *ids,
                                        const float *weights, int64_t n,
                                        int64_t k) {
  size_t l = size_t(layer);
  lastIds[l].assign(ids, ids + n * k);
  lastWeights[l].assign(weights, weights + n * k);
  for (int64_t p = 0; p < n * k; ++p) {
    if (ids[p] < 0 || uint32_t(ids[p]) >= expertsPerLayer)
      continue; // the runtime's routing check reports it
    ++tokens[l][size_t(ids[p])];
    mass[l][size_t(ids[p])] += weights[p];
  }
}

bool CalibrationRecorder::observeExperts(int32_t layer, int64_t n, int64_t k,
                                         int64_t cols, const float *out,
                                         const int32_t *inverse,
                                         int64_t outRows, std::string &error) {
  size_t l = size_t(layer);
  if (lastIds[l].size() != size_t(n * k)) {
    error = "instrumented code reported layer " + std::to_string(layer) +
            "'s expert outputs for " + std::to_string(n) +
            " tokens, but its routing for " +
            std::to_string(lastIds[l].size() / size_t(k ? k : 1));
    return false;
  }
  for (int64_t p = 0; p < n * k; ++p) {
    int32_t e = lastIds[l][size_t(p)], row = inverse[p];
    if (e < 0 || uint32_t(e) >= expertsPerLayer)
      continue;
    if (row < 0 || row >= outRows) {
      error = "instrumented code reported an expert output row " +
              std::to_string(row) + " outside its " + std::to_string(outRows);
      return false;
    }
    const float *y = out + int64_t(row) * cols;
    double norm = 0;
    for (int64_t c = 0; c < cols; ++c)
      norm += double(y[c]) * double(y[c]);
    reap[l][size_t(e)] += double(lastWeights[l][size_t(p)]) * std::sqrt(norm);
  }
  return true;
}

namespace {

std::string number(double v) {
  if (!std::isfinite(v))
    return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

std::string quoted(const std::string &s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
      continue;
    }
    out += c;
  }
  return out + "\"";
}

} // namespace

bool CalibrationRecorder::write(const std::string &path,
                                std::string &error) const {
  std::string json = "{\"format\": \"moec-calibration\", \"version\": 1, "
                     "\"tokens\": " +
                     std::to_string(evaluated) + ",\n";
  json += " \"routing\": {\"tokens\": " + std::to_string(evaluated) +
          ", \"counts\": [";
  for (uint32_t l = 0; l < layers; ++l) {
    json += l ? ",\n   [" : "\n   [";
    for (uint32_t e = 0; e < expertsPerLayer; ++e)
      json += (e ? ", " : "") + std::to_string(tokens[l][e]);
    json += "]";
  }
  json += "]},\n \"experts\": [";
  for (uint32_t l = 0; l < layers; ++l) {
    json += std::string(l ? ",\n  " : "\n  ") + "{\"layer\": " +
            std::to_string(l) + ", \"tokens\": [";
    for (uint32_t e = 0; e < expertsPerLayer; ++e)
      json += (e ? ", " : "") + std::to_string(tokens[l][e]);
    json += "], \"weight_mass\": [";
    for (uint32_t e = 0; e < expertsPerLayer; ++e)
      json += (e ? ", " : "") + number(mass[l][e]);
    json += "], \"reap\": [";
    for (uint32_t e = 0; e < expertsPerLayer; ++e)
      json += (e ? ", " : "") + number(reap[l][e]);
    json += "]}";
  }
  json += "],\n \"tensors\": [";
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorStats &t = tensors[i];
    json += std::string(i ? ",\n  " : "\n  ") + "{\"name\": " +
            quoted(t.name) + ", \"experts\": " + std::to_string(t.experts) +
            ", \"columns\": " + std::to_string(t.cols) + ", \"rows\": [";
    for (uint32_t e = 0; e < t.experts; ++e)
      json += (e ? ", " : "") + std::to_string(t.rows[e]);
    json += "], \"offset\": " + std::to_string(offset) + "}";
    offset += uint64_t(t.experts) * uint64_t(t.cols) * 4;
  }
  json += "]";
  if (!source.empty())
    json += ",\n \"source\": " + source;
  json += "}\n";

  std::string bytes = "MOECCAL1";
  uint64_t size = json.size();
  for (int i = 0; i < 8; ++i)
    bytes.push_back(char((size >> (8 * i)) & 0xff));
  bytes += json;
  bytes.resize((bytes.size() + 7) / 8 * 8, '\0');
  for (const TensorStats &t : tensors)
    for (uint32_t e = 0; e < t.experts; ++e)
      for (int64_t c = 0; c < t.cols; ++c) {
        double sum = t.sumSquares[size_t(e) * size_t(t.cols) + size_t(c)];
        float mean = t.rows[e] ? float(sum / double(t.rows[e])) : 0.0f;
        char raw[4];
        std::memcpy(raw, &mean, 4);
        bytes.append(raw, 4);
      }

  return writeFileAtomically(path, bytes, error);
}

bool CalibrationRecorder::writeHessians(const std::string &path,
                                        std::string &error) const {
  if (hessianLayer == INT32_MIN) {
    error = "Hessians were not collected";
    return false;
  }
  std::string json = "{\"format\": \"moec-hessians\", \"version\": 1, "
                     "\"layer\": " +
                     std::to_string(hessianLayer) + ", \"tensors\": [";
  std::vector<uint64_t> offsets;
  uint64_t offset = 0;
  for (const Hessian &h : hessians) {
    offsets.push_back(offset);
    offset += uint64_t(h.experts) * uint64_t(h.cols) * uint64_t(h.cols) * 8;
  }
  for (size_t i = 0; i < hessianOf.size(); ++i) {
    const Hessian &h = hessians[hessianOf[i].second];
    json += std::string(i ? ",\n  " : "\n  ") + "{\"name\": " +
            quoted(hessianOf[i].first) + ", \"experts\": " +
            std::to_string(h.experts) + ", \"columns\": " +
            std::to_string(h.cols) + ", \"rows\": [";
    for (uint32_t e = 0; e < h.experts; ++e)
      json += (e ? ", " : "") + std::to_string(h.rows[e]);
    json += "], \"offset\": " + std::to_string(offsets[hessianOf[i].second]) +
            "}";
  }
  json += "]}\n";
  std::string head = "MOECHES1";
  uint64_t size = json.size();
  for (int i = 0; i < 8; ++i)
    head.push_back(char((size >> (8 * i)) & 0xff));
  head += json;
  head.resize((head.size() + 7) / 8 * 8, '\0');
  return writeFileAtomically(
      path,
      [&](std::FILE *f) {
        bool ok = std::fwrite(head.data(), 1, head.size(), f) == head.size();
        // Full symmetric matrices, one row at a time.
        std::vector<double> row;
        for (const Hessian &h : hessians)
          for (uint32_t e = 0; e < h.experts && ok; ++e) {
            const double *H =
                h.sums.data() + size_t(e) * size_t(h.cols) * size_t(h.cols);
            row.resize(size_t(h.cols));
            for (int64_t i = 0; i < h.cols && ok; ++i) {
              for (int64_t j = 0; j < h.cols; ++j)
                row[size_t(j)] = j >= i ? H[i * h.cols + j] : H[j * h.cols + i];
              ok = std::fwrite(row.data(), 8, row.size(), f) == row.size();
            }
          }
        return ok;
      },
      error);
}

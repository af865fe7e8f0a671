//===- Calibration.h - Statistics of an instrumented model's run -*- C++ -*-===//
//
// What `moec calibrate` collects while instrumented code (ABI 0.5,
// moec_rt_observe_*) runs on calibration text, and the file it writes,
// calib.dat, which `moec --calibration` reads (compiler/compress/
// CalibrationFile.h is its reader). The layout (docs/compression.md):
//
//   8 bytes   "MOECCAL1"
//   u64       JSON size in bytes
//   JSON      {"format": "moec-calibration", "version": 1, "tokens": N,
//              "routing": {"tokens": N, "counts": [[...] per layer]},
//              "experts": [{"layer", "tokens", "weight_mass", "reap"}...],
//              "tensors": [{"name", "experts", "columns", "rows": [...],
//                           "offset"}...]}
//   padding   to a multiple of 8 bytes from the file's start
//   f32 data  per tensor at its offset (from the data's start): the mean
//             squared input of each column, expert-major ([experts][columns];
//             0 for an expert that saw no row)
//
// Per MoE layer and expert: tokens routed there, the sum of their router
// weights (mass), and the sum over them of router weight x the L2 norm of
// the expert's output (REAP's score, divided by tokens when used). All
// little-endian. Sums are kept in double and written as the ratios above.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_EXEC_CALIBRATION_H
#define MOEC_RUNTIME_EXEC_CALIBRATION_H

#include <climits>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace moec::exec {

class CalibrationRecorder {
public:
  CalibrationRecorder(uint32_t layers, uint32_t expertsPerLayer)
      : layers(layers), expertsPerLayer(expertsPerLayer),
        lastIds(layers), lastWeights(layers), tokens(layers),
        mass(layers), reap(layers) {
    for (uint32_t l = 0; l < layers; ++l) {
      tokens[l].assign(expertsPerLayer, 0);
      mass[l].assign(expertsPerLayer, 0.0);
      reap[l].assign(expertsPerLayer, 0.0);
    }
  }

  /// `rows` rows of `cols` floats, the input of weight `tensor` (a static
  /// string: its address identifies it). `expertOffsets` (experts + 1
  /// entries, validated by the caller) groups the rows by expert, or null.
  /// False with `error` when the shapes contradict earlier calls.
  bool observeInput(const char *tensor, const float *x, int64_t rows,
                    int64_t cols, const int32_t *expertOffsets,
                    std::string &error);
  /// A MoE layer's routing: top-k ids and weights per token (copied).
  void recordRouting(int32_t layer, const int32_t *ids, const float *weights,
                     int64_t tokens, int64_t k);
  /// The layer's expert outputs: pair p's row is out[inverse[p] * cols].
  /// False with `error` when it does not match the layer's routing.
  bool observeExperts(int32_t layer, int64_t tokens, int64_t k, int64_t cols,
                      const float *out, const int32_t *inverse,
                      int64_t outRows, std::string &error);
  /// Tokens evaluated (forward calls' tokens), for the header.
  void addTokens(int64_t n) { evaluated += uint64_t(n); }

  /// Writes calib.dat atomically. False with `error`.
  bool write(const std::string &path, std::string &error) const;

  /// A JSON object written into calib.dat as "source" (what was run: the
  /// text, window, windows), so that compression can run it again.
  void setSource(std::string json) { source = std::move(json); }

  /// GPTQ's Hessians: from now on, the inputs of the weights of layer
  /// `layer` ("blk.<layer>."; -1: weights outside the layers) also add up
  /// X^T X, per expert for routed experts. Weights that read one input
  /// (q, k, v; gate and up, by their GGUF names) share one.
  void collectHessians(int32_t layer) { hessianLayer = layer; }
  /// Writes the Hessians (layout in docs/compression.md, "MOECHES1": a JSON
  /// header as calib.dat's, then per tensor f64 [experts][cols][cols]).
  bool writeHessians(const std::string &path, std::string &error) const;

private:
  struct TensorStats {
    std::string name;
    uint32_t experts = 1;
    int64_t cols = 0;
    std::vector<double> sumSquares; // [experts][cols]
    std::vector<uint64_t> rows;     // [experts]
  };
  uint32_t layers, expertsPerLayer;
  uint64_t evaluated = 0;
  std::vector<TensorStats> tensors;
  std::unordered_map<const char *, size_t> index;
  std::vector<std::vector<int32_t>> lastIds;
  std::vector<std::vector<float>> lastWeights;
  std::vector<std::vector<uint64_t>> tokens;
  std::vector<std::vector<double>> mass, reap;
  std::string source;

  struct Hessian {
    uint32_t experts = 1;
    int64_t cols = 0;
    std::vector<double> sums; // [experts][cols][cols], upper triangle
    std::vector<uint64_t> rows;
  };
  int32_t hessianLayer = INT32_MIN;
  std::vector<Hessian> hessians;
  /// Tensor name -> its Hessian (shared between weights of one input).
  std::vector<std::pair<std::string, size_t>> hessianOf;
  std::unordered_map<const char *, size_t> hessianIndex;
  /// Input group (calibration.cpp's inputGroupOf) -> the weight that adds
  /// to its Hessian, and the Hessian.
  std::unordered_map<std::string, std::pair<const char *, size_t>>
      hessianGroups;
  void accumulateHessian(const char *tensor, const float *x, int64_t rows,
                         int64_t cols, const int32_t *expertOffsets,
                         uint32_t experts);
};

} // namespace moec::exec

#endif // MOEC_RUNTIME_EXEC_CALIBRATION_H

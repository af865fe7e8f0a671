//===- CalibrationFile.h - Reads calib.dat ----------------------*- C++ -*-===//
//
// The statistics `moec calibrate` collects (runtime/exec/Calibration.h has
// the layout): per projection and expert, the mean squared input of each
// column (llama.cpp's importance matrix); per MoE layer and expert, tokens
// routed, router-weight mass and REAP sums. Every size and offset is checked
// against the file and the model before use.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_COMPRESS_CALIBRATIONFILE_H
#define MOEC_COMPILER_COMPRESS_CALIBRATIONFILE_H

#include "llvm/ADT/StringMap.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace moec::compress {

class CalibrationFile {
public:
  static llvm::Expected<std::unique_ptr<CalibrationFile>>
  read(llvm::StringRef path);

  /// Whether `bytes` start like a calib.dat (for readers of either file).
  static bool hasMagic(llvm::StringRef bytes);
  /// The JSON header of a calib.dat in `bytes`, or an error.
  static llvm::Expected<llvm::StringRef> headerJson(llvm::StringRef bytes,
                                                    llvm::StringRef path);

  struct TensorStats {
    unsigned experts = 1;
    int64_t columns = 0;
    std::vector<uint64_t> rows; // per expert
    const float *meanSquares = nullptr; // [experts][columns]
  };
  /// The statistics of weight `name`, or null when calibration did not see
  /// it.
  const TensorStats *find(llvm::StringRef name) const;

  /// Per MoE layer: tokens routed to each expert, their router-weight mass
  /// and sum of router weight x expert output norm.
  struct LayerExperts {
    std::vector<uint64_t> tokens;
    std::vector<double> weightMass, reap;
  };
  const std::vector<LayerExperts> &getLayers() const { return layers; }

  /// The statistics of the model pruned to `kept` experts per layer (the
  /// original ids, ascending): the routed experts' tensors and per-layer
  /// figures renumbered to the survivors.
  std::unique_ptr<CalibrationFile>
  withExperts(const std::vector<std::vector<uint32_t>> &kept) const;
  uint64_t getTokens() const { return tokens; }
  llvm::StringRef getPath() const { return path; }

  /// What was run to collect the statistics (calib.dat's "source"): the
  /// text, window and windows; empty text when the file does not say.
  struct Source {
    std::string text;
    int64_t context = 0, chunks = 0;
  };
  const Source &getSource() const { return source; }

private:
  std::string path;
  Source source;
  std::unique_ptr<llvm::MemoryBuffer> buffer;
  /// withExperts' copies of the statistics.
  std::vector<std::unique_ptr<float[]>> owned;
  llvm::StringMap<TensorStats> tensors;
  std::vector<LayerExperts> layers;
  uint64_t tokens = 0;
};

/// The Hessians X^T X of one layer's weight inputs (model-run
/// --hessian-out, runtime/exec/Calibration.h): per weight and expert a
/// [columns x columns] f64 matrix, weights that read one input sharing it.
class HessianFile {
public:
  static llvm::Expected<std::unique_ptr<HessianFile>> read(llvm::StringRef path);
  struct Entry {
    unsigned experts = 1;
    int64_t columns = 0;
    std::vector<uint64_t> rows; // per expert
    const double *data = nullptr; // [experts][columns][columns]
  };
  const Entry *find(llvm::StringRef name) const;

private:
  std::unique_ptr<llvm::MemoryBuffer> buffer;
  llvm::StringMap<Entry> entries;
};

} // namespace moec::compress

#endif // MOEC_COMPILER_COMPRESS_CALIBRATIONFILE_H

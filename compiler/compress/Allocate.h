//===- Allocate.h - Formats under a size budget -----------------*- C++ -*-===//
//
// Chooses a format for every quantized tensor from a menu so as to minimise
// the predicted output error subject to a size budget: a multiple-choice
// knapsack.
//
// The predicted error of a tensor in a format is the importance-weighted
// squared error of its quantized weights, sum_i imp_i (w_i - q_i)^2 with
// imp the calibration's mean squared input of column i (uniform without a
// calib.dat): the expected squared error of the projection's output per
// token that passes through it. An expert is passed through by the tokens
// routed to it, so its error is weighted by its routing mass (router weight
// summed over the calibration's tokens, divided by their count); dense
// tensors weigh 1. Gate and up of a layer share a format (the CPU backend
// fuses them into one kernel): they are one choice, their errors and bytes
// summed. With `perExpert`, every expert of a bank is a choice of its own
// (gate and up of one expert together). Errors are measured by quantizing
// a sample of rows
// (evenly spaced, at most `sampleRows` per matrix) with the rounding the
// compression will use, scaled to all rows.
//
// The knapsack is solved by the greedy on each tensor's lower convex hull
// of (bytes, error) points: upgrades in order of error removed per byte
// until the next does not fit. That is the optimum of the LP relaxation
// except for the one upgrade cut off, so the chosen error exceeds the
// optimum of the integer problem by at most that upgrade's error drop (the
// reported gap bound).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_COMPRESS_ALLOCATE_H
#define MOEC_COMPILER_COMPRESS_ALLOCATE_H

#include "compiler/compress/Compress.h"

#include <string>
#include <vector>

namespace moec::compress {

struct AllocationOptions {
  /// Formats to choose from (every one must have a quantizer).
  std::vector<gguf::GgmlType> menu;
  /// Bytes all weight tensors may take (0: not set).
  uint64_t sizeBudget = 0;
  /// Bits per routed-expert weight (0: not set); then only the experts'
  /// tensors are allocated.
  double bitsPerWeight = 0;
  /// Rows measured per matrix (per expert of a bank).
  int64_t sampleRows = 64;
  /// Choose a format per expert of each routed-expert bank (gate and up of
  /// an expert together, its down apart) rather than per tensor; a bank
  /// whose experts then differ is stored one tensor per expert (moec's own
  /// GGUF, not llama.cpp's).
  bool perExpert = false;
};

struct Allocation {
  /// The chosen format of every allocated tensor whose experts (if any)
  /// share one.
  llvm::StringMap<gguf::GgmlType> types;
  /// Banks whose experts got different formats: each expert's.
  llvm::StringMap<std::vector<gguf::GgmlType>> expertTypes;
  uint64_t budgetBytes = 0;
  /// Bytes of all tensors (allocated ones in their formats, the others as
  /// the compression's class flags or the source leave them).
  uint64_t totalBytes = 0;
  /// Bytes and elements of the allocated tensors.
  uint64_t allocatedBytes = 0;
  int64_t allocatedElements = 0;
  double predictedError = 0;
  /// The chosen error is at most this much above the best possible.
  double gapBound = 0;
  /// One line per decision worth printing.
  std::vector<std::string> log;
};

/// Allocates formats to the tensors that `options` (the compression) would
/// quantize and whose class it leaves open: with bitsPerWeight, the routed
/// experts; with sizeBudget, every quantizable tensor whose class has no
/// format flag. Errors: a budget below the smallest menu choice, a menu
/// format that does not fit a tensor's rows.
llvm::Expected<Allocation> allocateFormats(const model::WeightStore &store,
                                           const CompressOptions &options,
                                           const AllocationOptions &allocation);

} // namespace moec::compress

#endif // MOEC_COMPILER_COMPRESS_ALLOCATE_H

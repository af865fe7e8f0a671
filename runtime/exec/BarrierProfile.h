//===- BarrierProfile.h - Where a decode step's threads wait ----*- C++ -*-===//
//
// Per barrier of the compiled schedule (its call site) and per thread: how
// long the thread worked since its previous barrier and how long it waited
// at this one, over the decode steps (one-token forward calls) of a run.
// The schedule's barriers separate its kernels, so the sites say which
// kernel's threads finished unevenly and which single-thread sections leave
// the others waiting. Turned on by MOEC_BARRIER_PROFILE=FILE at model open;
// scripts/barrier_profile.py names the kernels between the sites.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_EXEC_BARRIERPROFILE_H
#define MOEC_RUNTIME_EXEC_BARRIERPROFILE_H

#include <cstdint>
#include <string>
#include <vector>

namespace moec::exec {

/// A cheap monotonic tick: the TSC on x86-64, the virtual counter on
/// AArch64, nanoseconds elsewhere.
uint64_t readTicks();

class BarrierProfile {
public:
  explicit BarrierProfile(unsigned threads);

  /// Starts a profiled call: each thread's first barrier has no work
  /// before it that belongs to a site.
  void beginCall();
  /// Thread `thread` reached the barrier at `site` at tick `arrived` and
  /// left it at `left`.
  void record(unsigned thread, uintptr_t site, uint64_t arrived,
              uint64_t left);
  void endCall() { ++calls; }

  /// Writes the profile; `forward` is the address of the code's forward
  /// entry, so that sites can be found in the binary whatever its load
  /// address.
  bool write(const std::string &path, uintptr_t forward,
             std::string &error) const;

private:
  struct Site {
    uintptr_t site = 0;
    uint64_t calls = 0, waitTicks = 0, workTicks = 0;
    /// The largest single wait and work: a step the machine stalled (a
    /// vCPU taken away for milliseconds) shows in one site's mean as a
    /// cost of every step; its largest step tells the two apart.
    uint64_t maxWaitTicks = 0, maxWorkTicks = 0;
  };
  /// Per thread, open addressing on the site (a schedule has hundreds).
  struct Table {
    std::vector<Site> slots;
    uint64_t lastLeft = 0;
  };
  std::vector<Table> tables;
  uint64_t calls = 0;
  uint64_t startTicks;
  double startSeconds;
};

} // namespace moec::exec

#endif // MOEC_RUNTIME_EXEC_BARRIERPROFILE_H

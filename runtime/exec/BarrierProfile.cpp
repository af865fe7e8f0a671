//===- BarrierProfile.cpp - Where a decode step's threads wait ------------===//

#include "runtime/exec/BarrierProfile.h"

#include "runtime/exec/AtomicFile.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace moec::exec {

namespace {
constexpr size_t kSlots = 4096; // a power of two, above any schedule's sites

double nowSeconds() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
} // namespace

uint64_t readTicks() {
#if defined(__x86_64__)
  return __rdtsc();
#elif defined(__aarch64__)
  uint64_t v;
  asm volatile("mrs %0, cntvct_el0" : "=r"(v));
  return v;
#else
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
#endif
}

BarrierProfile::BarrierProfile(unsigned threads)
    : tables(threads), startTicks(readTicks()), startSeconds(nowSeconds()) {
  for (Table &t : tables)
    t.slots.resize(kSlots);
}

void BarrierProfile::beginCall() {
  for (Table &t : tables)
    t.lastLeft = 0;
}

void BarrierProfile::record(unsigned thread, uintptr_t site, uint64_t arrived,
                            uint64_t left) {
  if (thread >= tables.size())
    return;
  Table &t = tables[thread];
  size_t h = (site >> 2) & (kSlots - 1);
  while (t.slots[h].site && t.slots[h].site != site)
    h = (h + 1) & (kSlots - 1);
  Site &s = t.slots[h];
  s.site = site;
  ++s.calls;
  s.waitTicks += left - arrived;
  s.maxWaitTicks = std::max(s.maxWaitTicks, left - arrived);
  if (t.lastLeft) {
    s.workTicks += arrived - t.lastLeft;
    s.maxWorkTicks = std::max(s.maxWorkTicks, arrived - t.lastLeft);
  }
  t.lastLeft = left;
}

bool BarrierProfile::write(const std::string &path, uintptr_t forward,
                           std::string &error) const {
  // Ticks per second over the model's life (the TSC's rate is not the
  // core's clock; only the ratio to wall time is needed).
  double seconds = nowSeconds() - startSeconds;
  double ticksPerSecond =
      seconds > 0 ? double(readTicks() - startTicks) / seconds : 0;
  return writeFileAtomically(
      path,
      [&](std::FILE *f) {
        bool ok = std::fprintf(f, "# moec barrier profile: per barrier site "
                                  "and thread, the ticks worked before it "
                                  "and waited at it, over decode steps, and "
                                  "the largest of one step\n") > 0;
        ok = ok && std::fprintf(f,
                                "calls %llu\nthreads %zu\n"
                                "ticks_per_second %.0f\nforward %llx\n",
                                (unsigned long long)calls, tables.size(),
                                ticksPerSecond,
                                (unsigned long long)forward) > 0;
        for (size_t thread = 0; thread < tables.size(); ++thread)
          for (const Site &s : tables[thread].slots)
            if (s.calls)
              ok = ok && std::fprintf(f,
                                      "site %llx thread %zu calls %llu wait "
                                      "%llu work %llu maxwait %llu maxwork "
                                      "%llu\n",
                                      (unsigned long long)s.site, thread,
                                      (unsigned long long)s.calls,
                                      (unsigned long long)s.waitTicks,
                                      (unsigned long long)s.workTicks,
                                      (unsigned long long)s.maxWaitTicks,
                                      (unsigned long long)s.maxWorkTicks) > 0;
        return ok;
      },
      error);
}

} // namespace moec::exec

//===- ThreadPool.cpp - SPMD jobs on a fixed set of threads ---------------===//

#include "runtime/exec/ThreadPool.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <climits>
#include <cstdio>
#include <sched.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace moec::exec {

namespace {

// The futex operates on the word itself.
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
                  std::atomic<uint32_t>::is_always_lock_free,
              "a futex needs a plain 32-bit atomic word");

/// The budget a pool that fits its CPUs spins for. Long enough to cover the
/// imbalance between threads at a barrier and the gap between two forward
/// calls of a decode loop (argmax, bookkeeping), short enough that idle
/// threads go to sleep within a fraction of a millisecond.
constexpr uint32_t kDefaultSpinNanos = 100'000;
/// The least a pool that spins at all spins for: short enough to cost
/// nothing on a loaded machine, long enough to notice when spinning pays
/// off again (and let the budget grow back).
constexpr uint32_t kMinSpinNanos = 1'000;
/// Yields before sleeping: cheap, and they let a thread that shares our
/// core (oversubscription) run the work we are waiting for.
constexpr uint32_t kYields = 8;

thread_local int tlsThreadIndex = -1;
// Per thread and kind of wait: at barriers (and for a job's end), where the
// others are close behind, and for the next job, which may be far off.
thread_local SpinBudget tlsBarrierSpin, tlsJobSpin;

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield");
#endif
}

void futexWait(std::atomic<uint32_t> &word, uint32_t old) {
#if defined(__linux__)
  // Returns at once (EAGAIN) when the word no longer holds `old`; spurious
  // wake-ups and EINTR are handled by the caller's loop.
  syscall(SYS_futex, reinterpret_cast<uint32_t *>(&word), FUTEX_WAIT_PRIVATE,
          old, nullptr, nullptr, 0);
#else
  (void)word;
  (void)old;
  sched_yield();
#endif
}

void futexWakeAll(std::atomic<uint32_t> &word) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t *>(&word), FUTEX_WAKE_PRIVATE,
          INT_MAX, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}

} // namespace

//===----------------------------------------------------------------------===//
// WaitWord and Barrier
//===----------------------------------------------------------------------===//

void SpinBudget::learn(uint32_t spun, uint64_t waitedNanos,
                       const SpinPolicy &policy) {
  if (waitedNanos <= policy.spinNanos)
    // Twice what it took, so that a wait a little longer next time still
    // ends in the spin.
    nanos = static_cast<uint32_t>(std::min<uint64_t>(
        std::max<uint64_t>(uint64_t(spun) * 2, waitedNanos * 2),
        policy.spinNanos));
  else
    nanos = std::max(spun / 2, std::min(kMinSpinNanos, policy.spinNanos));
}

void WaitWord::waitWhileEqual(uint32_t old, const SpinPolicy &policy,
                              SpinBudget &budget) {
  if (value.load(std::memory_order_acquire) != old)
    return;
  uint32_t spin = std::min(budget.nanos, policy.spinNanos);
  if (spin == 0) {
    sleepUntilChanged(old, policy);
    return;
  }
  // The clock is read every 64 pauses only: a pause costs from a few to
  // ~150 cycles depending on the core, so a count alone says little.
  auto start = std::chrono::steady_clock::now();
  auto limit = std::chrono::nanoseconds(spin);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      cpuRelax();
      if (value.load(std::memory_order_acquire) != old) {
        budget.learn(spin, 0, policy); // ended within the spin
        return;
      }
    }
    if (std::chrono::steady_clock::now() - start > limit)
      break;
  }
  sleepUntilChanged(old, policy);
  auto waited = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::steady_clock::now() - start);
  budget.learn(spin, static_cast<uint64_t>(waited.count()), policy);
}

void WaitWord::sleepUntilChanged(uint32_t old, const SpinPolicy &policy) {
  for (uint32_t i = 0; i < policy.yields; ++i) {
    sched_yield();
    if (value.load(std::memory_order_acquire) != old)
      return;
  }
  // Announce the sleep before checking the word one last time; the waker
  // changes the word before reading `sleepers`. Both sides seq_cst: one of
  // them sees the other, so a wake-up is never lost.
  sleepers.fetch_add(1, std::memory_order_seq_cst);
  while (value.load(std::memory_order_seq_cst) == old)
    futexWait(value, old);
  sleepers.fetch_sub(1, std::memory_order_release);
}

void WaitWord::wake() {
  if (sleepers.load(std::memory_order_seq_cst) != 0)
    futexWakeAll(value);
}

void Barrier::wait() {
  if (count <= 1)
    return;
  // Read the generation before arriving: once the last thread arrives it
  // moves on, and we must wait for exactly that move.
  uint32_t gen = generation.value.load(std::memory_order_acquire);
  if (arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == count) {
    // Last to arrive: the acq_rel RMW chain has made every other thread's
    // writes before its arrival visible here; the seq_cst increment
    // publishes them to the waiters.
    arrived.store(0, std::memory_order_relaxed);
    generation.value.fetch_add(1, std::memory_order_seq_cst);
    generation.wake();
    return;
  }
  generation.waitWhileEqual(gen, policy, tlsBarrierSpin);
}

//===----------------------------------------------------------------------===//
// ThreadPool
//===----------------------------------------------------------------------===//

unsigned ThreadPool::availableCpus() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0)
      return static_cast<unsigned>(n);
  }
#endif
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

unsigned ThreadPool::defaultThreadCount() {
  // Past a few dozen threads, a decode step of the models this runs is
  // bound by memory bandwidth and the barriers cost more than they split.
  return std::min(availableCpus(), 64u);
}

int ThreadPool::currentThreadIndex() { return tlsThreadIndex; }

namespace {
SpinPolicy choosePolicy(unsigned threads, int64_t spinNanos) {
  uint32_t spin = 0;
  if (spinNanos >= 0)
    spin = static_cast<uint32_t>(std::min<int64_t>(spinNanos, UINT32_MAX));
  else if (threads <= ThreadPool::availableCpus())
    spin = kDefaultSpinNanos;
  return SpinPolicy{spin, kYields};
}
} // namespace

ThreadPool::ThreadPool(unsigned threads, int64_t spinNanos)
    : threadCount(std::clamp(threads, 1u, kMaxThreads)),
      policy(choosePolicy(threadCount, spinNanos)),
      jobBarrier(threadCount, policy) {
  workers.reserve(threadCount - 1);
  for (unsigned i = 1; i < threadCount; ++i)
    workers.emplace_back([this, i] { work(i); });
}

ThreadPool::~ThreadPool() {
  if (workers.empty())
    return;
  stopping = true;
  jobGeneration.value.fetch_add(1, std::memory_order_seq_cst);
  jobGeneration.wake();
  for (std::thread &t : workers)
    t.join();
}

void ThreadPool::work(unsigned index) {
  tlsThreadIndex = static_cast<int>(index);
#if defined(__linux__)
  char name[16];
  std::snprintf(name, sizeof(name), "moec-worker-%u", index);
  pthread_setname_np(pthread_self(), name);
#endif
  uint32_t seen = 0;
  for (;;) {
    jobGeneration.waitWhileEqual(seen, policy, tlsJobSpin);
    seen = jobGeneration.value.load(std::memory_order_acquire);
    if (stopping)
      return;
    jobFn(jobArg, index, threadCount);
    // The last worker to finish wakes the launching thread.
    if (pending.value.fetch_sub(1, std::memory_order_seq_cst) == 1)
      pending.wake();
  }
}

void ThreadPool::run(JobFn fn, void *arg) {
  assert(tlsThreadIndex == -1 && "ThreadPool::run is not reentrant");
  tlsThreadIndex = 0;
  if (threadCount == 1) {
    fn(arg, 0, 1);
    tlsThreadIndex = -1;
    return;
  }
  jobFn = fn;
  jobArg = arg;
  pending.value.store(threadCount - 1, std::memory_order_relaxed);
  // Publishes the job (and `pending`) to the workers.
  jobGeneration.value.fetch_add(1, std::memory_order_seq_cst);
  jobGeneration.wake();
  fn(arg, 0, threadCount);
  for (uint32_t left; (left = pending.value.load(std::memory_order_acquire));)
    pending.waitWhileEqual(left, policy, tlsBarrierSpin);
  tlsThreadIndex = -1;
}

} // namespace moec::exec

//===- ThreadPool.h - SPMD jobs on a fixed set of threads -------*- C++ -*-===//
//
// The CPU adapter's threads. Compiled model code is SPMD: every thread runs
// the same forward function with its own index and splits each kernel's
// work by it, meeting the others at barriers between kernels. So the pool
// runs one job on all of its threads at once (the calling thread is thread
// 0) rather than queueing tasks, and its barrier is on the hot path: a
// forward call of a small model crosses dozens of them per token.
//
// Waiting (for a job, at a barrier, for a job to finish) spins briefly,
// then yields, then sleeps in the kernel (a futex on Linux): spinning alone
// makes an oversubscribed machine crawl (a spinning thread takes the core
// that the thread it waits for needs), sleeping alone adds a wake-up to
// every barrier. When the pool has more threads than the process may run
// on, it skips the spin.
//
// Plain C++, no LLVM. One job at a time, launched by the thread that
// created the pool.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_EXEC_THREADPOOL_H
#define MOEC_RUNTIME_EXEC_THREADPOOL_H

#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace moec::exec {

/// How long a waiting thread spins before it yields and then sleeps.
struct SpinPolicy {
  /// The most a wait busy-waits, in nanoseconds; 0 goes straight to
  /// yielding.
  uint32_t spinNanos = 0;
  /// sched_yield calls before sleeping in the kernel.
  uint32_t yields = 0;
};

/// What a thread has learnt about spinning for one kind of wait: its spin
/// budget grows (up to the policy's) after a wait that spinning within the
/// policy would have ended, and halves (down to a microsecond) after one
/// longer than that. On an idle machine the threads a wait is for are
/// running, spins pay off and barriers cost tens of nanoseconds; on a
/// loaded one they are often descheduled, and spinning only takes the core
/// they need -- the budget then falls within a few waits, and waits cost a
/// futex wake-up instead of a time slice.
struct SpinBudget {
  uint32_t nanos = UINT32_MAX; // UINT32_MAX: start at the policy's

  /// Learns from a wait that was allowed to spin for `spun` nanoseconds
  /// (> 0) and ended after `waitedNanos` in all. A short wait grows the
  /// budget even when it outlasted the spin and ended in a sleep: a budget
  /// that only grew when a spin succeeded stayed at its floor once it got
  /// there (a decode loop's workers, waiting ~15 us between forward calls,
  /// spun 1 us and then took a ~15-30 us futex wake-up every token).
  void learn(uint32_t spun, uint64_t waitedNanos, const SpinPolicy &policy);
};

/// A 32-bit word that threads wait on to change: spin, yield, then sleep
/// in the kernel. Writers change `value` (with seq_cst operations) and then
/// call wake(), which enters the kernel only when someone sleeps.
class WaitWord {
public:
  std::atomic<uint32_t> value{0};

  /// Returns once `value` differs from `old`, spinning for at most
  /// `budget` (which it adapts) and `policy` allow.
  void waitWhileEqual(uint32_t old, const SpinPolicy &policy,
                      SpinBudget &budget);
  /// Wakes every sleeper; call after changing `value`.
  void wake();

private:
  /// Yields, then sleeps in the kernel until `value` differs from `old`.
  void sleepUntilChanged(uint32_t old, const SpinPolicy &policy);

  std::atomic<uint32_t> sleepers{0};
};

/// A reusable barrier for a fixed number of threads (generation counting:
/// the last arrival starts the next generation, so that threads leaving one
/// barrier may enter the next before the slow ones have noticed).
class Barrier {
public:
  Barrier(unsigned count, SpinPolicy policy) : count(count), policy(policy) {}
  void wait();
  unsigned getCount() const { return count; }

private:
  // Apart, so that arrivals do not invalidate the line the waiters poll.
  alignas(64) std::atomic<uint32_t> arrived{0};
  alignas(64) WaitWord generation;
  alignas(64) unsigned count;
  SpinPolicy policy;
};

class ThreadPool {
public:
  /// The most threads a pool takes.
  static constexpr unsigned kMaxThreads = 512;
  /// The default: the CPUs this process may run on (its affinity mask, which
  /// taskset and container limits set), at most 64.
  static unsigned defaultThreadCount();
  /// The CPUs this process may run on.
  static unsigned availableCpus();

  /// A pool of `threads` (1..kMaxThreads; the caller counts as one, so
  /// threads - 1 are started). `spinNanos` < 0 chooses: a short spin when
  /// the pool fits the available CPUs, none when it oversubscribes them.
  explicit ThreadPool(unsigned threads, int64_t spinNanos = -1);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  unsigned size() const { return threadCount; }

  using JobFn = void (*)(void *arg, unsigned threadIndex, unsigned threadCount);
  /// Runs fn(arg, i, size()) on every thread i at once (i = 0 on the calling
  /// thread) and returns when all have returned. Not reentrant.
  void run(JobFn fn, void *arg);
  /// Runs f(threadIndex, threadCount) on every thread at once.
  template <typename F> void run(F &&f) {
    using Fn = std::remove_reference_t<F>;
    run([](void *arg, unsigned i,
           unsigned n) { (*static_cast<Fn *>(arg))(i, n); },
        const_cast<void *>(static_cast<const void *>(&f)));
  }

  /// Waits until every thread of the running job has arrived; call from
  /// within a job, on every thread, the same number of times.
  void barrier() { jobBarrier.wait(); }

  /// The index of the calling thread in the job it runs, or -1 outside one.
  static int currentThreadIndex();

private:
  void work(unsigned index);

  unsigned threadCount;
  SpinPolicy policy;
  Barrier jobBarrier;
  // The job: written by the launching thread before `jobGeneration` moves,
  // read by the workers after they see it move.
  JobFn jobFn = nullptr;
  void *jobArg = nullptr;
  bool stopping = false;
  alignas(64) WaitWord jobGeneration;
  // Workers still running the current job; the last one wakes the caller.
  alignas(64) WaitWord pending;
  std::vector<std::thread> workers;
};

} // namespace moec::exec

#endif // MOEC_RUNTIME_EXEC_THREADPOOL_H

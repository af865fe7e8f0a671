/* bench/pass_clock.h - how the bound programs time a pass of their threads.
 *
 * A pass runs on worker threads that the main thread releases through a
 * barrier. The main thread's clock is not the pass's: when the workers fill
 * every CPU (2 workers on a 2-vCPU guest), a woken worker often preempts
 * the main thread right after the barrier, and its "start" reading comes
 * up to ~5 ms late (seen in 17 of 30 passes of 1 GiB at 22-26 GB/s on the
 * Emerald Rapids guest, 2026-11-28). The pass then looks shorter than it
 * was, by up to 12%, and a best-of-N picks exactly those passes. So each
 * worker reads the clock itself, just before and just after its work, and
 * a pass lasts from the first worker's start to the last worker's end. */
#ifndef MOEC_BENCH_PASS_CLOCK_H
#define MOEC_BENCH_PASS_CLOCK_H

#include <time.h>

/* CLOCK_MONOTONIC in seconds (the vDSO: no system call). */
static inline double pass_clock_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One worker's part of a pass, as its own clock saw it. */
typedef struct {
  double began, ended;
} PassSpan;

/* Seconds from the first worker's start to the last worker's end. */
static inline double pass_clock_window(const PassSpan *spans, int workers) {
  double began = spans[0].began, ended = spans[0].ended;
  for (int i = 1; i < workers; ++i) {
    if (spans[i].began < began)
      began = spans[i].began;
    if (spans[i].ended > ended)
      ended = spans[i].ended;
  }
  return ended - began;
}

#endif /* MOEC_BENCH_PASS_CLOCK_H */

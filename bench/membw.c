/* bench/membw.c - memory read bandwidth: the bound for decode from memory.
 *
 *   membw [-t THREADS] [-s MIB] [-r REPEATS] [-p STREAMS]
 *                                      (defaults: 2, 1024, 5, 1)
 *
 * Reads a buffer of at least 1 GiB with 256-bit vector loads on THREADS
 * threads (each a contiguous slice), REPEATS times, and prints the best
 * pass as "membw: X GB/s (...)" on stdout (GB = 1e9 bytes). With STREAMS
 * > 1 each thread cuts its slice into that many parts and reads them side
 * by side, 256 bytes of each in turn: a core's prefetchers follow several
 * streams at once, and on some machines (a Sapphire Rapids guest) 4 streams
 * per thread read about a fifth faster than one. Built by
 * bench/decode_prefill.py with clang -O2 and explicit -m flags (never
 * -march=native). The reading itself is bench/read_pass.h's; a pass lasts
 * from the first reader's start to the last reader's end, by their own
 * clocks (bench/pass_clock.h says why).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "read_pass.h"

int main(int argc, char **argv) {
  int threads = 2, repeats = 5, streams_per_thread = 1;
  long long mib = 1024;
  int opt;
  while ((opt = getopt(argc, argv, "t:s:r:p:h")) != -1) {
    switch (opt) {
    case 't': threads = atoi(optarg); break;
    case 's': mib = atoll(optarg); break;
    case 'r': repeats = atoi(optarg); break;
    case 'p': streams_per_thread = atoi(optarg); break;
    default:
      fprintf(stderr, "usage: membw [-t THREADS] [-s MIB >= 1024] [-r REPEATS] "
                      "[-p STREAMS]\n");
      return 2;
    }
  }
  if (threads < 1 || threads > 1024 || repeats < 1 || mib < 1 ||
      streams_per_thread < 1 || streams_per_thread > 64) {
    fprintf(stderr, "membw: bad arguments (threads %d, MiB %lld, repeats %d, "
                    "streams %d)\n", threads, mib, repeats, streams_per_thread);
    return 2;
  }
  if (mib < 1024)
    fprintf(stderr, "membw: warning: a %lld MiB buffer is below the 1 GiB the "
                    "benchmark specifies\n", mib);
  size_t bytes = (size_t)mib << 20;
  ReadPool pool;
  if (read_pool_start(&pool, bytes, threads, streams_per_thread, "membw") != 0)
    return 1;
  double best = 1e30, sum = 0;
  for (int r = 0; r < repeats; ++r) {
    double dt = read_pool_pass(&pool);
    if (dt < best)
      best = dt;
    sum += dt;
    fprintf(stderr,
            "membw: pass %d: %.2f GB/s (by this thread's clock around the "
            "barriers, which can start late: %.2f)\n",
            r + 1, (double)bytes / dt / 1e9,
            (double)bytes / pool.caller_seconds / 1e9);
  }
  long long sink = read_pool_stop(&pool);
  printf("membw: %.2f GB/s (best of %d; mean %.2f GB/s; %lld MiB; %d threads; "
         "%d stream%s per thread; 256-bit loads; checksum %lld)\n",
         (double)bytes / best / 1e9, repeats,
         (double)bytes * repeats / sum / 1e9, mib, threads, streams_per_thread,
         streams_per_thread == 1 ? "" : "s", sink & 0xff);
  return 0;
}

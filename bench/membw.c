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
 * -march=native). The buffer is written first so that every page is real
 * memory (an untouched page would read the shared zero page), with
 * transparent huge pages requested where the kernel offers them.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef __AVX2__
#error "membw.c needs AVX2 (-mavx2)"
#endif

typedef struct {
  const __m256i *begin;
  size_t count; /* 32-byte vectors */
  int index;
  long long sink;
} Slice;

static pthread_barrier_t start_barrier, end_barrier;
static int repeats = 5;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 8 loads (256 bytes) from q into 4 independent accumulators, so that
 * loads, not the adds, set the pace. */
static inline void add8(const __m256i *q, __m256i acc[4]) {
  acc[0] = _mm256_add_epi64(acc[0], _mm256_load_si256(q + 0));
  acc[1] = _mm256_add_epi64(acc[1], _mm256_load_si256(q + 1));
  acc[2] = _mm256_add_epi64(acc[2], _mm256_load_si256(q + 2));
  acc[3] = _mm256_add_epi64(acc[3], _mm256_load_si256(q + 3));
  acc[0] = _mm256_add_epi64(acc[0], _mm256_load_si256(q + 4));
  acc[1] = _mm256_add_epi64(acc[1], _mm256_load_si256(q + 5));
  acc[2] = _mm256_add_epi64(acc[2], _mm256_load_si256(q + 6));
  acc[3] = _mm256_add_epi64(acc[3], _mm256_load_si256(q + 7));
}

static long long sum_of(__m256i acc[4]) {
  __m256i s = _mm256_add_epi64(_mm256_add_epi64(acc[0], acc[1]),
                               _mm256_add_epi64(acc[2], acc[3]));
  long long out[4];
  _mm256_storeu_si256((__m256i *)out, s);
  return out[0] + out[1] + out[2] + out[3];
}

/* One pass over a slice as `streams` parts read side by side, 256 bytes
 * (8 vectors) of each in turn (one part: a plain sequential read); what
 * the parts leave over, read after. */
static long long read_slice_streams(const __m256i *p, size_t count,
                                    int streams) {
  size_t part = count / (size_t)streams / 8 * 8;
  __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(),
                    _mm256_setzero_si256(), _mm256_setzero_si256()};
  for (size_t i = 0; i < part; i += 8)
    for (int k = 0; k < streams; ++k)
      add8(p + (size_t)k * part + i, acc);
  for (size_t i = part * (size_t)streams; i < count; ++i)
    acc[0] = _mm256_add_epi64(acc[0], _mm256_load_si256(p + i));
  return sum_of(acc);
}

static int streams_per_thread = 1;

static void *worker(void *arg) {
  Slice *s = (Slice *)arg;
  /* First touch by the thread that reads the slice. */
  memset((void *)s->begin, 0x5a + s->index, s->count * sizeof(__m256i));
  for (int r = 0; r < repeats; ++r) {
    pthread_barrier_wait(&start_barrier);
    s->sink += read_slice_streams(s->begin, s->count, streams_per_thread);
    pthread_barrier_wait(&end_barrier);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int threads = 2;
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
  const size_t huge = (size_t)2 << 20;
  void *buffer = NULL;
  if (posix_memalign(&buffer, huge, bytes) != 0) {
    fprintf(stderr, "membw: cannot allocate %lld MiB\n", mib);
    return 1;
  }
#ifdef MADV_HUGEPAGE
  madvise(buffer, bytes, MADV_HUGEPAGE); /* advice only: fine if refused */
#endif
  size_t vectors = bytes / sizeof(__m256i);
  size_t per = vectors / (size_t)threads;

  Slice *slices = calloc((size_t)threads, sizeof(Slice));
  pthread_t *ids = calloc((size_t)threads, sizeof(pthread_t));
  if (!slices || !ids)
    return 1;
  pthread_barrier_init(&start_barrier, NULL, (unsigned)threads + 1);
  pthread_barrier_init(&end_barrier, NULL, (unsigned)threads + 1);
  for (int t = 0; t < threads; ++t) {
    slices[t].begin = (const __m256i *)buffer + per * (size_t)t;
    slices[t].count = t + 1 == threads ? vectors - per * (size_t)t : per;
    slices[t].index = t;
    if (pthread_create(&ids[t], NULL, worker, &slices[t]) != 0) {
      fprintf(stderr, "membw: cannot start thread %d\n", t);
      return 1;
    }
  }
  double best = 1e30, sum = 0;
  for (int r = 0; r < repeats; ++r) {
    pthread_barrier_wait(&start_barrier);
    double t0 = now_seconds();
    pthread_barrier_wait(&end_barrier);
    double dt = now_seconds() - t0;
    if (dt < best)
      best = dt;
    sum += dt;
    fprintf(stderr, "membw: pass %d: %.2f GB/s\n", r + 1, (double)bytes / dt / 1e9);
  }
  long long sink = 0;
  for (int t = 0; t < threads; ++t) {
    pthread_join(ids[t], NULL);
    sink += slices[t].sink;
  }
  printf("membw: %.2f GB/s (best of %d; mean %.2f GB/s; %lld MiB; %d threads; "
         "%d stream%s per thread; 256-bit loads; checksum %lld)\n",
         (double)bytes / best / 1e9, repeats, (double)bytes * repeats / sum / 1e9,
         mib, threads, streams_per_thread, streams_per_thread == 1 ? "" : "s",
         sink & 0xff);
  free(buffer);
  return 0;
}

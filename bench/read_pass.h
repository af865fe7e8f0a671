/* bench/read_pass.h - the memory read passes of bench/membw.c, shared with
 * bench/decode_beside.c so that both measure the same bound.
 *
 * A pool of threads reads a buffer, each its contiguous slice, with 256-bit
 * loads into 4 independent accumulators (loads, not adds, set the pace), as
 * `streams` parts read side by side, 256 bytes of each in turn (one part:
 * a plain sequential read); what the parts leave over is read after. The
 * buffer is written first, each slice by its reader, so that every page is
 * real memory (an untouched page would read the shared zero page), with
 * transparent huge pages requested where the kernel offers them. */
#ifndef MOEC_BENCH_READ_PASS_H
#define MOEC_BENCH_READ_PASS_H

#include <immintrin.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "pass_clock.h"

#ifndef __AVX2__
#error "read_pass.h needs AVX2 (-mavx2)"
#endif

/* 8 loads (256 bytes) from q into the 4 accumulators. */
static inline void read_pass_add8(const __m256i *q, __m256i acc[4]) {
  acc[0] = _mm256_add_epi64(acc[0], _mm256_load_si256(q + 0));
  acc[1] = _mm256_add_epi64(acc[1], _mm256_load_si256(q + 1));
  acc[2] = _mm256_add_epi64(acc[2], _mm256_load_si256(q + 2));
  acc[3] = _mm256_add_epi64(acc[3], _mm256_load_si256(q + 3));
  acc[0] = _mm256_add_epi64(acc[0], _mm256_load_si256(q + 4));
  acc[1] = _mm256_add_epi64(acc[1], _mm256_load_si256(q + 5));
  acc[2] = _mm256_add_epi64(acc[2], _mm256_load_si256(q + 6));
  acc[3] = _mm256_add_epi64(acc[3], _mm256_load_si256(q + 7));
}

/* One pass over `count` 32-byte vectors from p; returns their sum, which
 * the caller keeps so that the loads are not optimised away. */
static inline long long read_pass(const __m256i *p, size_t count, int streams) {
  size_t part = count / (size_t)streams / 8 * 8;
  __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(),
                    _mm256_setzero_si256(), _mm256_setzero_si256()};
  for (size_t i = 0; i < part; i += 8)
    for (int k = 0; k < streams; ++k)
      read_pass_add8(p + (size_t)k * part + i, acc);
  for (size_t i = part * (size_t)streams; i < count; ++i)
    acc[0] = _mm256_add_epi64(acc[0], _mm256_load_si256(p + i));
  __m256i s = _mm256_add_epi64(_mm256_add_epi64(acc[0], acc[1]),
                               _mm256_add_epi64(acc[2], acc[3]));
  long long out[4];
  _mm256_storeu_si256((__m256i *)out, s);
  return out[0] + out[1] + out[2] + out[3];
}

typedef struct ReadPool ReadPool;

typedef struct {
  ReadPool *pool;
  const __m256i *begin;
  size_t count; /* 32-byte vectors */
  int index;
  long long sink;
} ReadSlice;

struct ReadPool {
  void *buffer;
  size_t bytes;
  int threads, streams;
  volatile int quit;
  pthread_barrier_t start, end;
  ReadSlice *slices;
  PassSpan *spans; /* each reader's last pass, by its own clock */
  /* The last pass by the calling thread's clock around the barriers: what
   * these programs measured before pass_clock.h, kept to show the gap. */
  double caller_seconds;
  pthread_t *ids;
};

static void *read_pool_worker(void *arg) {
  ReadSlice *s = (ReadSlice *)arg;
  memset((void *)s->begin, 0x5a + s->index, s->count * sizeof(__m256i));
  for (;;) {
    pthread_barrier_wait(&s->pool->start);
    if (s->pool->quit)
      return NULL;
    PassSpan *span = &s->pool->spans[s->index];
    span->began = pass_clock_now();
    s->sink += read_pass(s->begin, s->count, s->pool->streams);
    span->ended = pass_clock_now();
    pthread_barrier_wait(&s->pool->end);
  }
}

/* Allocates `bytes` and starts `threads` readers of `streams` parts each;
 * on failure prints why (naming `who`) and returns -1. */
static int read_pool_start(ReadPool *pool, size_t bytes, int threads,
                           int streams, const char *who) {
  memset(pool, 0, sizeof *pool);
  pool->bytes = bytes;
  pool->threads = threads;
  pool->streams = streams;
  if (posix_memalign(&pool->buffer, (size_t)2 << 20, bytes) != 0) {
    fprintf(stderr, "%s: cannot allocate %zu MiB\n", who, bytes >> 20);
    return -1;
  }
#ifdef MADV_HUGEPAGE
  madvise(pool->buffer, bytes, MADV_HUGEPAGE); /* advice: fine if refused */
#endif
  pool->slices = calloc((size_t)threads, sizeof(ReadSlice));
  pool->spans = calloc((size_t)threads, sizeof(PassSpan));
  pool->ids = calloc((size_t)threads, sizeof(pthread_t));
  if (!pool->slices || !pool->spans || !pool->ids)
    return -1;
  pthread_barrier_init(&pool->start, NULL, (unsigned)threads + 1);
  pthread_barrier_init(&pool->end, NULL, (unsigned)threads + 1);
  size_t vectors = bytes / sizeof(__m256i), per = vectors / (size_t)threads;
  for (int t = 0; t < threads; ++t) {
    ReadSlice *s = &pool->slices[t];
    s->pool = pool;
    s->begin = (const __m256i *)pool->buffer + per * (size_t)t;
    s->count = t + 1 == threads ? vectors - per * (size_t)t : per;
    s->index = t;
    if (pthread_create(&pool->ids[t], NULL, read_pool_worker, s) != 0) {
      fprintf(stderr, "%s: cannot start reader thread %d\n", who, t);
      return -1;
    }
  }
  return 0;
}

/* One pass of every reader over its slice; returns its seconds, from the
 * first reader's start to the last one's end (pass_clock.h says why not
 * by this thread's clock). */
static double read_pool_pass(ReadPool *pool) {
  pthread_barrier_wait(&pool->start);
  double caller_began = pass_clock_now();
  pthread_barrier_wait(&pool->end);
  pool->caller_seconds = pass_clock_now() - caller_began;
  return pass_clock_window(pool->spans, pool->threads);
}

/* Stops the readers and frees the buffer; returns the sum of every pass's
 * loads (a checksum that keeps them). */
static long long read_pool_stop(ReadPool *pool) {
  pool->quit = 1;
  pthread_barrier_wait(&pool->start);
  long long sink = 0;
  for (int t = 0; t < pool->threads; ++t) {
    pthread_join(pool->ids[t], NULL);
    sink += pool->slices[t].sink;
  }
  free(pool->buffer);
  free(pool->slices);
  free(pool->spans);
  free(pool->ids);
  return sink;
}

#endif /* MOEC_BENCH_READ_PASS_H */

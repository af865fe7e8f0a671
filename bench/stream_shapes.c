/* bench/stream_shapes.c - how fast the decode GEMV's read pattern streams,
 * outside the model, beside membw's plain read, in one process.
 *
 *   clang-22 -O2 -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl \
 *     -mavx512vnni -pthread bench/stream_shapes.c -o stream_shapes
 *   ./stream_shapes [ROUNDS]                          (default 16)
 *
 * Two threads read a 1 GiB buffer (transparent huge pages requested) in
 * several shapes, one 1 GiB pass of each shape per round, the shapes
 * alternated so that the neighbours' share of the memory system falls on
 * all of them alike; it prints each shape's best and mean pass (GB = 1e9
 * bytes). The shapes:
 *   - membw: each thread's half as 4 streams, 256 bytes of each in turn
 *     (bench/membw.c -p 4, the decode benchmark's bound);
 *   - gemv: the zmm decode's inner loop for Q4_0 tiles (WideVnniTiles in
 *     codegen/cpu/Kernels.cpp): 4 streams of 144-byte tile blocks, per
 *     block an f16 scale load, two 64-byte loads, the nibble unpacking, 4
 *     vpdpbusd, 2 conversions and 2 FMAs, and a prefetch of every line 4
 *     KiB ahead into L1 (the kernels until the twenty-sixth session); also
 *     with the loads alone, and without the prefetch; "L2 a tile ahead":
 *     every line 2 KiB ahead into L1 and a tile (9 KiB: 8 rows of a
 *     2048-wide Q4_0 matrix) ahead into L2, as the kernels prefetch now;
 *   - gemv from L2: the same loop over 1 MiB of the thread's half, 512
 *     times over (the slice stays in the core's 2 MiB L2): what the loop
 *     computes per second when memory is not what it waits on;
 *   - gemv in units: the same loop over units of 64 KiB, 256 KiB or 1 MiB
 *     (each cut into 4 streams) dealt to the threads in alternation, as
 *     the kernels' claimed units are; "claim ahead": the prefetches that
 *     would run past a stream's end run into the thread's next unit's
 *     stream instead, as the kernels' last pass of a claim does;
 *   - group-major: the same blocks with their payload stored by 4-byte
 *     groups of the 8 rows instead of row by row (read_tiles says how the
 *     work differs), from memory and from L2: what that layout would
 *     change, measured before the bundle stores it.
 * AVX-512 with VNNI only: a measurement tool run by hand, not in CI.
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

#include "read_pass.h"

enum {
  kStreams = 4,
  kBlock = 144,
  kPrefetch = 4096,
  kNearPrefetch = 2048,
  kTileBytes = 8 * 64 * 18,
  kThreads = 2
};

/* The GEMV's pattern over `bytes`: 4 streams of tile blocks. `compute`:
 * 0 loads alone; 1 the zmm decode's body on the bundle's payload (each
 * row's 16 bytes together: a load holds 4 rows, each row's sum lies in 4
 * lanes, so every block takes 2 conversions, 2 FMAs and 2 spreads of the
 * row scales); 2 the same work on a group-major payload (bytes 4g..4g+3
 * of the 8 rows together, g = 0..3: a load holds 2 groups of all 8 rows,
 * lane = row, so the block's 4 dots add into one vector and take 1
 * conversion and 1 FMA with the 8 scales repeated, no spread). A design
 * measurement: the bundle stores the first layout. */
/* Byte i + distance of stream k (streams of `part` bytes from p): past the
 * stream's end, in the next unit's stream k where there is one (the
 * kernels' claim ahead). */
static const char *stream_ahead(const uint8_t *p, const uint8_t *next,
                                size_t part, int k, size_t i, size_t distance) {
  if (next && i + distance >= part)
    return (const char *)next + (size_t)k * part + (i + distance - part);
  return (const char *)p + (size_t)k * part + i + distance;
}

static float read_tiles(const uint8_t *p, size_t bytes, int prefetch,
                        int compute, const uint8_t *next) {
  size_t part = bytes / kStreams / kBlock * kBlock;
  __m512 acc[kStreams][2];
  __m512i bits[kStreams];
  for (int k = 0; k < kStreams; ++k) {
    acc[k][0] = acc[k][1] = _mm512_setzero_ps();
    bits[k] = _mm512_setzero_si512();
  }
  const __m512i mask = _mm512_set1_epi8(15);
  const __m512i xLow = _mm512_set1_epi8(3), xHigh = _mm512_set1_epi8(-2);
  const __m512i start = _mm512_set1_epi32(-5);
  const __m512i xLow2 = _mm512_set1_epi8(5), xHigh2 = _mm512_set1_epi8(-7);
  const __m512 dx = _mm512_set1_ps(0.5f);
  const __m512i zero = _mm512_setzero_si512();
  const __m512i rows0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  const __m512i rows1 = _mm512_set_epi32(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4);
  for (size_t i = 0; i < part; i += kBlock)
    for (int k = 0; k < kStreams; ++k) {
      const uint8_t *q = p + (size_t)k * part + i;
      if (prefetch) {
        const char *ahead = stream_ahead(
            p, next, part, k, i, prefetch == 2 ? kNearPrefetch : kPrefetch);
        for (int line = 0; line < kBlock; line += 64)
          _mm_prefetch(ahead + line, _MM_HINT_T0);
        if (prefetch == 2) {
          /* L2 a tile ahead (the stream's next tile). */
          const char *tile = stream_ahead(p, next, part, k, i, kTileBytes);
          for (int line = 0; line < kBlock; line += 64)
            _mm_prefetch(tile + line, _MM_HINT_T1);
        }
      }
      __m512i w0 = _mm512_loadu_si512(q + 16), w1 = _mm512_loadu_si512(q + 80);
      __m128i header = _mm_loadu_si128((const __m128i *)q);
      if (!compute) {
        bits[k] = _mm512_xor_si512(bits[k], _mm512_xor_si512(w0, w1));
        bits[k] = _mm512_xor_si512(bits[k], _mm512_castsi128_si512(header));
        continue;
      }
      __m512i l0 = _mm512_and_si512(w0, mask);
      __m512i h0 = _mm512_and_si512(_mm512_srli_epi16(w0, 4), mask);
      __m512i l1 = _mm512_and_si512(w1, mask);
      __m512i h1 = _mm512_and_si512(_mm512_srli_epi16(w1, 4), mask);
      if (compute == 2) {
        /* Two chains of two, as the other body: four dependent vpdpbusd
         * a block would wait on their latency. */
        __m512i d = _mm512_add_epi32(
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, l0, xLow), h0,
                                xLow2),
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, l1, xHigh), h1,
                                xHigh2));
        __m512 repeated = _mm512_cvtph_ps(_mm256_broadcastsi128_si256(header));
        acc[k][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d),
                                    _mm512_mul_ps(repeated, dx), acc[k][0]);
        continue;
      }
      __m512 scales =
          _mm512_mul_ps(_mm512_castps256_ps512(_mm256_cvtph_ps(header)), dx);
      __m512i d0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, l0, xLow), h0, xHigh);
      __m512i d1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, l1, xLow), h1, xHigh);
      acc[k][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0),
                                  _mm512_permutexvar_ps(rows0, scales), acc[k][0]);
      acc[k][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1),
                                  _mm512_permutexvar_ps(rows1, scales), acc[k][1]);
    }
  float s = 0;
  for (int k = 0; k < kStreams; ++k) {
    s += _mm512_reduce_add_ps(_mm512_add_ps(acc[k][0], acc[k][1]));
    s += (float)_mm512_reduce_add_epi32(bits[k]);
  }
  return s;
}

enum { kHotBytes = 1 << 20, kHotRepeats = 512 };

typedef struct {
  const char *name;
  int whole; /* 1: each thread reads its half; 0: units in alternation;
                2: each thread reads kHotBytes of its half kHotRepeats times */
  size_t unit; /* bytes per unit */
  int plain;
  int prefetch; /* 0 none; 1 L1 4 KiB ahead; 2 L1 2 KiB + L2 a tile ahead */
  int compute;
  int ahead; /* units: the last prefetches run into the next unit */
} Shape;

static const Shape kShapes[] = {
    {"membw (4 streams, 256 B steps)", 1, 0, 1, 0, 0},
    {"gemv: prefetch + compute", 1, 0, 0, 1, 1},
    {"gemv: L2 a tile ahead + compute", 1, 0, 0, 2, 1},
    {"gemv loads: prefetch, no compute", 1, 0, 0, 1, 0},
    {"gemv: compute, no prefetch", 1, 0, 0, 0, 1},
    {"gemv loads: no prefetch", 1, 0, 0, 0, 0},
    {"gemv from L2: prefetch + compute", 2, 0, 0, 1, 1},
    {"gemv from L2: loads alone", 2, 0, 0, 0, 0},
    {"group-major: prefetch + compute", 1, 0, 0, 1, 2},
    {"group-major from L2", 2, 0, 0, 1, 2},
    {"gemv in 64 KiB units", 0, 64 << 10, 0, 1, 1},
    {"gemv in 256 KiB units", 0, 256 << 10, 0, 1, 1},
    {"gemv in 1 MiB units", 0, 1 << 20, 0, 1, 1},
    {"gemv in 256 KiB units, claim ahead", 0, 256 << 10, 0, 1, 1, 1},
    {"gemv in 1 MiB units, claim ahead", 0, 1 << 20, 0, 1, 1, 1},
    {"1 MiB units, claim ahead, L2 a tile", 0, 1 << 20, 0, 2, 1, 1},
};
enum { kShapeCount = sizeof(kShapes) / sizeof(kShapes[0]) };

static const uint8_t *buffer;
static size_t bufferBytes;
static int rounds = 16, current;
static pthread_barrier_t startBarrier, endBarrier;
/* Each reader's part of the current pass, by its own clock. */
static PassSpan spans[kThreads];

static void *worker(void *arg) {
  int t = (int)(intptr_t)arg;
  size_t half = bufferBytes / kThreads;
  const uint8_t *mine = buffer + (size_t)t * half;
  memset((void *)mine, 0x35 + t, half); /* first touch by the reader */
  float sink = 0;
  for (int r = 0; r < rounds * kShapeCount; ++r) {
    pthread_barrier_wait(&startBarrier);
    spans[t].began = pass_clock_now();
    const Shape *s = &kShapes[current];
    if (s->whole == 2) {
      for (int k = 0; k < kHotRepeats; ++k)
        sink += read_tiles(mine, kHotBytes, s->prefetch, s->compute, NULL);
    } else if (s->whole) {
      sink += s->plain ? (float)read_pass((const __m256i *)mine,
                                          half / sizeof(__m256i), kStreams)
                       : read_tiles(mine, half, s->prefetch, s->compute, NULL);
    } else {
      size_t units = bufferBytes / s->unit;
      for (size_t u = (size_t)t; u < units; u += kThreads) {
        const uint8_t *next = s->ahead && u + kThreads < units
                                  ? buffer + (u + kThreads) * s->unit
                                  : NULL;
        sink += read_tiles(buffer + u * s->unit, s->unit, s->prefetch,
                           s->compute, next);
      }
    }
    spans[t].ended = pass_clock_now();
    pthread_barrier_wait(&endBarrier);
  }
  return (void *)(intptr_t)(sink == 12345.0f);
}

int main(int argc, char **argv) {
  if (argc > 1)
    rounds = atoi(argv[1]);
  if (rounds < 1 || rounds > 1000) {
    fprintf(stderr, "usage: stream_shapes [ROUNDS]\n");
    return 2;
  }
  bufferBytes = (size_t)1 << 30;
  void *p = NULL;
  if (posix_memalign(&p, (size_t)2 << 20, bufferBytes) != 0)
    return 1;
  madvise(p, bufferBytes, MADV_HUGEPAGE);
  buffer = p;
  pthread_barrier_init(&startBarrier, NULL, kThreads + 1);
  pthread_barrier_init(&endBarrier, NULL, kThreads + 1);
  pthread_t ids[kThreads];
  for (int t = 0; t < kThreads; ++t)
    pthread_create(&ids[t], NULL, worker, (void *)(intptr_t)t);
  double best[kShapeCount] = {0}, sum[kShapeCount] = {0};
  for (int r = 0; r < rounds; ++r)
    for (int s = 0; s < kShapeCount; ++s) {
      current = s;
      pthread_barrier_wait(&startBarrier);
      pthread_barrier_wait(&endBarrier);
      double bytes = kShapes[s].whole == 2
                         ? (double)kThreads * kHotBytes * kHotRepeats
                         : (double)bufferBytes;
      /* The readers' window, not this thread's clock (pass_clock.h). */
      double gbps = bytes / pass_clock_window(spans, kThreads) / 1e9;
      sum[s] += gbps;
      if (gbps > best[s])
        best[s] = gbps;
    }
  for (int t = 0; t < kThreads; ++t)
    pthread_join(ids[t], NULL);
  printf("stream_shapes: %d threads, 1 GiB, %d rounds (GB/s)\n", kThreads, rounds);
  for (int s = 0; s < kShapeCount; ++s)
    printf("  %-36s best %5.1f  mean %5.1f\n", kShapes[s].name, best[s],
           sum[s] / rounds);
  free(p);
  return 0;
}

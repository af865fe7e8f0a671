/* bench/int8peak.c - the int8 dot-product peak: the bound for prefill.
 *
 *   int8peak [-t THREADS] [-r REPEATS] [-s SECONDS]   (defaults: 2, 5, 0.25)
 *
 * A tight loop of the best int8 dot-product instruction the build enables,
 * with enough independent accumulators to hide its latency, on THREADS
 * threads; prints the best of REPEATS passes as "int8peak: X G int8 ops/s
 * (...)" on stdout. One multiply-add of an int8 pair counts as 2 ops.
 *
 *   __AVX512VNNI__ (-mavx512f -mavx512bw -mavx512vnni)  vpdpbusd zmm:
 *       64 u8 x s8 multiply-adds = 128 ops per instruction, 12 accumulators
 *   __AVXVNNI__ (-mavxvnni)                              {vex} vpdpbusd ymm:
 *       32 multiply-adds = 64 ops per instruction, 12 accumulators
 *   otherwise (AVX2, -mavx2)        vpmaddubsw + vpmaddwd (+ vpaddd into an
 *       i32 accumulator, the sequence ggml's AVX2 kernels use): 32
 *       multiply-adds = 64 ops per pair, 6 accumulators
 *   and, built with __AMX_INT8__ (-mamx-tile -mamx-int8) where the kernel
 *   grants this process the tile data state (arch_prctl
 *   ARCH_REQ_XCOMP_PERM; some guests advertise AMX and do not, and the
 *   instructions then fault), instead of the above: AMX tdpbusd, 16 x 16
 *   i32 results of 64 u8 x s8 multiply-adds each = 32768 ops per
 *   instruction, 4 accumulator tiles (intrinsics: they act on the tile
 *   registers, so the compiler keeps every one, in order)
 *
 * bench/decode_prefill.py picks the -m flags from /proc/cpuinfo (never
 * -march=native). The loop is inline assembly so that the compiler can
 * neither hoist nor drop the loop-invariant dot products.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pass_clock.h"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define KERNEL "avx512-vnni vpdpbusd zmm"
#define OPS_PER_ITERATION (12.0 * 128.0)
#elif defined(__AVXVNNI__)
#define KERNEL "avx-vnni vpdpbusd ymm"
#define OPS_PER_ITERATION (12.0 * 64.0)
#elif defined(__AVX2__)
#define KERNEL "avx2 vpmaddubsw+vpmaddwd ymm"
#define OPS_PER_ITERATION (6.0 * 64.0)
#else
#error "int8peak.c needs AVX2 at least (-mavx2)"
#endif

static pthread_barrier_t start_barrier, end_barrier;
static int repeats = 5;
static long long iterations = 0;
static const char *kernel_name = KERNEL;
static double ops_per_iteration = OPS_PER_ITERATION;

#if defined(__AMX_INT8__) && defined(__AMX_TILE__)
static int use_amx = 0;

/* Whether the kernel lets this process use AMX's tile data (Linux 5.16+). */
static int amx_granted(void) {
  const long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
  return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
}

/* Palette 1: tiles 0-3 accumulate 16 x 16 i32, tiles 4 and 5 hold 16 x 64
 * bytes of u8 and s8 operands. */
typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((packed)) TileConfig;

static int amx_kernel(long long n, int seed) {
  TileConfig cfg = {0};
  cfg.palette = 1;
  for (int t = 0; t < 6; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  int8_t a[16 * 64] __attribute__((aligned(64)));
  int8_t b[16 * 64] __attribute__((aligned(64)));
  int32_t out[16 * 16] __attribute__((aligned(64)));
  for (int i = 0; i < 16 * 64; ++i) {
    a[i] = (int8_t)(i * 7 + seed);
    b[i] = (int8_t)(i * 13 - seed);
  }
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, a, 64);
  _tile_loadd(5, b, 64);
  for (long long i = 0; i < n; ++i) {
    _tile_dpbusd(0, 4, 5);
    _tile_dpbusd(1, 4, 5);
    _tile_dpbusd(2, 4, 5);
    _tile_dpbusd(3, 4, 5);
  }
  int sum = 0;
  for (int t = 0; t < 4; ++t) {
    switch (t) {
    case 0: _tile_stored(0, out, 64); break;
    case 1: _tile_stored(1, out, 64); break;
    case 2: _tile_stored(2, out, 64); break;
    default: _tile_stored(3, out, 64); break;
    }
    sum += out[0] + t * out[255];
  }
  _tile_release();
  return sum;
}
#endif

/* Runs n iterations; returns a value depending on the accumulators. */
static int kernel(long long n, int seed) {
#if defined(__AMX_INT8__) && defined(__AMX_TILE__)
  if (use_amx)
    return amx_kernel(n, seed);
#endif
  int out[16] __attribute__((aligned(64)));
  int8_t a[64] __attribute__((aligned(64)));
  int8_t b[64] __attribute__((aligned(64)));
  for (int i = 0; i < 64; ++i) {
    a[i] = (int8_t)(i * 7 + seed);
    b[i] = (int8_t)(i * 13 - seed);
  }
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  __asm__ volatile(
      "vmovdqa64 (%[a]), %%zmm0\n\t"
      "vmovdqa64 (%[b]), %%zmm1\n\t"
      "vpxord %%zmm2, %%zmm2, %%zmm2\n\t"
      "vmovdqa64 %%zmm2, %%zmm3\n\t"
      "vmovdqa64 %%zmm2, %%zmm4\n\t"
      "vmovdqa64 %%zmm2, %%zmm5\n\t"
      "vmovdqa64 %%zmm2, %%zmm6\n\t"
      "vmovdqa64 %%zmm2, %%zmm7\n\t"
      "vmovdqa64 %%zmm2, %%zmm8\n\t"
      "vmovdqa64 %%zmm2, %%zmm9\n\t"
      "vmovdqa64 %%zmm2, %%zmm10\n\t"
      "vmovdqa64 %%zmm2, %%zmm11\n\t"
      "vmovdqa64 %%zmm2, %%zmm12\n\t"
      "vmovdqa64 %%zmm2, %%zmm13\n\t"
      ".p2align 5\n"
      "1:\n\t"
      "vpdpbusd %%zmm1, %%zmm0, %%zmm2\n\t"
      "vpdpbusd %%zmm1, %%zmm0, %%zmm3\n\t"
      "vpdpbusd %%zmm1, %%zmm0, %%zmm4\n\t"
      "vpdpbusd %%zmm1, %%zmm0, %%zmm5\n\t"
      "vpdpbusd %%zmm1, %%zmm0, %%zmm6\n\t"
      "vpdpbusd %%zmm1, %%zmm0, %%zmm7\n\t"
      "vpdpbusd %%zmm1, %%zmm0, %%zmm8\n\t"
      "vpdpbusd %%zmm1, %%zmm0, %%zmm9\n\t"
      "vpdpbusd %%zmm1, %%zmm0, %%zmm10\n\t"
      "vpdpbusd %%zmm1, %%zmm0, %%zmm11\n\t"
      "vpdpbusd %%zmm1, %%zmm0, %%zmm12\n\t"
      "vpdpbusd %%zmm1, %%zmm0, %%zmm13\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vpaddd %%zmm3, %%zmm2, %%zmm2\n\t"
      "vpaddd %%zmm5, %%zmm4, %%zmm4\n\t"
      "vpaddd %%zmm7, %%zmm6, %%zmm6\n\t"
      "vpaddd %%zmm9, %%zmm8, %%zmm8\n\t"
      "vpaddd %%zmm11, %%zmm10, %%zmm10\n\t"
      "vpaddd %%zmm13, %%zmm12, %%zmm12\n\t"
      "vpaddd %%zmm4, %%zmm2, %%zmm2\n\t"
      "vpaddd %%zmm8, %%zmm6, %%zmm6\n\t"
      "vpaddd %%zmm12, %%zmm10, %%zmm10\n\t"
      "vpaddd %%zmm6, %%zmm2, %%zmm2\n\t"
      "vpaddd %%zmm10, %%zmm2, %%zmm2\n\t"
      "vmovdqa64 %%zmm2, (%[out])\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [a] "r"(a), [b] "r"(b), [out] "r"(out)
      : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
        "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13");
#elif defined(__AVXVNNI__)
  __asm__ volatile(
      "vmovdqa (%[a]), %%ymm0\n\t"
      "vmovdqa (%[b]), %%ymm1\n\t"
      "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
      "vmovdqa %%ymm2, %%ymm3\n\t"
      "vmovdqa %%ymm2, %%ymm4\n\t"
      "vmovdqa %%ymm2, %%ymm5\n\t"
      "vmovdqa %%ymm2, %%ymm6\n\t"
      "vmovdqa %%ymm2, %%ymm7\n\t"
      "vmovdqa %%ymm2, %%ymm8\n\t"
      "vmovdqa %%ymm2, %%ymm9\n\t"
      "vmovdqa %%ymm2, %%ymm10\n\t"
      "vmovdqa %%ymm2, %%ymm11\n\t"
      "vmovdqa %%ymm2, %%ymm12\n\t"
      "vmovdqa %%ymm2, %%ymm13\n\t"
      ".p2align 5\n"
      "1:\n\t"
      "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm2\n\t"
      "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm3\n\t"
      "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm4\n\t"
      "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm5\n\t"
      "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm6\n\t"
      "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm7\n\t"
      "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm8\n\t"
      "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm9\n\t"
      "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm10\n\t"
      "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm11\n\t"
      "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm12\n\t"
      "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm13\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vpaddd %%ymm3, %%ymm2, %%ymm2\n\t"
      "vpaddd %%ymm5, %%ymm4, %%ymm4\n\t"
      "vpaddd %%ymm7, %%ymm6, %%ymm6\n\t"
      "vpaddd %%ymm9, %%ymm8, %%ymm8\n\t"
      "vpaddd %%ymm11, %%ymm10, %%ymm10\n\t"
      "vpaddd %%ymm13, %%ymm12, %%ymm12\n\t"
      "vpaddd %%ymm4, %%ymm2, %%ymm2\n\t"
      "vpaddd %%ymm8, %%ymm6, %%ymm6\n\t"
      "vpaddd %%ymm12, %%ymm10, %%ymm10\n\t"
      "vpaddd %%ymm6, %%ymm2, %%ymm2\n\t"
      "vpaddd %%ymm10, %%ymm2, %%ymm2\n\t"
      "vmovdqa %%ymm2, (%[out])\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [a] "r"(a), [b] "r"(b), [out] "r"(out)
      : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
        "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13");
#else
  int16_t ones[16] __attribute__((aligned(32)));
  for (int i = 0; i < 16; ++i)
    ones[i] = 1;
  __asm__ volatile(
      "vmovdqa (%[a]), %%ymm0\n\t"
      "vmovdqa (%[b]), %%ymm1\n\t"
      "vmovdqa (%[ones]), %%ymm2\n\t"
      "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
      "vmovdqa %%ymm3, %%ymm4\n\t"
      "vmovdqa %%ymm3, %%ymm5\n\t"
      "vmovdqa %%ymm3, %%ymm6\n\t"
      "vmovdqa %%ymm3, %%ymm7\n\t"
      "vmovdqa %%ymm3, %%ymm8\n\t"
      ".p2align 5\n"
      "1:\n\t"
      "vpmaddubsw %%ymm1, %%ymm0, %%ymm9\n\t"
      "vpmaddubsw %%ymm1, %%ymm0, %%ymm10\n\t"
      "vpmaddubsw %%ymm1, %%ymm0, %%ymm11\n\t"
      "vpmaddubsw %%ymm1, %%ymm0, %%ymm12\n\t"
      "vpmaddubsw %%ymm1, %%ymm0, %%ymm13\n\t"
      "vpmaddubsw %%ymm1, %%ymm0, %%ymm14\n\t"
      "vpmaddwd %%ymm2, %%ymm9, %%ymm9\n\t"
      "vpmaddwd %%ymm2, %%ymm10, %%ymm10\n\t"
      "vpmaddwd %%ymm2, %%ymm11, %%ymm11\n\t"
      "vpmaddwd %%ymm2, %%ymm12, %%ymm12\n\t"
      "vpmaddwd %%ymm2, %%ymm13, %%ymm13\n\t"
      "vpmaddwd %%ymm2, %%ymm14, %%ymm14\n\t"
      "vpaddd %%ymm9, %%ymm3, %%ymm3\n\t"
      "vpaddd %%ymm10, %%ymm4, %%ymm4\n\t"
      "vpaddd %%ymm11, %%ymm5, %%ymm5\n\t"
      "vpaddd %%ymm12, %%ymm6, %%ymm6\n\t"
      "vpaddd %%ymm13, %%ymm7, %%ymm7\n\t"
      "vpaddd %%ymm14, %%ymm8, %%ymm8\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vpaddd %%ymm4, %%ymm3, %%ymm3\n\t"
      "vpaddd %%ymm6, %%ymm5, %%ymm5\n\t"
      "vpaddd %%ymm8, %%ymm7, %%ymm7\n\t"
      "vpaddd %%ymm5, %%ymm3, %%ymm3\n\t"
      "vpaddd %%ymm7, %%ymm3, %%ymm3\n\t"
      "vmovdqa %%ymm3, (%[out])\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [a] "r"(a), [b] "r"(b), [ones] "r"(ones), [out] "r"(out)
      : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
        "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14");
#endif
  return out[0] ^ out[7];
}

typedef struct {
  int index;
  int sink;
} Worker;

/* Each worker's part of the current pass, by its own clock. */
static PassSpan *spans;

static void *worker(void *arg) {
  Worker *w = (Worker *)arg;
  for (int r = 0; r < repeats; ++r) {
    pthread_barrier_wait(&start_barrier);
    spans[w->index].began = pass_clock_now();
    w->sink ^= kernel(iterations, w->index + r);
    spans[w->index].ended = pass_clock_now();
    pthread_barrier_wait(&end_barrier);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int threads = 2;
  double seconds = 0.25;
  int opt;
  while ((opt = getopt(argc, argv, "t:r:s:h")) != -1) {
    switch (opt) {
    case 't': threads = atoi(optarg); break;
    case 'r': repeats = atoi(optarg); break;
    case 's': seconds = atof(optarg); break;
    default:
      fprintf(stderr, "usage: int8peak [-t THREADS] [-r REPEATS] [-s SECONDS]\n");
      return 2;
    }
  }
  if (threads < 1 || threads > 1024 || repeats < 1 || !(seconds > 0)) {
    fprintf(stderr, "int8peak: bad arguments\n");
    return 2;
  }
#if defined(__AMX_INT8__) && defined(__AMX_TILE__)
  use_amx = amx_granted();
  if (use_amx) {
    kernel_name = "amx tdpbusd";
    ops_per_iteration = 4.0 * 16 * 16 * 64 * 2;
  } else {
    fprintf(stderr, "int8peak: the kernel does not grant AMX to this "
                    "process; measuring %s\n", KERNEL);
  }
#endif
  /* Calibrate on one thread: iterations for about `seconds` a pass. */
  long long n = 1 << 16;
  double dt = 0;
  for (;;) {
    double t0 = pass_clock_now();
    (void)kernel(n, 0);
    dt = pass_clock_now() - t0;
    if (dt > 0.05 || n > (1LL << 40))
      break;
    n *= 4;
  }
  iterations = (long long)((double)n * seconds / dt);
  if (iterations < 1)
    iterations = 1;

  pthread_barrier_init(&start_barrier, NULL, (unsigned)threads + 1);
  pthread_barrier_init(&end_barrier, NULL, (unsigned)threads + 1);
  Worker *workers = calloc((size_t)threads, sizeof(Worker));
  pthread_t *ids = calloc((size_t)threads, sizeof(pthread_t));
  spans = calloc((size_t)threads, sizeof(PassSpan));
  if (!workers || !ids || !spans)
    return 1;
  for (int t = 0; t < threads; ++t) {
    workers[t].index = t;
    if (pthread_create(&ids[t], NULL, worker, &workers[t]) != 0) {
      fprintf(stderr, "int8peak: cannot start thread %d\n", t);
      return 1;
    }
  }
  double best = 1e30;
  double ops = ops_per_iteration * (double)iterations * (double)threads;
  for (int r = 0; r < repeats; ++r) {
    pthread_barrier_wait(&start_barrier);
    pthread_barrier_wait(&end_barrier);
    /* From the first worker's start to the last one's end: this thread's
     * clock after the barrier can read late (bench/pass_clock.h). */
    double pass = pass_clock_window(spans, threads);
    if (pass < best)
      best = pass;
    fprintf(stderr, "int8peak: pass %d: %.1f G int8 ops/s\n", r + 1, ops / pass / 1e9);
  }
  int sink = 0;
  for (int t = 0; t < threads; ++t) {
    pthread_join(ids[t], NULL);
    sink ^= workers[t].sink;
  }
  printf("int8peak: %.1f G int8 ops/s (best of %d; %s; %d threads; %.0f ops per "
         "iteration; checksum %d)\n",
         ops / best / 1e9, repeats, kernel_name, threads, ops_per_iteration,
         sink & 0xff);
  return 0;
}

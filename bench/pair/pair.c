/* bench/pair/pair.c - two builds of one model in one process, timed in
 * alternation: the A/B comparison for code changes on a noisy machine.
 *
 *   pair BUNDLE_A [BUNDLE_B] [PASSES]      (built by bench/pair/pair.sh)
 *
 * Links two libmodel.a whose defined symbols pair.sh prefixed with A_ and
 * B_, opens each (BUNDLE_B defaults to BUNDLE_A: builds of one model with
 * the same layout read the same bundle), and PASSES times (default 10):
 * prefills 128 (PAIR_PROMPT) fixed pseudo-random ids on each (the order alternating
 * between passes), then 64 decode steps in chunks of 8, each chunk on A
 * then B or B then A, alternating. Every prefill and every chunk is timed;
 * it prints the medians and quartiles of B's speed over A's for the paired
 * prefills and chunks, and each side's overall tokens/s. Pairing chunks of
 * a few tens of milliseconds cancels most of what other tenants do to the
 * memory bandwidth, which swings by 2x within minutes on shared guests.
 * Both models use 2 threads (PAIR_THREADS to change); PAIR_PROMPT sets
 * the prompt's length (default 128; longer prompts weigh attention, whose
 * cost grows with the context, within the model's context size). */
#include "model.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define DECLARE(P)                                                             \
  moec_model *P##moec_model_open(const moec_model_options *, char *, size_t); \
  int P##moec_model_prefill(moec_model *, const int32_t *, int64_t);           \
  int P##moec_model_decode(moec_model *, int32_t);                             \
  void P##moec_model_reset(moec_model *);                                      \
  const char *P##moec_model_error(const moec_model *);
DECLARE(A_)
DECLARE(B_)

typedef struct {
  moec_model *(*open)(const moec_model_options *, char *, size_t);
  int (*prefill)(moec_model *, const int32_t *, int64_t);
  int (*decode)(moec_model *, int32_t);
  void (*reset)(moec_model *);
  const char *(*error)(const moec_model *);
  moec_model *model;
} Build;

enum { kDecode = 64, kChunk = 8 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void check(Build *b, int status, const char *what) {
  if (status != 0) {
    fprintf(stderr, "pair: %s failed: %s\n", what, b->error(b->model));
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: pair BUNDLE_A [BUNDLE_B] [PASSES]\n");
    return 2;
  }
  const char *bundles[2] = {argv[1], argc > 2 ? argv[2] : argv[1]};
  int passes = argc > 3 ? atoi(argv[3]) : 10;
  if (passes < 1 || passes > 1000) {
    fprintf(stderr, "pair: PASSES must be 1..1000\n");
    return 2;
  }
  Build builds[2] = {
      {A_moec_model_open, A_moec_model_prefill, A_moec_model_decode,
       A_moec_model_reset, A_moec_model_error, NULL},
      {B_moec_model_open, B_moec_model_prefill, B_moec_model_decode,
       B_moec_model_reset, B_moec_model_error, NULL}};
  for (int i = 0; i < 2; ++i) {
    moec_model_options o = {0};
    o.bundle_path = bundles[i];
    o.threads = getenv("PAIR_THREADS") ? atoi(getenv("PAIR_THREADS")) : 2;
    char error[512];
    builds[i].model = builds[i].open(&o, error, sizeof error);
    if (!builds[i].model) {
      fprintf(stderr, "pair: %s: %s\n", bundles[i], error);
      return 1;
    }
  }
  const int kPrompt = getenv("PAIR_PROMPT") ? atoi(getenv("PAIR_PROMPT")) : 128;
  if (kPrompt < 1 || kPrompt > 1 << 20) {
    fprintf(stderr, "pair: PAIR_PROMPT must be 1..1048576\n");
    return 2;
  }
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)kPrompt);
  unsigned seed = 12345;
  for (int i = 0; i < kPrompt; ++i) {
    seed = seed * 1103515245u + 12345u;
    ids[i] = 3 + (int32_t)((seed >> 8) % 31000);
  }
  // Warm-up: the buffers' pages and the caches, then a reset.
  for (int i = 0; i < 2; ++i) {
    check(&builds[i], builds[i].prefill(builds[i].model, ids, kPrompt), "prefill");
    for (int j = 0; j < 4; ++j)
      check(&builds[i], builds[i].decode(builds[i].model, ids[j]), "decode");
    builds[i].reset(builds[i].model);
  }
  double *prefillRatio = malloc(sizeof(double) * passes);
  double *decodeRatio = malloc(sizeof(double) * passes * (kDecode / kChunk));
  double prefillTime[2] = {0, 0}, decodeTime[2] = {0, 0};
  int chunks = 0;
  for (int p = 0; p < passes; ++p) {
    double t[2];
    for (int k = 0; k < 2; ++k) {
      int i = (p & 1) ^ k;
      double t0 = now();
      check(&builds[i], builds[i].prefill(builds[i].model, ids, kPrompt), "prefill");
      t[i] = now() - t0;
    }
    prefillRatio[p] = t[0] / t[1];
    prefillTime[0] += t[0];
    prefillTime[1] += t[1];
    for (int c = 0; c < kDecode / kChunk; ++c) {
      for (int k = 0; k < 2; ++k) {
        int i = (p & 1) ^ (c & 1) ^ k;
        double t0 = now();
        for (int j = 0; j < kChunk; ++j)
          check(&builds[i],
                builds[i].decode(builds[i].model, ids[(c * kChunk + j) * 7 % kPrompt]),
                "decode");
        t[i] = now() - t0;
      }
      decodeRatio[chunks++] = t[0] / t[1];
      decodeTime[0] += t[0];
      decodeTime[1] += t[1];
    }
    for (int i = 0; i < 2; ++i)
      builds[i].reset(builds[i].model);
  }
  qsort(prefillRatio, passes, sizeof(double), by_value);
  qsort(decodeRatio, chunks, sizeof(double), by_value);
  printf("B over A (speed): prefill median %.3f (quartiles %.3f %.3f; %d pairs), "
         "decode median %.3f (quartiles %.3f %.3f; %d pairs of %d steps)\n",
         prefillRatio[passes / 2], prefillRatio[passes / 4],
         prefillRatio[3 * passes / 4], passes, decodeRatio[chunks / 2],
         decodeRatio[chunks / 4], decodeRatio[3 * chunks / 4], chunks, kChunk);
  printf("A: prefill %.1f tok/s, decode %.2f tok/s; B: prefill %.1f tok/s, "
         "decode %.2f tok/s\n",
         passes * kPrompt / prefillTime[0], chunks * kChunk / decodeTime[0],
         passes * kPrompt / prefillTime[1], chunks * kChunk / decodeTime[1]);
  free(ids);
  free(prefillRatio);
  free(decodeRatio);
  return 0;
}

/* bench/decode_beside.c - decode beside the read bandwidth: one process
 * alternates memory read passes with decode steps of a compiled model.
 *
 *   decode_beside -b BYTES_PER_TOKEN [-n PAIRS] [-t THREADS] [-p STREAMS]
 *                 [-i ID,ID,...] BUNDLE
 *
 * Built by bench/decode_prefill.py against OUT/libmodel.a and OUT/model.h.
 * Opens BUNDLE on THREADS threads (default 2), prefills the prompt (-i,
 * default 128 fixed pseudo-random ids), and then PAIRS times (default 64)
 * reads a 1 GiB buffer once on THREADS threads of its own (bench/
 * read_pass.h: membw's loop, STREAMS parts a thread, default 4) and runs
 * one decode step. The last pass closes the sequence: pass, step, pass,
 * ..., step, pass. Each step's weight rate (BYTES_PER_TOKEN over its time)
 * is set against the mean of the passes on either side of it, a few tens
 * of milliseconds away. It prints the median and quartiles of those
 * shares, the steps' and passes' overall rates, and the best pass; then,
 * with the steps in quarters by the passes beside them, each quarter's
 * median pass, step and share: how decode follows the memory when it is
 * fast (docs/cpu-backend.md, "The bound's clock": with the passes timed
 * by their readers, the shares stay near flat across the quarters).
 *
 * Why: on a shared machine the read bandwidth swings by 2x within
 * minutes, and the benchmark's bound (the best of 5 ~35 ms passes) picks
 * the peaks while decode is a rate over seconds. Set side by side, the two
 * meet the same neighbours; the share says how much of what the memory
 * gives at that moment decode takes. The steps start with their caches
 * cold (a pass evicts them) and their threads asleep, so the share is a
 * little below what continuous decode gets. Between a step and the next
 * pass the process sleeps a millisecond, so that the model's threads have
 * stopped spinning. */
#define _GNU_SOURCE
#include "model.h"
#include "read_pass.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Sorts v[0..n) and returns its middle element. */
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), by_value);
  return v[n / 2];
}

/* A step, the mean of the passes on either side of it, and its share. */
typedef struct {
  double passes, step, share;
} Beside;

static int by_passes_beside(const void *a, const void *b) {
  double x = ((const Beside *)a)->passes, y = ((const Beside *)b)->passes;
  return x < y ? -1 : x > y;
}

static int parse_ids(const char *text, int32_t **ids) {
  int n = 1;
  for (const char *c = text; *c; ++c)
    n += *c == ',';
  *ids = malloc(sizeof(int32_t) * (size_t)n);
  int i = 0;
  for (const char *c = text; i < n; ++i) {
    char *end;
    long v = strtol(c, &end, 10);
    if (end == c || v < 0 || v > INT32_MAX || (*end && *end != ','))
      return -1;
    (*ids)[i] = (int32_t)v;
    c = *end ? end + 1 : end;
  }
  return n;
}

int main(int argc, char **argv) {
  int threads = 2, pairs = 64, streams = 4;
  double bytes_per_token = 0;
  const char *prompt_text = NULL;
  int opt;
  while ((opt = getopt(argc, argv, "b:n:t:p:i:h")) != -1) {
    switch (opt) {
    case 'b':
      bytes_per_token = atof(optarg);
      break;
    case 'n':
      pairs = atoi(optarg);
      break;
    case 't':
      threads = atoi(optarg);
      break;
    case 'p':
      streams = atoi(optarg);
      break;
    case 'i':
      prompt_text = optarg;
      break;
    default:
      goto usage;
    }
  }
  if (optind + 1 != argc || bytes_per_token <= 0 || pairs < 4 ||
      pairs > 100000 || threads < 1 || threads > 512 || streams < 1 ||
      streams > 64)
    goto usage;

  int32_t *prompt = NULL;
  int prompt_len = 128;
  if (prompt_text) {
    prompt_len = parse_ids(prompt_text, &prompt);
    if (prompt_len < 1) {
      fprintf(stderr, "decode_beside: -i wants token ids, comma-separated\n");
      return 2;
    }
  } else {
    prompt = malloc(sizeof(int32_t) * (size_t)prompt_len);
    unsigned seed = 12345;
    for (int i = 0; i < prompt_len; ++i) {
      seed = seed * 1103515245u + 12345u;
      prompt[i] = 3 + (int32_t)((seed >> 8) % 31000);
    }
  }

  moec_model_options options = {0};
  options.bundle_path = argv[optind];
  options.threads = threads;
  char error[512];
  moec_model *model = moec_model_open(&options, error, sizeof error);
  if (!model) {
    fprintf(stderr, "decode_beside: %s\n", error);
    return 1;
  }

  const size_t bytes = (size_t)1 << 30;
  ReadPool pool;
  if (read_pool_start(&pool, bytes, threads, streams, "decode_beside") != 0)
    return 1;
  double *pass = malloc(sizeof(double) * (size_t)(pairs + 1));
  double *step = malloc(sizeof(double) * (size_t)pairs);
  double *share = malloc(sizeof(double) * (size_t)pairs);

  /* Warm-up (while the readers write their slices): the model's buffers
   * and caches, then the prompt again from the start. */
  if (moec_model_prefill(model, prompt, prompt_len) != 0)
    goto failed;
  for (int j = 0; j < 4; ++j)
    if (moec_model_decode(model, prompt[j % prompt_len]) != 0)
      goto failed;
  moec_model_reset(model);
  if (moec_model_prefill(model, prompt, prompt_len) != 0)
    goto failed;

  double pass_time = 0, step_time = 0, best_pass = 0;
  for (int i = 0; i <= pairs; ++i) {
    usleep(1000);
    double dt = read_pool_pass(&pool);
    pass[i] = (double)bytes / dt / 1e9;
    pass_time += dt;
    if (pass[i] > best_pass)
      best_pass = pass[i];
    if (i == pairs)
      break;
    double t0 = pass_clock_now();
    if (moec_model_decode(model, prompt[(i * 7) % prompt_len]) != 0)
      goto failed;
    dt = pass_clock_now() - t0;
    step[i] = bytes_per_token / dt / 1e9;
    step_time += dt;
  }
  Beside *by_passes = malloc(sizeof(Beside) * (size_t)pairs);
  for (int i = 0; i < pairs; ++i) {
    share[i] = step[i] / (0.5 * (pass[i] + pass[i + 1]));
    by_passes[i] = (Beside){0.5 * (pass[i] + pass[i + 1]), step[i], share[i]};
  }
  qsort(share, (size_t)pairs, sizeof(double), by_value);
  qsort(by_passes, (size_t)pairs, sizeof(Beside), by_passes_beside);
  printf("decode_beside: median share %.3f (quartiles %.3f %.3f; %d steps, "
         "each against the read passes on either side); decode %.2f GB/s, "
         "passes %.2f GB/s, best pass %.2f GB/s (1024 MiB; %d threads; %d "
         "stream%s per thread)\n",
         share[pairs / 2], share[pairs / 4], share[3 * pairs / 4], pairs,
         bytes_per_token * pairs / step_time / 1e9,
         (double)bytes * (pairs + 1) / pass_time / 1e9, best_pass, threads,
         streams, streams == 1 ? "" : "s");
  /* The steps in quarters by the passes beside them, slowest first: the
   * medians of each quarter's passes (by_passes is in their order), steps
   * and shares (sorted in `scratch`: the step rates, printed above). */
  double quarter[3][4], *scratch = step;
  for (int q = 0; q < 4; ++q) {
    int lo = pairs * q / 4, n = pairs * (q + 1) / 4 - lo;
    quarter[0][q] = by_passes[lo + n / 2].passes;
    for (int i = 0; i < n; ++i)
      scratch[i] = by_passes[lo + i].step;
    quarter[1][q] = median(scratch, n);
    for (int i = 0; i < n; ++i)
      scratch[i] = by_passes[lo + i].share;
    quarter[2][q] = median(scratch, n);
  }
  printf("decode_beside: by the passes beside each step, slowest to fastest "
         "quarter: passes %.1f / %.1f / %.1f / %.1f GB/s, decode %.1f / %.1f "
         "/ %.1f / %.1f GB/s, share %.3f / %.3f / %.3f / %.3f\n",
         quarter[0][0], quarter[0][1], quarter[0][2], quarter[0][3],
         quarter[1][0], quarter[1][1], quarter[1][2], quarter[1][3],
         quarter[2][0], quarter[2][1], quarter[2][2], quarter[2][3]);
  free(by_passes);
  read_pool_stop(&pool);
  moec_model_close(model);
  return 0;

failed:
  fprintf(stderr, "decode_beside: %s\n", moec_model_error(model));
  return 1;
usage:
  fprintf(stderr, "usage: decode_beside -b BYTES_PER_TOKEN [-n PAIRS >= 4] "
                  "[-t THREADS] [-p STREAMS] [-i ID,ID,...] BUNDLE\n");
  return 2;
}

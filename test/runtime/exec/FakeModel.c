/*===- FakeModel.c - A hand-written stand-in for compiled model code ---===//
 *
 * What moec's code generator will emit, written by hand for the runtime's
 * tests: the info table and an SPMD forward function that splits its work
 * by thread index, meets the other threads at moec_rt_barrier, acquires
 * and releases experts on thread 0, reads the resident and expert weights,
 * and keeps state in the KV cache across calls. It checks what the runtime
 * hands it (buffer sizes, alignment, thread indices) and aborts on a breach,
 * so that a runtime bug fails loudly. The model is in FakeModel.h.
 *===----------------------------------------------------------------------===*/
#include "test/runtime/exec/FakeModel.h"

#include "runtime/abi/moec_abi.h"

#include <stdio.h>
#include <stdlib.h>

const int64_t moec_model_info[MOEC_INFO_COUNT] = {
    [MOEC_INFO_ABI_MAJOR] = MOEC_ABI_VERSION_MAJOR,
    [MOEC_INFO_ABI_MINOR] = MOEC_ABI_VERSION_MINOR,
    [MOEC_INFO_LAYER_COUNT] = FAKE_LAYERS,
    [MOEC_INFO_EXPERT_COUNT] = FAKE_EXPERTS,
    [MOEC_INFO_EXPERTS_USED] = FAKE_USED,
    [MOEC_INFO_VOCAB_SIZE] = FAKE_VOCAB,
    [MOEC_INFO_HIDDEN_SIZE] = FAKE_HIDDEN,
    [MOEC_INFO_CONTEXT_LENGTH] = FAKE_CONTEXT,
    [MOEC_INFO_MAX_BATCH] = FAKE_MAX_BATCH,
    [MOEC_INFO_SCRATCH_BYTES] = FAKE_SCRATCH_BYTES,
    [MOEC_INFO_KV_BYTES] = FAKE_KV_BYTES,
    [MOEC_INFO_RESIDENT_BYTES] = FAKE_RESIDENT_BYTES,
    [MOEC_INFO_LAYOUT_HASH] = FAKE_LAYOUT_HASH,
};

static void fail(const char *what) {
  fprintf(stderr, "FakeModel: the runtime broke the ABI: %s\n", what);
  abort();
}

/* A rank-1 buffer as the ABI says: allocated == aligned, offset 0, stride
 * 1, `size` elements, 64-byte aligned when `aligned64`. */
static void *check(const moec_buffer_t *b, int64_t size, int exact,
                   int aligned64, const char *what) {
  if (!b || b->allocated != b->aligned || b->offset != 0 || b->stride != 1 ||
      !b->aligned)
    fail(what);
  if (exact ? b->size != size : b->size < size)
    fail(what);
  if (aligned64 && ((uintptr_t)b->aligned % 64) != 0)
    fail(what);
  return b->aligned;
}

void _mlir_ciface_moec_model_forward(
    moec_rt_context_t *ctx, int64_t thread_index, int64_t thread_count,
    int64_t n, int64_t flags, moec_buffer_t *tokens,
    moec_buffer_t *positions, moec_buffer_t *logits, moec_buffer_t *resident,
    moec_buffer_t *experts, moec_buffer_t *scratch, moec_buffer_t *kv) {
  if (thread_count < 1 || thread_index < 0 || thread_index >= thread_count)
    fail("thread index");
  if (n < 1 || n > FAKE_MAX_BATCH)
    fail("token count");
  const int32_t *tok = check(tokens, n, 1, 0, "tokens");
  const int32_t *pos = check(positions, n, 1, 0, "positions");
  const int all_logits = (flags & MOEC_FORWARD_ALL_LOGITS) != 0;
  if (flags & ~(int64_t)(MOEC_FORWARD_ALL_LOGITS | MOEC_FORWARD_EVERY_TOKEN |
                         MOEC_FORWARD_PREDICT))
    fail("flags");
  float *out =
      check(logits, all_logits ? n * FAKE_VOCAB : FAKE_VOCAB, 1, 0, "logits");
  const uint8_t *res = check(resident, FAKE_RESIDENT_BYTES, 1, 1, "resident");
  const uint8_t *arena = check(experts, FAKE_EXTENT_BYTES, 0, 1, "experts");
  uint8_t *scr = check(scratch, FAKE_SCRATCH_BYTES, 1, 1, "scratch");
  float *cache = check(kv, FAKE_KV_BYTES, 1, 1, "kv");
  for (int64_t i = 0; i < n; ++i)
    if (tok[i] < 0 || tok[i] >= FAKE_VOCAB || pos[i] < 0 ||
        pos[i] >= FAKE_CONTEXT)
      fail("token or position out of range");

  const float *embd = (const float *)(res + FAKE_EMBD_OFFSET);
  const float *output = (const float *)(res + FAKE_OUTPUT_OFFSET);
  float *x = (float *)(scr + FAKE_SCRATCH_X);
  float *y = (float *)(scr + FAKE_SCRATCH_Y);
  int64_t *route = (int64_t *)(scr + FAKE_SCRATCH_ROUTE);
  const int64_t elements = n * FAKE_HIDDEN;
  const int64_t t = thread_index, T = thread_count;

  for (int64_t e = t; e < elements; e += T) {
    int64_t i = e / FAKE_HIDDEN, h = e % FAKE_HIDDEN;
    /* One operation per statement here and below: no contraction into
     * fused multiply-adds, so that the tests' reference gets the same bits. */
    float shift = 0.001f * (float)pos[i];
    x[e] = embd[tok[i] * FAKE_HIDDEN + h] + shift;
  }
  moec_rt_barrier(ctx);

  for (int32_t l = 0; l < FAKE_LAYERS; ++l) {
    int64_t acquired[FAKE_EXPERTS];
    if (t == 0) {
      /* Routing and acquisition: thread 0's bookkeeping. */
      for (int e = 0; e < FAKE_EXPERTS; ++e)
        acquired[e] = -1;
      for (int64_t i = 0; i < n; ++i) {
        int32_t chosen[FAKE_USED];
        fake_route(tok[i], pos[i], l, chosen);
        for (int k = 0; k < FAKE_USED; ++k) {
          int32_t e = chosen[k];
          if (acquired[e] < 0) {
            /* In memory now, or wait for its read (ABI 0.6). */
            acquired[e] = moec_rt_expert_try_acquire(ctx, l, e);
            if (acquired[e] < 0)
              acquired[e] = moec_rt_expert_acquire(ctx, l, e);
            if (acquired[e] < 0 ||
                acquired[e] + FAKE_EXTENT_BYTES > experts->size ||
                acquired[e] % 64 != 0)
              fail("expert offset");
          }
          route[i * FAKE_USED + k] = acquired[e];
        }
      }
    }
    float *layerKv = cache + (int64_t)l * FAKE_CONTEXT * FAKE_HIDDEN;
    for (int64_t e = t; e < elements; e += T) {
      int64_t i = e / FAKE_HIDDEN, h = e % FAKE_HIDDEN;
      layerKv[pos[i] * FAKE_HIDDEN + h] = x[e];
    }
    moec_rt_barrier(ctx);

    for (int64_t e = t; e < elements; e += T) {
      int64_t i = e / FAKE_HIDDEN, h = e % FAKE_HIDDEN;
      float sum = 0.0f;
      for (int32_t p = 0; p <= pos[i]; ++p)
        sum += layerKv[p * FAKE_HIDDEN + h];
      float att = sum / (float)(pos[i] + 1);
      float v = x[e], squashed = v / (1.0f + (v < 0 ? -v : v));
      float moe = 0.0f;
      for (int k = 0; k < FAKE_USED; ++k) {
        const float *w = (const float *)(arena + route[i * FAKE_USED + k]);
        float gate = w[h], up = w[FAKE_HIDDEN + h],
              down = w[2 * FAKE_HIDDEN + h];
        float term = gate * squashed;
        term = term + up;
        term = term * down;
        moe = moe + term;
      }
      float r = 0.5f * att;
      r = v + r;
      y[e] = r + moe;
    }
    moec_rt_barrier(ctx);

    if (t == 0)
      for (int e = 0; e < FAKE_EXPERTS; ++e)
        if (acquired[e] >= 0)
          moec_rt_expert_release(ctx, l, e);
    for (int64_t e = t; e < elements; e += T)
      x[e] = y[e];
    moec_rt_barrier(ctx);
  }

  /* Logits of every token or of the last, split by vocabulary entry. */
  int64_t first = all_logits ? 0 : n - 1;
  int64_t entries = (n - first) * FAKE_VOCAB;
  for (int64_t e = t; e < entries; e += T) {
    int64_t row = e / FAKE_VOCAB, v = e % FAKE_VOCAB;
    const float *xi = x + (first + row) * FAKE_HIDDEN;
    float sum = 0.0f;
    for (int h = 0; h < FAKE_HIDDEN; ++h) {
      float prod = xi[h] * output[h * FAKE_VOCAB + v];
      sum = sum + prod;
    }
    out[e] = sum;
  }
}

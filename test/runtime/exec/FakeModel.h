/*===- FakeModel.h - A hand-written stand-in for compiled model code ---===//
 *
 * The shapes and buffer layout of FakeModel.c, shared with the tests that
 * write its bundle and compute its logits independently. The toy model:
 *
 *   x        = embd[token] + 0.001 * position
 *   per layer l:
 *     kv[l][position] = x
 *     att    = mean of kv[l][0..position]
 *     moe    = sum over the 2 routed experts e of
 *              (gate_e * x / (1 + |x|) + up_e) * down_e     (elementwise)
 *     x      = x + 0.5 * att + moe
 *   logits   = x . output                                   (output: H x V)
 *
 * with experts routed by token, position and layer (fake_route). Every
 * weight is f32; an expert's extent holds gate | up | down, one 64-byte
 * part each.
 *===----------------------------------------------------------------------===*/
#ifndef MOEC_TEST_RUNTIME_EXEC_FAKEMODEL_H
#define MOEC_TEST_RUNTIME_EXEC_FAKEMODEL_H

#include <stdint.h>

#define FAKE_LAYERS 3
#define FAKE_EXPERTS 4
#define FAKE_USED 2
#define FAKE_VOCAB 40
#define FAKE_HIDDEN 16
#define FAKE_CONTEXT 48
#define FAKE_MAX_BATCH 5
#define FAKE_LAYOUT_HASH 0x2545F4914F6CDD1DLL

/* Resident segment: token_embd.weight [VOCAB][HIDDEN], then output.weight
 * [HIDDEN][VOCAB]. */
#define FAKE_EMBD_OFFSET 0
#define FAKE_OUTPUT_OFFSET (FAKE_VOCAB * FAKE_HIDDEN * 4)
#define FAKE_RESIDENT_BYTES (2 * FAKE_VOCAB * FAKE_HIDDEN * 4)

/* Expert extent: gate | up | down. */
#define FAKE_PART_BYTES (FAKE_HIDDEN * 4)
#define FAKE_EXTENT_BYTES (3 * FAKE_PART_BYTES)

/* KV: [LAYERS][CONTEXT][HIDDEN] f32. */
#define FAKE_KV_BYTES (FAKE_LAYERS * FAKE_CONTEXT * FAKE_HIDDEN * 4)

/* Scratch: x and y [MAX_BATCH][HIDDEN] f32, then the routed experts'
 * offsets [MAX_BATCH][USED] i64. */
#define FAKE_SCRATCH_X 0
#define FAKE_SCRATCH_Y (FAKE_MAX_BATCH * FAKE_HIDDEN * 4)
#define FAKE_SCRATCH_ROUTE (2 * FAKE_MAX_BATCH * FAKE_HIDDEN * 4)
#define FAKE_SCRATCH_BYTES (FAKE_SCRATCH_ROUTE + FAKE_MAX_BATCH * FAKE_USED * 8)

/* The two experts token `token` at `position` goes to in `layer`. */
static inline void fake_route(int32_t token, int32_t position, int32_t layer,
                              int32_t out[FAKE_USED]) {
  out[0] = (token + layer) % FAKE_EXPERTS;
  out[1] = (token * 3 + position + layer + 1) % FAKE_EXPERTS;
  if (out[1] == out[0])
    out[1] = (out[0] + 1) % FAKE_EXPERTS;
}

#endif /* MOEC_TEST_RUNTIME_EXEC_FAKEMODEL_H */

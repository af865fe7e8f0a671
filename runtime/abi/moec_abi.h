/*===- runtime/abi/moec_abi.h - The compiler/runtime ABI ------*- C -*-===//
 *
 * The one interface between code that moec generates and the moec runtime.
 * It is versioned as if it were a file format: the compiler embeds
 * MOEC_ABI_VERSION_MAJOR/MINOR into every artifact it writes, and the runtime
 * refuses an artifact whose major version differs from its own or whose minor
 * version is newer than its own (an older minor only lacks additions).
 *
 * Rules for changing this header:
 *   - Adding a function, an enum value or a trailing struct field that old
 *     artifacts never read: bump MINOR.
 *   - Anything else (renaming, reordering, changing a type or a meaning):
 *     bump MAJOR and reset MINOR to 0.
 *
 * This header is plain C99, includes nothing but <stdint.h>, and is safe to
 * include from freestanding kernels.
 *===------------------------------------------------------------------===*/
#ifndef MOEC_RUNTIME_ABI_MOEC_ABI_H
#define MOEC_RUNTIME_ABI_MOEC_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOEC_ABI_VERSION_MAJOR 0
#define MOEC_ABI_VERSION_MINOR 8

/* The version of the ABI an artifact was compiled against, as the compiler
 * embeds it. */
typedef struct moec_abi_version_t {
  uint16_t major;
  uint16_t minor;
} moec_abi_version_t;

typedef enum moec_abi_status_e {
  MOEC_ABI_COMPATIBLE = 0,
  /* The artifact's major version differs from the runtime's. */
  MOEC_ABI_MAJOR_MISMATCH = 1,
  /* The artifact needs additions (a newer minor) this runtime lacks. */
  MOEC_ABI_MINOR_TOO_NEW = 2,
} moec_abi_status_t;

/* The version this runtime was built with. */
moec_abi_version_t moec_abi_runtime_version(void);

/* Whether an artifact compiled against `artifact` can run on this runtime. */
moec_abi_status_t moec_abi_check(moec_abi_version_t artifact);

/* Writes a one-line, human-readable explanation of `status` for an artifact
 * of version `artifact` into `buf` (always NUL-terminated when size > 0) and
 * returns the length the full message needs, as snprintf does. */
int moec_abi_describe(moec_abi_status_t status, moec_abi_version_t artifact,
                      char *buf, unsigned long size);

/*===------------------------------------------------------------------===*
 * Compiled model code <-> runtime (since 0.2)
 *
 * A compiled model (out/libmodel.a) defines `moec_model_info` and
 * `_mlir_ciface_moec_model_forward`; the runtime defines the `moec_rt_*`
 * functions that the compiled code calls. The compiled code holds every
 * compute kernel; the runtime holds none.
 *
 * Threads: the runtime calls the forward function on every thread of its
 * pool at once (SPMD), with that thread's index and the thread count; the
 * compiled code splits each kernel's work by thread index and meets the other
 * threads at moec_rt_barrier between kernels. Bookkeeping that one thread
 * does (routing, expert acquisition) is done by thread 0.
 *
 * Memory: the runtime allocates the buffers the info table asks for and
 * passes them as rank-1 MLIR memref descriptors (moec_buffer_t):
 *   resident  the bundle's resident segment, loaded whole (tensor offsets
 *             are relative to the bundle's resident_offset);
 *   experts   the expert arena; moec_rt_expert_acquire returns the byte
 *             offset of an expert's extent (gate | up | down, as the bundle
 *             stores it) inside it;
 *   scratch   activations, scratch_bytes, contents undefined between calls;
 *   kv        the KV cache, kv_bytes, zeroed at open, kept between calls.
 *===------------------------------------------------------------------===*/

/* A rank-1 MLIR memref descriptor (MLIR's C interface for memref<?xT>). */
typedef struct moec_buffer_t {
  void *allocated;
  void *aligned;
  int64_t offset; /* in elements */
  int64_t size;   /* in elements */
  int64_t stride; /* 1 */
} moec_buffer_t;

/* The runtime's per-call context; opaque to compiled code. */
typedef struct moec_rt_context_t moec_rt_context_t;

/* Indices into `moec_model_info`, a table of int64 the compiled code
 * exports. The compiler writes the same layout hash into the bundle's
 * metadata ("layout_hash"): code and bundle must come from one compile. */
enum moec_model_info_index_e {
  MOEC_INFO_ABI_MAJOR = 0,
  MOEC_INFO_ABI_MINOR = 1,
  MOEC_INFO_LAYER_COUNT = 2,
  MOEC_INFO_EXPERT_COUNT = 3, /* routed experts per layer */
  MOEC_INFO_EXPERTS_USED = 4, /* top-k */
  MOEC_INFO_VOCAB_SIZE = 5,
  MOEC_INFO_HIDDEN_SIZE = 6,
  MOEC_INFO_CONTEXT_LENGTH = 7, /* KV cache positions */
  MOEC_INFO_MAX_BATCH = 8,      /* most tokens one forward call takes */
  MOEC_INFO_SCRATCH_BYTES = 9,
  MOEC_INFO_KV_BYTES = 10,
  MOEC_INFO_RESIDENT_BYTES = 11,
  MOEC_INFO_LAYOUT_HASH = 12, /* low 63 bits of the layout's XXH3 */
  /* Since 0.8: processor state the code uses that the OS must enable for
   * the process (moec_cpu_state_e bits); 0 in older code. */
  MOEC_INFO_CPU_STATE = 13,
  MOEC_INFO_COUNT = 16
};

/* Bits of moec_model_info[MOEC_INFO_CPU_STATE] (since 0.8). */
enum moec_cpu_state_e {
  /* AMX tiles (x86 AMX-TILE, AMX-INT8): Linux grants their state per
   * process on request (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA); the
   * runtime requests it at open and refuses the code where it is denied,
   * since the first tile instruction would otherwise fault. */
  MOEC_CPU_STATE_AMX_TILE = 1,
};

/* Defined by compiled code. */
extern const int64_t moec_model_info[MOEC_INFO_COUNT];

/* The `flags` of moec_model_forward. */
enum moec_forward_flags_e {
  /* The logits of every token (n_tokens x vocab), not the last one's
   * (vocab). */
  MOEC_FORWARD_ALL_LOGITS = 1,
  /* Since 0.7: every token through every layer even when only the last
   * token's logits are asked for (else the last layer computes past its
   * keys and values for the last token alone, and reports its routing for
   * that token only); a runtime that records every token's routing sets it.
   * Code of 0.6 and before computes every token always and reads any
   * nonzero `flags` as MOEC_FORWARD_ALL_LOGITS: never pass it this flag. */
  MOEC_FORWARD_EVERY_TOKEN = 2,
  /* Since 0.7: the runtime reads predicted experts ahead (it streams
   * experts and prefetches): compiled code computes the next layer's
   * predicted routing and reports it (moec_rt_predict); without this flag
   * it skips that work. Never pass it to code of 0.6 and before. */
  MOEC_FORWARD_PREDICT = 4,
};

/* Defined by compiled code: runs `n_tokens` (1..max_batch) tokens at
 * `positions` through the model, writing the logits `flags` asks for
 * (moec_forward_flags_e). Called on every pool thread at once; see
 * above. */
void _mlir_ciface_moec_model_forward(
    moec_rt_context_t *ctx, int64_t thread_index, int64_t thread_count,
    int64_t n_tokens, int64_t flags, moec_buffer_t *tokens /* i32 */,
    moec_buffer_t *positions /* i32 */, moec_buffer_t *logits /* f32 */,
    moec_buffer_t *resident /* i8 */, moec_buffer_t *experts /* i8 */,
    moec_buffer_t *scratch /* i8 */, moec_buffer_t *kv /* i8 */);

/* Defined by the runtime: waits until every thread of this forward call
 * has arrived. */
void moec_rt_barrier(moec_rt_context_t *ctx);

/* Defined by the runtime, called by thread 0 only: makes the extent of
 * (layer, expert) available in the experts buffer until released and returns
 * its byte offset there. Blocks while the extent is read from storage.
 * Since 0.3, a layer's experts are acquired after moec_rt_routing has
 * reported that layer's routing in the same call (the runtime starts all
 * of the layer's reads there). */
int64_t moec_rt_expert_acquire(moec_rt_context_t *ctx, int32_t layer,
                               int32_t expert);

/* Defined by the runtime (since 0.6), called by thread 0 only, under the
 * same rules as moec_rt_expert_acquire: the extent's byte offset when the
 * expert is in the experts buffer now (then it counts as an acquire, to be
 * released), or -1 without waiting when its read is still in flight (then
 * it does not count). Compiled code computes on the experts it gets while
 * the others' reads land, then acquires those. */
int64_t moec_rt_expert_try_acquire(moec_rt_context_t *ctx, int32_t layer,
                                   int32_t expert);

/* Defined by the runtime, called by thread 0 only, once per acquire, after
 * every thread is done with the layer's experts. */
void moec_rt_expert_release(moec_rt_context_t *ctx, int32_t layer,
                            int32_t expert);

/* Defined by the runtime (since 0.3), called by thread 0 only, once per
 * MoE layer and forward call, after routing: the experts each of the
 * n_tokens tokens goes to, top_k of them per token (i32, token-major) and
 * their weights (f32, same order), at byte offsets ids_offset and
 * weights_offset in the scratch buffer, valid during the call. What the
 * runtime learns from it (statistics, prediction) must not change the
 * results. */
void moec_rt_routing(moec_rt_context_t *ctx, int32_t layer, int64_t n_tokens,
                     int64_t top_k, int64_t ids_offset,
                     int64_t weights_offset);

/* Defined by the runtime (since 0.4), called by thread 0 only, after a
 * layer's routing report: a prediction of the experts MoE layer `layer`
 * (a later one) will route the n_tokens tokens to, top_k per token (i32,
 * token-major) at byte offset ids_offset of the scratch buffer. The
 * runtime may read them early; it must not change results. */
void moec_rt_predict(moec_rt_context_t *ctx, int32_t layer, int64_t n_tokens,
                     int64_t top_k, int64_t ids_offset);

/* Defined by the runtime (since 0.5), called by thread 0 only and only by
 * code compiled with instrumentation (what `moec calibrate` builds): the
 * f32 input of a projection, `rows` rows of `cols` at byte offset
 * data_offset of the scratch buffer. `tensor` is the weight's name
 * (NUL-terminated, static). For a bank of routed experts,
 * expert_offsets_offset >= 0 is the byte offset of i32 offsets[experts + 1]
 * in the scratch buffer: expert e's rows are [offsets[e], offsets[e + 1]);
 * otherwise it is -1. Must not change results. */
void moec_rt_observe_input(moec_rt_context_t *ctx, const char *tensor,
                           int64_t rows, int64_t cols, int64_t data_offset,
                           int64_t expert_offsets_offset);

/* Defined by the runtime (since 0.5), instrumented code only, thread 0:
 * the routed experts' outputs of MoE layer `layer` (before the weighted
 * combine), rows of `cols` f32 at data_offset; pair p (token p / top_k,
 * choice p % top_k of the layer's moec_rt_routing report) has its output in
 * row inverse[p], i32 at byte offset inverse_offset. */
void moec_rt_observe_experts(moec_rt_context_t *ctx, int32_t layer,
                             int64_t n_tokens, int64_t top_k, int64_t cols,
                             int64_t data_offset, int64_t inverse_offset);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOEC_RUNTIME_ABI_MOEC_ABI_H */

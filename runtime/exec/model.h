/*===- model.h - Running a model compiled by moec --------------*- C -*-===//
 *
 * The C interface of a compiled model: `moec model.gguf ... -o out/` writes
 * this header as out/model.h beside out/libmodel.a (the model's code and
 * the moec runtime in one archive) and out/model.moeb (its weights). Link
 * an application with
 *
 *   cc app.c out/libmodel.a -luring -lxxhash -lpthread -lstdc++ -lm
 *
 * and use it like this:
 *
 *   moec_model_options opts = {0};
 *   opts.bundle_path = "out/model.moeb";
 *   char err[512];
 *   moec_model *m = moec_model_open(&opts, err, sizeof err);
 *   if (!m) { fprintf(stderr, "%s\n", err); return 1; }
 *   if (moec_model_prefill(m, prompt, n_prompt) != 0)
 *     fail(moec_model_error(m));
 *   for (;;) {
 *     const float *logits = moec_model_logits(m);  // vocab_size floats
 *     int32_t next = choose(logits);               // argmax, sampling, ...
 *     if (moec_model_decode(m, next) != 0) break;
 *   }
 *   moec_model_close(m);
 *
 * Text goes in and out through the tokenizer the bundle carries
 * (moec_model_tokenize, moec_model_token_to_piece) and tokens are chosen by
 * a sampler (moec_sampler_*), as out/model-run does.
 *
 * A model holds one context (a sequence of tokens, the KV cache of their
 * positions) of at most moec_model_context_length() tokens. Calls on one
 * model must not overlap; different models are independent. The model's
 * compute runs on its own pool of threads, the calling thread included.
 *
 * Plain C99; includes only <stddef.h> and <stdint.h>.
 *===------------------------------------------------------------------===*/
#ifndef MOEC_MODEL_H
#define MOEC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moec_model moec_model;

/* Zero-initialise, then set bundle_path: zero is the default of every
 * other field. */
typedef struct moec_model_options {
  /* The weight bundle written with this code (model.moeb). Required. */
  const char *bundle_path;
  /* Compute threads, the calling thread included; 0: the CPUs this process
   * may run on, at most 64. At most 512. */
  int threads;
  /* How experts are read from storage when they stream: 0 io_uring where
   * the kernel has it, else a pool of pread threads; 1 io_uring only; 2 the
   * pread pool. */
  int io_mode;
  /* Bytes of memory for weights, KV cache and buffers; 0: the budget the
   * model was compiled for. Below what every expert needs, experts stream
   * from the bundle through a cache of what is left. */
  uint64_t memory_budget;
  /* The expert cache's eviction: 0 least recently used, 1 least
   * frequently used (aged). */
  int cache_policy;
  /* 1: do not read the experts predicted for the next layer early. */
  int no_prefetch;
  /* The most tokens one forward call takes (prompts are split into such
   * batches); 0: what the code was compiled for. */
  int max_batch;
} moec_model_options;

/* Opens the model: checks that this code and the bundle come from one
 * compile and that the bundle is intact (every checksum), loads the weights
 * and allocates the KV cache and working memory. On failure returns NULL
 * and writes a one-line message naming the file, offset or option into
 * `error` (always NUL-terminated when error_size > 0; may be NULL). */
moec_model *moec_model_open(const moec_model_options *opts, char *error,
                            size_t error_size);

/* Appends `n` tokens (n >= 0) to the context and computes the logits after
 * the last one. Long prompts are split into batches the code was compiled
 * for. Returns 0, or non-zero with moec_model_error() saying why: a token
 * outside the vocabulary, a context that would run past
 * moec_model_context_length() (then nothing is appended), a failure in the
 * runtime. */
int moec_model_prefill(moec_model *m, const int32_t *tokens, int64_t n);

/* Appends one token; moec_model_prefill(m, &token, 1). */
int moec_model_decode(moec_model *m, int32_t token);

/* Like moec_model_prefill, and also writes the logits after each of the `n`
 * tokens to `logits_out` (n x vocab_size floats, row i after token i): what
 * perplexity and comparisons with a reference need. */
int moec_model_eval_all(moec_model *m, const int32_t *tokens, int64_t n,
                        float *logits_out);

/* The vocab_size logits after the last token appended, valid until the
 * next call that appends, resets or closes; NULL while the context is
 * empty. */
const float *moec_model_logits(const moec_model *m);

/* Empties the context: the next token is at position 0, and the state is
 * that of a freshly opened model. */
void moec_model_reset(moec_model *m);

int64_t moec_model_vocab_size(const moec_model *m);
/* The most tokens the context holds. */
int64_t moec_model_context_length(const moec_model *m);
/* Tokens in the context: the position of the next token. */
int64_t moec_model_position(const moec_model *m);
/* Compute threads, the calling thread included. */
int moec_model_thread_count(const moec_model *m);

/* The message of the last failed call on `m` ("" if none); valid until the
 * next call on `m`. */
const char *moec_model_error(const moec_model *m);

/* Frees everything the model holds; NULL is ignored. */
void moec_model_close(moec_model *m);

/* ---- Statistics -------------------------------------------------------- */

/* From now on (on != 0), records which experts every token is routed to in
 * every MoE layer; off forgets what was recorded. */
void moec_model_record_routing(moec_model *m, int on);

/* Writes statistics as JSON to `path` (atomically): the model's shape; the
 * routing recorded (per layer and expert the tokens routed, popularity, the
 * probability that an expert of a token is used again by the next token of
 * the same sequence, and the trace [sequence, position, layer, experts...]);
 * expert acquisitions; peak resident memory. `extra_members` (NULL or
 * members of a JSON object, e.g. "\"prompt_tokens\": 3") are written
 * first, as they are. routing.counts is what `moec --calibration` reads.
 * 0, or -1 with moec_model_error() saying why. */
int moec_model_write_stats(moec_model *m, const char *path,
                           const char *extra_members);

/* Calibration, for models compiled with instrumentation (what `moec
 * calibrate` builds): from now on, every projection's input and the routed
 * experts' outputs are accumulated. */
void moec_model_start_calibration(moec_model *m);

/* Writes the accumulated statistics to `path` (atomically) as calib.dat
 * (per-column mean squared inputs, routing counts, per-expert router-weight
 * mass and REAP sums; docs/compression.md). 0, or -1 with
 * moec_model_error() saying why (also when the code is not instrumented). */
int moec_model_write_calibration(moec_model *m, const char *path);

/* What the calibration file records as its source: a JSON object (the
 * text, window, windows), so that compression can run it again. */
void moec_model_set_calibration_source(moec_model *m, const char *json);

/* GPTQ: from now on, also accumulate X^T X of the inputs of the weights of
 * layer `layer` (-1: the weights outside the layers); starts calibration.
 * moec_model_write_hessians writes them (docs/compression.md); 0 or -1. */
void moec_model_collect_hessians(moec_model *m, int layer);
int moec_model_write_hessians(moec_model *m, const char *path);

/* ---- Tokenizer --------------------------------------------------------- */

/* 1 when the bundle carries a tokenizer the runtime can run (from the
 * model's GGUF metadata), 0 when text must be given as token ids; then
 * moec_model_error() says why. */
int moec_model_has_tokenizer(moec_model *m);

/* Tokenizes `length` bytes of UTF-8 `text`. add_special: BOS first (and EOS
 * last) when the vocabulary asks for them; parse_special: control tokens
 * spelled in the text (e.g. "<|im_start|>") are those tokens. Returns the
 * number of tokens the text has and writes the first min(that, max_tokens)
 * to `tokens`: call again with more room when it returns more than
 * max_tokens. -1 when the model has no tokenizer. */
int64_t moec_model_tokenize(moec_model *m, const char *text, size_t length,
                            int add_special, int parse_special,
                            int32_t *tokens, int64_t max_tokens);

/* The bytes token `token` stands for (part of UTF-8 text; a character may
 * span tokens); control tokens give "" unless `special`. Returns the
 * length and writes the first min(length, size) bytes, no NUL; -1 for no
 * tokenizer or an id outside the vocabulary. */
int64_t moec_model_token_to_piece(moec_model *m, int32_t token, int special,
                                  char *buffer, size_t size);

/* The BOS and EOS tokens, -1 when the vocabulary has none. */
int32_t moec_model_token_bos(moec_model *m);
int32_t moec_model_token_eos(moec_model *m);

/* 1 when generation ends at `token` (EOS, EOT). */
int moec_model_token_is_end(moec_model *m, int32_t token);

/* The model's chat template (GGUF tokenizer.chat_template, Jinja), "" if it
 * has none. */
const char *moec_model_chat_template(moec_model *m);

/* ---- Sampling ---------------------------------------------------------- */

typedef struct moec_sampler moec_sampler;

typedef struct moec_sampler_params {
  float temperature;     /* <= 0: greedy */
  int32_t top_k;         /* <= 0: all */
  float top_p;           /* (0, 1]; 1: all */
  float min_p;           /* [0, 1]; 0: all */
  float repeat_penalty;  /* 1: off */
  int32_t repeat_last_n; /* tokens the penalty looks back on */
  uint64_t seed;
} moec_sampler_params;

/* llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05,
 * no repetition penalty (window 64), seed 0. */
moec_sampler_params moec_sampler_default_params(void);

/* NULL with `error` naming the parameter out of range. The same seed and
 * inputs give the same tokens on every machine. */
moec_sampler *moec_sampler_new(const moec_sampler_params *params,
                               char *error, size_t error_size);

/* Chooses a token from `n` logits and remembers it (repetition penalty). */
int32_t moec_sampler_sample(moec_sampler *s, const float *logits, int64_t n);

/* Remembers a token that was not sampled (the prompt's). */
void moec_sampler_accept(moec_sampler *s, int32_t token);

void moec_sampler_free(moec_sampler *s);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOEC_MODEL_H */

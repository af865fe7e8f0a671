/*===- CProgram.c - A C program using model.h, linked like users link -----===//
 *
 *   moec-exec-c-program BUNDLE
 *
 * Built from this file, FakeModel.c, libmoec_runtime_all.a and the flags of
 * moec_runtime_link.txt only, with the C driver: proves that model.h is C
 * and that the combined archive and the flags are all a user needs. Prints
 * the position and the logits after the prompt 1..7 as exact hex floats.
 *===----------------------------------------------------------------------===*/
#include "runtime/exec/model.h"

#include <stdio.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s BUNDLE\n", argv[0]);
    return 2;
  }
  moec_model_options opts = {0};
  opts.bundle_path = argv[1];
  opts.threads = 2;
  char error[512];
  moec_model *m = moec_model_open(&opts, error, sizeof error);
  if (!m) {
    fprintf(stderr, "%s\n", error);
    return 1;
  }
  const int32_t prompt[] = {1, 2, 3, 4, 5, 6, 7};
  if (moec_model_prefill(m, prompt, 7) != 0) {
    fprintf(stderr, "%s\n", moec_model_error(m));
    moec_model_close(m);
    return 1;
  }
  const float *logits = moec_model_logits(m);
  printf("%lld", (long long)moec_model_position(m));
  for (int64_t v = 0; v < moec_model_vocab_size(m); ++v)
    printf(" %a", (double)logits[v]);
  printf("\n");
  moec_model_close(m);
  return 0;
}

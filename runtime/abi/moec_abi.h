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
#define MOEC_ABI_VERSION_MINOR 1

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

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOEC_RUNTIME_ABI_MOEC_ABI_H */

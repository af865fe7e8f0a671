/*===- runtime/abi/moec_bundle.h - The weight bundle file format ------===//
 *
 * `model.moeb`, the weights of a compiled model laid out for streaming
 * experts from storage. Versioned like the ABI: a reader refuses another
 * major version and a newer minor. All integers little-endian.
 *
 *   offset 0          header (struct moec_bundle_header), padded to io_block
 *   tables_offset     metadata (UTF-8 JSON: model, plan, sources), string
 *                     table (tensor names), tensor table, expert table,
 *                     vocabulary (the tokenizer's, in the binary form of
 *                     runtime/tokenizer/Tokenizer.h; may be empty), all
 *                     covered by tables_checksum
 *   resident_offset   the resident tensors, each 64-byte aligned, each with
 *                     its own checksum; the segment starts on an io_block
 *   extents           one extent per (layer, expert), each starting on an
 *                     io_block boundary: gate | up | down, each part 64-byte
 *                     aligned, one checksum per extent -- one expert is one
 *                     read; the file ends on an io_block boundary, so
 *                     whole-block (O_DIRECT) reads stay inside it
 *
 * Checksums are XXH3-64 (seed 0). header_checksum covers the header with
 * that field zero. Types are ggml type ids, or, for moec's own group-wise
 * formats (int2/3/4/8 with an f16 scale, and min when asymmetric, per group
 * of `group` elements), MOEC_BUNDLE_OWN_TYPE(bits, group, asymmetric): an
 * id above every ggml id (the GGUF files moec writes for itself use the
 * same ids). `layout` 0 is GGUF's row-major sequence of blocks; N > 1
 * stores the blocks of N consecutive rows interleaved block by block
 * (block b of row r at (r / N) * N * row_bytes + (b * N + r % N) *
 * block_bytes), as the compiled GEMV kernels read them. Only compiled code
 * reads the values; the runtime moves bytes.
 *===------------------------------------------------------------------===*/
#ifndef MOEC_RUNTIME_ABI_MOEC_BUNDLE_H
#define MOEC_RUNTIME_ABI_MOEC_BUNDLE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOEC_BUNDLE_MAGIC "MOECBNDL"
#define MOEC_BUNDLE_VERSION_MAJOR 1
#define MOEC_BUNDLE_VERSION_MINOR 2
#define MOEC_BUNDLE_TENSOR_ALIGNMENT 64

/* Own group-wise formats: bits 2, 3, 4 or 8; group a multiple of 8 below
 * 4096; asymmetric 0 or 1. */
#define MOEC_BUNDLE_OWN_TYPE_BASE 0x100000u
#define MOEC_BUNDLE_OWN_TYPE(bits, group, asymmetric)                       \
  (MOEC_BUNDLE_OWN_TYPE_BASE | ((uint32_t)(asymmetric) << 16) |             \
   ((uint32_t)(bits) << 12) | (uint32_t)(group))

typedef struct moec_bundle_header {
  char magic[8];
  uint16_t version_major;
  uint16_t version_minor;
  uint32_t header_size;      /* sizeof(moec_bundle_header) */
  uint32_t io_block;         /* extent alignment, a power of two */
  uint32_t vocabulary_size;  /* bytes, after the expert table (1.1) */
  uint64_t file_size;
  uint64_t tables_offset;
  uint64_t metadata_size;    /* JSON at tables_offset */
  uint64_t strings_size;     /* names, after the metadata */
  uint32_t tensor_count;     /* resident tensors, after the strings */
  uint32_t expert_count;     /* layers * experts, after the tensors */
  uint64_t resident_offset;
  uint64_t resident_size;
  uint64_t tables_checksum;  /* metadata + strings + both tables */
  uint64_t header_checksum;
} moec_bundle_header;

typedef struct moec_bundle_tensor {
  uint32_t name_offset;      /* into the string table */
  uint32_t name_size;
  uint32_t type;             /* ggml type id */
  uint32_t layout;
  uint32_t n_dims;
  uint32_t reserved0;
  int64_t dims[4];           /* ggml order: dims[0] innermost */
  uint64_t offset;           /* absolute */
  uint64_t size;
  uint64_t checksum;
} moec_bundle_tensor;

typedef struct moec_bundle_expert {
  uint32_t layer;
  uint32_t expert;
  uint64_t offset;           /* absolute, a multiple of io_block */
  uint64_t size;             /* bytes the three parts span */
  uint64_t checksum;         /* of those bytes */
  uint32_t type[3];          /* gate, up, down */
  uint32_t layout[3];
  uint64_t part_offset[3];   /* from the extent's start */
  uint64_t part_size[3];
} moec_bundle_expert;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOEC_RUNTIME_ABI_MOEC_BUNDLE_H */

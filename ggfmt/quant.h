/* quant.h — the tensor storage types of the .gg container and their
 * quantize / dequantize routines.
 *
 * Owns: the type table (names, block sizes, byte sizes, shape rules), the
 * scalar reference quantize/dequantize of every type, and the fast
 * (SIMD, runtime-dispatched) versions, which must produce bit-identical
 * bytes/floats to the references. Layouts are specified in docs/FORMAT.md.
 *
 * All quantized types are 2-D, row-major [rows = out, cols = in], blocked
 * along cols. Float types (f32, f16, bf16) accept any shape; callers pass
 * rows = product of the leading dimensions, cols = last dimension.
 *
 * Errors: functions returning int give 0 / -1 and fill gg_err (see err.h). */
#ifndef GG_QUANT_H
#define GG_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "ggfmt/err.h"

typedef enum gg_type {
    GG_TYPE_F32 = 0,
    GG_TYPE_F16 = 1,
    GG_TYPE_BF16 = 2,
    GG_TYPE_Q8 = 3,  /* int8, block 64 along cols, f16 absmax/127 scale per block */
    GG_TYPE_NF4 = 4, /* NormalFloat4, block 64, double-quantized absmax */
    GG_TYPE_COUNT
} gg_type;

#define GG_Q8_BLOCK 64
#define GG_NF4_BLOCK 64
#define GG_NF4_GROUP 256 /* blocks per double-quantization group */

/* The 16 NF4 code values (bitsandbytes), index 0..15. */
extern const float gg_nf4_codes[16];
/* Its initializer, for copies that cannot link libgg (the CUDA plugin's
 * constant memory): QLoRA's NF4 levels, the normal quantiles of bitsandbytes. */
#define GG_NF4_CODES_INIT                                                                          \
    {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,                     \
     -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,                    \
     0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,       \
     0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f}

const char *gg_type_name(gg_type t);                 /* "f32", ..., "nf4"; "?" if invalid */
int gg_type_from_name(const char *name, gg_type *out); /* 0 or -1 (no message) */
int gg_type_is_quantized(gg_type t);                  /* q8, nf4 */

/* Checks that a tensor of this shape can be stored as type t; on failure
 * says why ("nf4 needs the last dimension (172) to be a multiple of 64"). */
int gg_type_check_shape(gg_type t, uint32_t ndim, const uint64_t *shape, gg_err *err);

/* Exact byte size of a [rows, cols] tensor of type t (shape must be valid
 * for t), 0 if the size overflows uint64. */
uint64_t gg_type_nbytes(gg_type t, uint64_t rows, uint64_t cols);

/* half / bfloat16 scalar conversions (round to nearest even; NaN kept NaN). */
float gg_f16_to_f32(uint16_t h);
uint16_t gg_f32_to_f16(float f);
float gg_bf16_to_f32(uint16_t h);
uint16_t gg_f32_to_bf16(float f);

/* Quantize/convert a [rows, cols] tensor whose source elements are of
 * src_type (F32, F16 or BF16) into dst (gg_type_nbytes(dst_type) bytes).
 * q8 and nf4 reject non-finite inputs (naming the element index); f16
 * rejects finite values that overflow its range. Fast path. */
int gg_quantize(gg_type dst_type, void *dst, gg_type src_type, const void *src,
                uint64_t rows, uint64_t cols, gg_err *err);

/* Dequantize rows [row0, row0 + nrows) of a [rows, cols] tensor of type t
 * (src points at the start of the whole tensor) into dst (nrows * cols
 * floats). Fast path. */
int gg_dequantize_rows(gg_type t, const void *src, uint64_t rows, uint64_t cols,
                       uint64_t row0, uint64_t nrows, float *dst, gg_err *err);

/* Scalar references: the definition of each type; used by tests. */
int gg_quantize_ref(gg_type dst_type, void *dst, gg_type src_type, const void *src,
                    uint64_t rows, uint64_t cols, gg_err *err);
int gg_dequantize_rows_ref(gg_type t, const void *src, uint64_t rows, uint64_t cols,
                           uint64_t row0, uint64_t nrows, float *dst, gg_err *err);

/* ---- Internal: shared by ggfmt/quant.c and ggfmt/quant_simd.c, and used by
 * tests/benchmarks to pick a code path. Not part of the format API. ---- */

#define GG_SIMD_SCALAR 0
#define GG_SIMD_AVX2 1   /* AVX2 + F16C */
#define GG_SIMD_AVX512 2 /* AVX-512 F/BW/VL + F16C */

/* Caps the SIMD level the fast paths (gg_quantize, gg_dequantize_rows) may
 * use; the default cap is GG_SIMD_AVX512 (the best the CPU has). Returns the
 * level they will now use on this CPU. Set it before converting, not while
 * other threads convert. */
int gg_quant_simd_cap(int level);

/* Block kernels of one SIMD level. Blocks are 64 consecutive elements; the
 * source is src_type (F32, F16 or BF16) at any alignment. Each produces
 * exactly what the scalar reference in quant.c produces. */
typedef struct gg_quant_kernels {
    const char *name; /* "avx2", "avx512" */
    /* amax[b] = max |x| of block b; -1 if any element is not finite. */
    int (*absmax)(gg_type src_type, const void *src, size_t nblk, float *amax);
    /* q8: q (64 per block) and the f16 scales d (little-endian, 2 bytes per
     * block); -1 on a non-finite element or a scale that overflows f16. */
    int (*q8_quantize)(gg_type src_type, const void *src, size_t nblk, int8_t *q, uint8_t *d);
    /* nf4: 32 code bytes per block, given a'_b (aprime) and the 15 midpoints. */
    void (*nf4_encode)(gg_type src_type, const void *src, size_t nblk, const float *aprime,
                       const float mids[15], uint8_t *codes);
    void (*q8_dequant)(const int8_t *q, const uint8_t *d, size_t nblk, float *dst);
    void (*nf4_decode)(const uint8_t *codes, const float *aprime, size_t nblk, float *dst);
    /* n elements from float type st to another float type dt (the scalar
     * conversions above); -1 if a finite value overflows f16. */
    int (*convert)(gg_type dt, gg_type st, const void *src, size_t n, void *dst);
} gg_quant_kernels;

/* The kernels of exactly this level; NULL if not built in (non-x86) or the
 * CPU lacks the instructions. */
const gg_quant_kernels *gg_quant_kernels_at(int level);

#endif

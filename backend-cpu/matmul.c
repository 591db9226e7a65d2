/* matmul.c — the CPU backend's linear algebra (cpu_internal.h): weights
 * (zero-copy), matmul, matmul_dx, gemm and embed.
 *
 * matmul, y[n, rows] = x[n, cols] · Wᵀ, takes one of two paths:
 * - small n (decode): a fused dequantize-and-dot GEMV. Each weight row is
 *   decoded a 64-element block at a time into vector registers (exactly the
 *   floats gg_dequantize_rows_ref gives) and multiplied into up to 8 tokens
 *   at once, so the weight bytes stream from memory once. AVX-512, AVX2+FMA
 *   and scalar versions, picked by cpu_ctx.simd; rows split over the pool.
 * - large n (prefill, training): each thread dequantizes tiles of its rows
 *   into scratch with the ggfmt block kernels and hands them to OpenBLAS
 *   sgemm (f32 weights go to sgemm directly).
 * matmul_dx splits the columns of dx over the threads and runs sgemm on
 * dequantized tiles; gemm is cblas_sgemm split over the threads when big.
 * OpenBLAS itself runs single-threaded (cpu_backend.c). */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "backend-cpu/cpu_internal.h"
#include "backend-cpu/wview.h"

/* Tuning (measured on a 2-core AVX-512 Zen 5 EPYC; -D overrides, for tuning):
 * GEMV_MAX_N: the largest n that takes the GEMV path, per type (f32, f16,
 *   bf16, q8, nf4): below it the GEMV beats dequantize + sgemm, whose packing
 *   of each tile does not pay off for a small n. The crossover depends on
 *   the sgemm kernel OpenBLAS picks: with its AVX2 (Haswell) kernels, which
 *   OpenBLAS 0.3.21 picks on Zen 5, q8 / nf4 cross near n = 96 / 192; with
 *   OPENBLAS_CORETYPE=SkylakeX (AVX-512, ~2x faster sgemm) near 32..48. These
 *   values sit in between;
 * TILE_BYTES: the scratch of one matmul tile (TR rows x cols floats);
 * DX_CW, DX_TR: the dx tile, columns x rows of W;
 * PF_MIN: the least GEMV software-prefetch distance in bytes (gemv512);
 * INT8_MIN_N: with be->int8_matmul, the least n that takes the int8 GEMM
 *   (matmul_int8.c, 16 tokens per pass); below it the int8 GEMV
 *   (gemv_int8.c). Both beat the float paths at every n (bench/matmul.c
 *   int8: 1.4-1.8x at n = 1, 6-7x at n = 512). */
#ifndef GEMV_MAX_N
#define GEMV_MAX_N {12, 32, 32, 48, 48}
#endif
#ifndef TILE_BYTES
#define TILE_BYTES (2 << 20)
#endif
#ifndef DX_CW
#define DX_CW 1024
#endif
#ifndef DX_TR
#define DX_TR 512
#endif
#ifndef PF_MIN
#define PF_MIN 16384
#endif
#ifndef INT8_MIN_N
#define INT8_MIN_N 5
#endif
#define SMALL_WORK 32768 /* multiply-adds below which one thread does it all */

/* ------------------------------------------------------------------------ */
/* Weight views                                                              */

/* Columns [c0, c1) of row r as f32 into dst, with the block kernels k (NULL:
 * scalar). For q8 / nf4, c0 and c1 are multiples of 64. Bit-identical to
 * gg_dequantize_rows_ref. */
static void decode_span(const wview *v, int64_t r, int64_t c0, int64_t c1, float *dst,
                        const gg_quant_kernels *k) {
    size_t i0 = (size_t)(r * v->cols + c0), cnt = (size_t)(c1 - c0);
    switch (v->t) {
    case GG_TYPE_F32: memcpy(dst, v->p + 4 * i0, 4 * cnt); return;
    case GG_TYPE_F16:
    case GG_TYPE_BF16:
        if (k) {
            k->convert(GG_TYPE_F32, v->t, v->p + 2 * i0, cnt, dst);
            return;
        }
        for (size_t i = 0; i < cnt; i++) {
            uint16_t h = rd16(v->p + 2 * (i0 + i));
            dst[i] = v->t == GG_TYPE_F16 ? gg_f16_to_f32(h) : gg_bf16_to_f32(h);
        }
        return;
    case GG_TYPE_Q8: {
        const int8_t *q = (const int8_t *)v->p + i0;
        if (k) {
            k->q8_dequant(q, v->q8d + 2 * (i0 / 64), cnt / 64, dst);
            return;
        }
        for (size_t b = 0; b < cnt / 64; b++) {
            float d = gg_f16_to_f32(rd16(v->q8d + 2 * (i0 / 64 + b)));
            for (int j = 0; j < 64; j++)
                dst[64 * b + j] = (float)q[64 * b + j] * d;
        }
        return;
    }
    case GG_TYPE_NF4: {
        float ap[256];
        for (size_t c = 0; c < cnt / 64; c += 256) { /* a'_b a chunk of blocks at a time */
            size_t m = cnt / 64 - c < 256 ? cnt / 64 - c : 256, gb = i0 / 64 + c;
            for (size_t b = 0; b < m; b++)
                ap[b] = nf4_ap(v, (int64_t)(gb + b));
            const uint8_t *codes = v->p + gb * 32;
            float *out = dst + 64 * c;
            if (k) {
                k->nf4_decode(codes, ap, m, out);
                continue;
            }
            for (size_t b = 0; b < m; b++)
                for (int j = 0; j < 64; j++) {
                    uint8_t by = codes[32 * b + j / 2];
                    out[64 * b + j] = gg_nf4_codes[j & 1 ? by & 15 : by >> 4] * ap[b];
                }
        }
        return;
    }
    default: return;
    }
}

/* ------------------------------------------------------------------------ */
/* The matmul job                                                            */

typedef struct mm_job {
    wview v;
    const float *x; /* [n, cols]; for the nf4 SIMD GEMV, block-permuted (permute_x) */
    float *y;       /* [n, rows] */
    const float *bias;
    float beta;
    int64_t n;
    int simd;
    int64_t tile_rows; /* tiled path */
} mm_job;

/* One output element: y = beta·y + dot + bias (beta 0 ignores old y). */
static inline void put_y(const mm_job *J, int64_t t, int64_t r, float dot) {
    float *y = J->y + t * J->v.rows + r;
    float s = dot + (J->bias ? J->bias[r] : 0.0f);
    *y = J->beta != 0 ? s + J->beta * *y : s;
}

/* Scalar GEMV of rows [r0, r1) for all n tokens: decode a chunk of the row,
 * dot it with up to 16 tokens. Also the fallback when scratch is short. */
static void gemv_scalar(const mm_job *J, int64_t r0, int64_t r1) {
    enum { CH = 512, TT = 16 };
    float wb[CH];
    const int64_t cols = J->v.cols;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t t0 = 0; t0 < J->n; t0 += TT) {
            int64_t nt = J->n - t0 < TT ? J->n - t0 : TT;
            float acc[TT] = {0};
            for (int64_t c0 = 0; c0 < cols; c0 += CH) {
                int64_t c1 = c0 + CH < cols ? c0 + CH : cols;
                decode_span(&J->v, r, c0, c1, wb, NULL);
                for (int64_t t = 0; t < nt; t++) {
                    const float *x = J->x + (t0 + t) * cols + c0;
                    float s = 0;
                    for (int64_t c = 0; c < c1 - c0; c++)
                        s += wb[c] * x[c];
                    acc[t] += s;
                }
            }
            for (int64_t t = 0; t < nt; t++)
                put_y(J, t0 + t, r, acc[t]);
        }
}

/* Weight element c of row r as f32, scalar (the float types' column tail). */
static inline float w_at(const wview *v, int64_t r, int64_t c) {
    size_t i = (size_t)(r * v->cols + c);
    if (v->t == GG_TYPE_F32) return rdf32(v->p + 4 * i);
    uint16_t h = rd16(v->p + 2 * i);
    return v->t == GG_TYPE_F16 ? gg_f16_to_f32(h) : gg_bf16_to_f32(h);
}

/* ------------------------------------------------------------------------ */
/* SIMD GEMV kernels                                                         */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_SIMD 1
#include <immintrin.h>

#include "backend-cpu/nf4_simd.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* Prefetch the line at byte offset off from p. It may lie past the end of
 * the weight (a prefetch never faults), so the address is formed as an
 * integer rather than by pointer arithmetic. */
#define PREFETCH(p, off)                                                                           \
    _mm_prefetch((const char *)((uintptr_t)(p) + (uintptr_t)(off)), _MM_HINT_T0)

/* The nf4 kernels decode a block's codes in an order of their own rather
 * than interleave the nibbles; the GEMV permutes x to match, once per call.
 * AVX-512: vector j of a block holds, in lane i, element 4i + (j ^ 1) (the
 * low, high nibble of byte 2i, then of byte 2i + 1). AVX2: each chunk of 16
 * elements as its 8 even-indexed ones (the high nibbles), then its 8 odd
 * ones. len is a multiple of 64. */
static void permute_x(float *dst, const float *x, int64_t len, int avx512) {
    for (int64_t c = 0; c < len; c += 64)
        for (int j = 0; j < 4; j++)
            for (int i = 0; i < 16; i++)
                dst[c + 16 * j + i] = avx512 ? x[c + 4 * i + (j ^ 1)]
                                             : x[c + 16 * j + 2 * (i & 7) + (i >> 3)];
}

/* ---- AVX-512: a block is 4 vectors of 16 ---- */

#define NT512 8 /* tokens per pass */
#define CHB 64  /* blocks per chunk of a row: the nf4 a'_b of a chunk are computed ahead */

/* Block b (64 elements) of a row into w[0..3]: exactly the dequantized
 * floats. gb is the row-major block index (q8 scale), ap nf4's a'_b. */
AVX512 INLINE void blk512(gg_type T, const wview *v, const uint8_t *row, int64_t b, int64_t gb,
                          float ap, __m512 codes, __m512 w[4]) {
    if (T == GG_TYPE_F32) {
        UNROLL for (int k = 0; k < 4; k++) w[k] = _mm512_loadu_ps(row + 256 * b + 64 * k);
    } else if (T == GG_TYPE_F16) {
        UNROLL for (int k = 0; k < 4; k++)
            w[k] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 128 * b + 32 * k)));
    } else if (T == GG_TYPE_BF16) {
        UNROLL for (int k = 0; k < 4; k++) {
            __m256i h = _mm256_loadu_si256((const __m256i *)(row + 128 * b + 32 * k));
            w[k] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        }
    } else if (T == GG_TYPE_Q8) {
        __m512 d = _mm512_set1_ps(_cvtsh_ss(rd16(v->q8d + 2 * gb)));
        UNROLL for (int k = 0; k < 4; k++) {
            __m128i q = _mm_loadu_si128((const __m128i *)(row + 64 * b + 16 * k));
            w[k] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d);
        }
    } else { /* nf4: scale the 16-entry code table by a'_b, then look codes up */
        __m512 tab = _mm512_mul_ps(codes, _mm512_set1_ps(ap));
        /* lane i holds bytes 2i and 2i + 1 (elements 4i..4i+3); vpermps
         * reads the low 4 bits of each lane: see permute_x for the order */
        __m512i i = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(row + 32 * b)));
        w[0] = _mm512_permutexvar_ps(i, tab);
        w[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(i, 4), tab);
        w[2] = _mm512_permutexvar_ps(_mm512_srli_epi32(i, 16), tab);
        w[3] = _mm512_permutexvar_ps(_mm512_srli_epi32(i, 20), tab);
    }
}

/* Rows [r0, r1) for the NT tokens from t0. With one or two tokens, RB = 4
 * rows go together, sharing the x loads (a short last group repeats its
 * last row and stores it once); NACC accumulators per row and token keep
 * 8 or more independent FMA chains in flight. (Measured on Zen 5.) */
AVX512 INLINE void gemv512(gg_type T, int NT, const mm_job *J, int64_t r0, int64_t r1, int64_t t0) {
    const int RB = NT <= 2 ? 4 : 1, NACC = NT == 2 ? 1 : 2;
    const int64_t cols = J->v.cols, nb = cols / 64;
    const int esz = T == GG_TYPE_F32 ? 4 : T == GG_TYPE_F16 || T == GG_TYPE_BF16 ? 2 : 1;
    const float *x = J->x + t0 * cols;
    const __m512 codes = _mm512_loadu_ps(gg_nf4_codes);
    /* Bytes per block, and the software prefetch distance: the same place in
     * the next group of rows, at least PF_MIN ahead (the hardware prefetcher
     * alone leaves nf4 and q8 up to 1.8x slower when streaming from DRAM). */
    const int bb = T == GG_TYPE_NF4 ? 32 : 64 * esz;
    const int64_t pf = RB * nb * bb > PF_MIN ? RB * nb * bb : PF_MIN;
    for (int64_t r = r0; r < r1; r += RB) {
        int64_t ri[4];
        const uint8_t *row[4];
        __m512 acc[4][NT512][2];
        UNROLL for (int i = 0; i < RB; i++) {
            ri[i] = r + i < r1 ? r + i : r1 - 1;
            row[i] = J->v.p + (T == GG_TYPE_NF4 ? ri[i] * cols / 2 : ri[i] * cols * esz);
            UNROLL for (int t = 0; t < NT; t++) UNROLL for (int a = 0; a < NACC; a++)
                acc[i][t][a] = _mm512_setzero_ps();
        }
        for (int64_t c = 0; c < nb; c += CHB) {
            int64_t m = nb - c < CHB ? nb - c : CHB;
            float ap[4][CHB];
            if (T == GG_TYPE_NF4)
                UNROLL for (int i = 0; i < RB; i++) nf4_aps512(&J->v, ri[i] * nb + c, m, ap[i]);
            for (int64_t b = c; b < c + m; b++) {
                if (bb >= 64 || !(b & 1)) /* see pf: once per 64-byte line */
                    UNROLL for (int i = 0; i < RB; i++)
                        UNROLL for (int l = 0; l < (bb + 63) / 64; l++)
                            PREFETCH(row[i], b * bb + pf + 64 * l);
                __m512 xv[NT512][4]; /* loaded once for the RB rows */
                if (RB > 1) UNROLL for (int t = 0; t < NT; t++) UNROLL for (int k = 0; k < 4; k++)
                    xv[t][k] = _mm512_loadu_ps(x + t * cols + 64 * b + 16 * k);
                UNROLL for (int i = 0; i < RB; i++) {
                    __m512 w[4];
                    blk512(T, &J->v, row[i], b, ri[i] * nb + b, T == GG_TYPE_NF4 ? ap[i][b - c] : 0,
                           codes, w);
                    UNROLL for (int k = 0; k < 4; k++) UNROLL for (int t = 0; t < NT; t++) {
                        __m512 xx = RB > 1 ? xv[t][k]
                                             : _mm512_loadu_ps(x + t * cols + 64 * b + 16 * k);
                        acc[i][t][k % NACC] = _mm512_fmadd_ps(w[k], xx, acc[i][t][k % NACC]);
                    }
                }
            }
        }
        UNROLL for (int i = 0; i < RB; i++) {
            if (r + i >= r1) break;
            UNROLL for (int t = 0; t < NT; t++) {
                UNROLL for (int a = 1; a < NACC; a++)
                    acc[i][t][0] = _mm512_add_ps(acc[i][t][0], acc[i][t][a]);
                float s = _mm512_reduce_add_ps(acc[i][t][0]);
                for (int64_t c = 64 * nb; c < cols; c++) /* float types: cols % 64 */
                    s += w_at(&J->v, ri[i], c) * x[t * cols + c];
                put_y(J, t0 + t, ri[i], s);
            }
        }
    }
}

#define GEMV_CASES(FN, T, nt, ...)                                                                 \
    switch (nt) {                                                                                  \
    case 1: FN(T, 1, __VA_ARGS__); break;                                                          \
    case 2: FN(T, 2, __VA_ARGS__); break;                                                          \
    case 3: FN(T, 3, __VA_ARGS__); break;                                                          \
    case 4: FN(T, 4, __VA_ARGS__); break;                                                          \
    case 5: FN(T, 5, __VA_ARGS__); break;                                                          \
    case 6: FN(T, 6, __VA_ARGS__); break;                                                          \
    case 7: FN(T, 7, __VA_ARGS__); break;                                                          \
    default: FN(T, 8, __VA_ARGS__); break;                                                         \
    }

AVX512 static void gemv512_f32(const mm_job *J, int64_t r0, int64_t r1, int64_t t0, int nt) {
    GEMV_CASES(gemv512, GG_TYPE_F32, nt, J, r0, r1, t0)
}
AVX512 static void gemv512_f16(const mm_job *J, int64_t r0, int64_t r1, int64_t t0, int nt) {
    GEMV_CASES(gemv512, GG_TYPE_F16, nt, J, r0, r1, t0)
}
AVX512 static void gemv512_bf16(const mm_job *J, int64_t r0, int64_t r1, int64_t t0, int nt) {
    GEMV_CASES(gemv512, GG_TYPE_BF16, nt, J, r0, r1, t0)
}
AVX512 static void gemv512_q8(const mm_job *J, int64_t r0, int64_t r1, int64_t t0, int nt) {
    GEMV_CASES(gemv512, GG_TYPE_Q8, nt, J, r0, r1, t0)
}
AVX512 static void gemv512_nf4(const mm_job *J, int64_t r0, int64_t r1, int64_t t0, int nt) {
    GEMV_CASES(gemv512, GG_TYPE_NF4, nt, J, r0, r1, t0)
}

/* ---- AVX2 + FMA: a block is 8 vectors of 8 ---- */

#define NT256 4

/* 16-entry lookup: two 8-entry permutes (low 3 bits), chosen by bit 3. */
AVX2 INLINE __m256 lut16_256(__m256i idx, __m256 lo, __m256 hi) {
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx),
                            _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

AVX2 INLINE void blk256(gg_type T, const wview *v, const uint8_t *row, int64_t b, int64_t gb,
                        float ap, __m256 clo, __m256 chi, __m256 w[8]) {
    if (T == GG_TYPE_F32) {
        UNROLL for (int k = 0; k < 8; k++)
            w[k] = _mm256_loadu_ps((const float *)(row + 256 * b + 32 * k));
    } else if (T == GG_TYPE_F16) {
        UNROLL for (int k = 0; k < 8; k++)
            w[k] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 128 * b + 16 * k)));
    } else if (T == GG_TYPE_BF16) {
        UNROLL for (int k = 0; k < 8; k++) {
            __m128i h = _mm_loadu_si128((const __m128i *)(row + 128 * b + 16 * k));
            w[k] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        }
    } else if (T == GG_TYPE_Q8) {
        __m256 d = _mm256_set1_ps(_cvtsh_ss(rd16(v->q8d + 2 * gb)));
        UNROLL for (int k = 0; k < 8; k++) {
            __m128i q = _mm_loadl_epi64((const __m128i *)(row + 64 * b + 8 * k));
            w[k] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
        }
    } else {
        __m256 vap = _mm256_set1_ps(ap), lo = _mm256_mul_ps(clo, vap), hi = _mm256_mul_ps(chi, vap);
        UNROLL for (int k = 0; k < 4; k++) {
            __m128i by = _mm_loadl_epi64((const __m128i *)(row + 32 * b + 8 * k));
            __m256i i = _mm256_cvtepu8_epi32(by);
            w[2 * k] = lut16_256(_mm256_srli_epi32(i, 4), lo, hi);
            w[2 * k + 1] = lut16_256(i, lo, hi);
        }
    }
}

/* As gemv512 with 16 registers: RB rows at a time. */
AVX2 INLINE void gemv256(gg_type T, int NT, const mm_job *J, int64_t r0, int64_t r1, int64_t t0) {
    const int RB = NT == 1 ? 2 : 1, NACC = NT <= 2 ? 4 : 2;
    const int64_t cols = J->v.cols, nb = cols / 64;
    const int esz = T == GG_TYPE_F32 ? 4 : T == GG_TYPE_F16 || T == GG_TYPE_BF16 ? 2 : 1;
    const float *x = J->x + t0 * cols;
    const __m256 clo = _mm256_loadu_ps(gg_nf4_codes), chi = _mm256_loadu_ps(gg_nf4_codes + 8);
    const int bb = T == GG_TYPE_NF4 ? 32 : 64 * esz; /* as in gemv512 */
    const int64_t pf = RB * nb * bb > PF_MIN ? RB * nb * bb : PF_MIN;
    for (int64_t r = r0; r < r1; r += RB) {
        int64_t ri[2];
        const uint8_t *row[2];
        __m256 acc[2][NT256][4];
        UNROLL for (int i = 0; i < RB; i++) {
            ri[i] = r + i < r1 ? r + i : r1 - 1;
            row[i] = J->v.p + (T == GG_TYPE_NF4 ? ri[i] * cols / 2 : ri[i] * cols * esz);
            UNROLL for (int t = 0; t < NT; t++) UNROLL for (int a = 0; a < NACC; a++)
                acc[i][t][a] = _mm256_setzero_ps();
        }
        for (int64_t c = 0; c < nb; c += CHB) {
            int64_t m = nb - c < CHB ? nb - c : CHB;
            float ap[2][CHB];
            if (T == GG_TYPE_NF4)
                UNROLL for (int i = 0; i < RB; i++) for (int64_t b = 0; b < m; b++)
                    ap[i][b] = nf4_ap(&J->v, ri[i] * nb + c + b);
            for (int64_t b = c; b < c + m; b++)
                UNROLL for (int i = 0; i < RB; i++) {
                    UNROLL for (int l = 0; l < (bb + 63) / 64; l++)
                        PREFETCH(row[i], b * bb + pf + 64 * l);
                    __m256 w[8];
                    blk256(T, &J->v, row[i], b, ri[i] * nb + b, T == GG_TYPE_NF4 ? ap[i][b - c] : 0,
                           clo, chi, w);
                    UNROLL for (int k = 0; k < 8; k++) UNROLL for (int t = 0; t < NT; t++) {
                        __m256 xv = _mm256_loadu_ps(x + t * cols + 64 * b + 8 * k);
                        acc[i][t][k % NACC] = _mm256_fmadd_ps(w[k], xv, acc[i][t][k % NACC]);
                    }
                }
        }
        UNROLL for (int i = 0; i < RB; i++) {
            if (r + i >= r1) break;
            UNROLL for (int t = 0; t < NT; t++) {
                UNROLL for (int a = 1; a < NACC; a++)
                    acc[i][t][0] = _mm256_add_ps(acc[i][t][0], acc[i][t][a]);
                __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc[i][t][0]),
                                       _mm256_extractf128_ps(acc[i][t][0], 1));
                s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
                s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
                float s = _mm_cvtss_f32(s4);
                for (int64_t c = 64 * nb; c < cols; c++)
                    s += w_at(&J->v, ri[i], c) * x[t * cols + c];
                put_y(J, t0 + t, ri[i], s);
            }
        }
    }
}

#define GEMV_CASES4(FN, T, nt, ...)                                                                \
    switch (nt) {                                                                                  \
    case 1: FN(T, 1, __VA_ARGS__); break;                                                          \
    case 2: FN(T, 2, __VA_ARGS__); break;                                                          \
    case 3: FN(T, 3, __VA_ARGS__); break;                                                          \
    default: FN(T, 4, __VA_ARGS__); break;                                                         \
    }

AVX2 static void gemv256_f32(const mm_job *J, int64_t r0, int64_t r1, int64_t t0, int nt) {
    GEMV_CASES4(gemv256, GG_TYPE_F32, nt, J, r0, r1, t0)
}
AVX2 static void gemv256_f16(const mm_job *J, int64_t r0, int64_t r1, int64_t t0, int nt) {
    GEMV_CASES4(gemv256, GG_TYPE_F16, nt, J, r0, r1, t0)
}
AVX2 static void gemv256_bf16(const mm_job *J, int64_t r0, int64_t r1, int64_t t0, int nt) {
    GEMV_CASES4(gemv256, GG_TYPE_BF16, nt, J, r0, r1, t0)
}
AVX2 static void gemv256_q8(const mm_job *J, int64_t r0, int64_t r1, int64_t t0, int nt) {
    GEMV_CASES4(gemv256, GG_TYPE_Q8, nt, J, r0, r1, t0)
}
AVX2 static void gemv256_nf4(const mm_job *J, int64_t r0, int64_t r1, int64_t t0, int nt) {
    GEMV_CASES4(gemv256, GG_TYPE_NF4, nt, J, r0, r1, t0)
}

typedef void (*gemv_fn)(const mm_job *J, int64_t r0, int64_t r1, int64_t t0, int nt);

static const gemv_fn gemv512_by_type[GG_TYPE_COUNT] = {gemv512_f32, gemv512_f16, gemv512_bf16,
                                                       gemv512_q8, gemv512_nf4};
static const gemv_fn gemv256_by_type[GG_TYPE_COUNT] = {gemv256_f32, gemv256_f16, gemv256_bf16,
                                                       gemv256_q8, gemv256_nf4};

/* The level the GEMV kernels run at: the backend's, less AVX2 on a CPU
 * without FMA (the ggfmt kernels need only AVX2 + F16C). */
static int gemv_level(int simd) {
    if (simd == GG_SIMD_AVX2 && !__builtin_cpu_supports("fma")) return GG_SIMD_SCALAR;
    return simd;
}

#else /* no x86 SIMD: scalar only */
#define HAVE_X86_SIMD 0
static int gemv_level(int simd) { return GG_SIMD_SCALAR; }
#endif

/* ------------------------------------------------------------------------ */
/* matmul                                                                    */

static void run(gg_backend *be, void (*fn)(void *, int, int), void *arg, double work) {
    if (work < SMALL_WORK) fn(arg, 0, 1);
    else gg_pool_run(cpu_ctx_of(be)->pool, fn, arg);
}

/* GEMV: thread ith takes a share of the rows; tokens go in passes of up to
 * NT at a time over blocks of rows (about 128 KiB of weights, a multiple of
 * the kernels' 4-row groups) that stay in cache between passes. */
static void gemv_worker(void *arg, int ith, int nth) {
    const mm_job *J = arg;
    int64_t lo, hi;
    gg_pool_split(J->v.rows, 16, ith, nth, &lo, &hi);
    if (lo >= hi) return;
#if HAVE_X86_SIMD
    if (J->simd != GG_SIMD_SCALAR) {
        int avx512 = J->simd == GG_SIMD_AVX512, ntmax = avx512 ? NT512 : NT256;
        gemv_fn fn = (avx512 ? gemv512_by_type : gemv256_by_type)[J->v.t];
        int64_t row_bytes = (int64_t)gg_type_nbytes(J->v.t, 1, (uint64_t)J->v.cols);
        int64_t rb = J->n > ntmax ? ((128 << 10) / row_bytes + 4) & ~(int64_t)3 : hi - lo;
        for (int64_t r0 = lo; r0 < hi; r0 += rb) {
            int64_t r1 = r0 + rb < hi ? r0 + rb : hi;
            for (int64_t t0 = 0; t0 < J->n; t0 += ntmax)
                fn(J, r0, r1, t0, (int)(J->n - t0 < ntmax ? J->n - t0 : ntmax));
        }
        return;
    }
#endif
    gemv_scalar(J, lo, hi);
}

/* Large n, quantized or half weights: dequantize TR rows at a time into
 * scratch, sgemm them against all of x. */
static void tiled_worker(void *arg, int ith, int nth) {
    const mm_job *J = arg;
    const int64_t rows = J->v.rows, cols = J->v.cols, TR = J->tile_rows;
    int64_t lo, hi;
    gg_pool_split(rows, TR, ith, nth, &lo, &hi);
    if (lo >= hi) return;
    float *tile = NULL;
    if (posix_memalign((void **)&tile, 64, (size_t)(TR * cols) * sizeof *tile) != 0) {
        gemv_scalar(J, lo, hi); /* out of memory: slow but right */
        return;
    }
    const gg_quant_kernels *k = gg_quant_kernels_at(J->simd);
    for (int64_t r0 = lo; r0 < hi; r0 += TR) {
        int64_t nr = hi - r0 < TR ? hi - r0 : TR;
        for (int64_t r = 0; r < nr; r++)
            decode_span(&J->v, r0 + r, 0, cols, tile + r * cols, k);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)J->n, (int)nr, (int)cols, 1.0f,
                    J->x, (int)cols, tile, (int)cols, J->beta, J->y + r0, (int)rows);
        if (J->bias)
            for (int64_t t = 0; t < J->n; t++)
                for (int64_t r = r0; r < r0 + nr; r++)
                    J->y[t * rows + r] += J->bias[r];
    }
    free(tile);
}

/* Large n, f32 weights: sgemm on each thread's share of the rows. */
static void f32_worker(void *arg, int ith, int nth) {
    const mm_job *J = arg;
    const int64_t rows = J->v.rows, cols = J->v.cols;
    int64_t lo, hi;
    gg_pool_split(rows, 16, ith, nth, &lo, &hi);
    if (lo >= hi) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)J->n, (int)(hi - lo), (int)cols, 1.0f,
                J->x, (int)cols, (const float *)J->v.p + lo * cols, (int)cols, J->beta, J->y + lo,
                (int)rows);
    if (J->bias)
        for (int64_t t = 0; t < J->n; t++)
            for (int64_t r = lo; r < hi; r++)
                J->y[t * rows + r] += J->bias[r];
}

void cpu_matmul(gg_backend *be, float *y, const float *x, int64_t n, const gg_weight *w,
                const float *bias, float beta) {
    if (n <= 0 || w->rows <= 0) return;
    mm_job J = {.v = view_of(w), .x = x, .y = y, .bias = bias, .beta = beta, .n = n,
                .simd = cpu_ctx_of(be)->simd};
    double work = (double)n * (double)w->rows * (double)w->cols;
    static const int64_t gemv_max_n[GG_TYPE_COUNT] = GEMV_MAX_N;
    if (be->int8_matmul && work >= SMALL_WORK &&
        (n >= INT8_MIN_N ? cpu_matmul_int8(be, y, x, n, w, bias, beta)
                         : cpu_gemv_int8(be, y, x, n, w, bias, beta)) == 0)
        return;
    if (n <= gemv_max_n[w->type]) {
        J.simd = gemv_level(J.simd);
        float *xp = NULL;
#if HAVE_X86_SIMD
        if (w->type == GG_TYPE_NF4 && J.simd != GG_SIMD_SCALAR) {
            /* 64-byte aligned: a 512-bit load across two lines costs two */
            if (posix_memalign((void **)&xp, 64, (size_t)(n * w->cols) * sizeof *xp) == 0) {
                permute_x(xp, x, n * w->cols, J.simd == GG_SIMD_AVX512);
                J.x = xp;
            } else {
                xp = NULL;
                J.simd = GG_SIMD_SCALAR;
            }
        }
#endif
        run(be, gemv_worker, &J, work);
        free(xp);
        return;
    }
    if (w->type == GG_TYPE_F32) {
        run(be, f32_worker, &J, work);
        return;
    }
    int64_t tr = TILE_BYTES / (4 * w->cols);
    tr = tr < 16 ? 16 : tr > 1024 ? 1024 : tr & ~(int64_t)15;
    int nth = gg_pool_size(cpu_ctx_of(be)->pool);
    while (tr > 16 && tr * nth > w->rows) tr /= 2; /* give every thread some rows */
    J.tile_rows = tr;
    run(be, tiled_worker, &J, work);
}

/* ------------------------------------------------------------------------ */
/* matmul_dx: dx[n, cols] = beta·dx + dy[n, rows] · W                        */

typedef struct dx_job {
    wview v;
    float *dx;
    const float *dy;
    int64_t n;
    float beta;
    int simd;
} dx_job;

/* Thread ith takes a share of the columns of dx (whole 64-column blocks),
 * so no two threads write the same elements; it dequantizes W a tile of
 * [DX_TR rows, DX_CW cols] at a time and accumulates dy · tile. */
static void dx_worker(void *arg, int ith, int nth) {
    const dx_job *D = arg;
    const int64_t rows = D->v.rows, cols = D->v.cols;
    int64_t lo, hi;
    gg_pool_split(cols, 64, ith, nth, &lo, &hi);
    if (lo >= hi) return;
    int64_t cw = hi - lo < DX_CW ? hi - lo : DX_CW, tr = DX_TR;
    float *tile = NULL, small[64];
    if (posix_memalign((void **)&tile, 64, (size_t)(tr * cw) * sizeof *tile) != 0) {
        tile = small; /* out of memory: one row of 64 columns at a time */
        cw = 64;
        tr = 1;
    }
    const gg_quant_kernels *k = gg_quant_kernels_at(D->simd);
    for (int64_t c0 = lo; c0 < hi; c0 += cw) {
        int64_t c1 = c0 + cw < hi ? c0 + cw : hi;
        for (int64_t r0 = 0; r0 < rows; r0 += tr) {
            int64_t nr = rows - r0 < tr ? rows - r0 : tr;
            for (int64_t r = 0; r < nr; r++)
                decode_span(&D->v, r0 + r, c0, c1, tile + r * (c1 - c0), k);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)D->n, (int)(c1 - c0),
                        (int)nr, 1.0f, D->dy + r0, (int)rows, tile, (int)(c1 - c0),
                        r0 == 0 ? D->beta : 1.0f, D->dx + c0, (int)cols);
        }
    }
    if (tile != small) free(tile);
}

void cpu_matmul_dx(gg_backend *be, float *dx, const float *dy, int64_t n, const gg_weight *w,
                   float beta) {
    if (n <= 0) return;
    if (w->type == GG_TYPE_F32) {
        cpu_gemm(be, 0, 0, n, w->cols, w->rows, 1.0f, dy, w->rows, w->data, w->cols, beta, dx,
                 w->cols);
        return;
    }
    dx_job D = {.v = view_of(w), .dx = dx, .dy = dy, .n = n, .beta = beta,
                .simd = cpu_ctx_of(be)->simd};
    run(be, dx_worker, &D, (double)n * (double)w->rows * (double)w->cols);
}

/* ------------------------------------------------------------------------ */
/* gemm                                                                      */

typedef struct gemm_job {
    int ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int64_t lda, ldb, ldc;
} gemm_job;

static void sgemm(const gemm_job *G, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const float *A = G->A + (G->ta ? m0 : m0 * G->lda);
    const float *B = G->B + (G->tb ? n0 * G->ldb : n0);
    cblas_sgemm(CblasRowMajor, G->ta ? CblasTrans : CblasNoTrans, G->tb ? CblasTrans : CblasNoTrans,
                (int)(m1 - m0), (int)(n1 - n0), (int)G->K, G->alpha, A, (int)G->lda, B, (int)G->ldb,
                G->beta, G->C + m0 * G->ldc + n0, (int)G->ldc);
}

/* Split the larger of M and N over the threads. */
static void gemm_worker(void *arg, int ith, int nth) {
    const gemm_job *G = arg;
    int64_t lo, hi;
    if (G->M >= G->N) {
        gg_pool_split(G->M, 16, ith, nth, &lo, &hi);
        if (lo < hi) sgemm(G, lo, hi, 0, G->N);
    } else {
        gg_pool_split(G->N, 16, ith, nth, &lo, &hi);
        if (lo < hi) sgemm(G, 0, G->M, lo, hi);
    }
}

void cpu_gemm(gg_backend *be, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* C = beta·C (cblas would reject lda = 0) */
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < N; j++)
                C[m * ldc + j] = beta != 0 ? beta * C[m * ldc + j] : 0.0f;
        return;
    }
    gemm_job G = {ta, tb, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc};
    double work = (double)M * (double)N * (double)K;
    if (work < 1e6) gemm_worker(&G, 0, 1);
    else run(be, gemm_worker, &G, work);
}

/* ------------------------------------------------------------------------ */
/* embed                                                                     */

typedef struct embed_job {
    wview v;
    float *out;
    const int32_t *ids;
    int64_t n;
    float scale;
    int simd;
} embed_job;

static void embed_worker(void *arg, int ith, int nth) {
    const embed_job *E = arg;
    const int64_t cols = E->v.cols;
    const gg_quant_kernels *k = gg_quant_kernels_at(E->simd);
    int64_t lo, hi;
    gg_pool_split(E->n, 1, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *o = E->out + i * cols;
        decode_span(&E->v, E->ids[i], 0, cols, o, k);
        for (int64_t c = 0; c < cols; c++)
            o[c] = E->scale * o[c];
    }
}

void cpu_embed(gg_backend *be, float *out, const gg_weight *w, const int32_t *ids, int64_t n,
               float scale) {
    if (n <= 0) return;
    embed_job E = {.v = view_of(w), .out = out, .ids = ids, .n = n, .scale = scale,
                   .simd = cpu_ctx_of(be)->simd};
    run(be, embed_worker, &E, (double)n * (double)w->cols * 8);
}

/* ------------------------------------------------------------------------ */
/* Weights                                                                   */

int cpu_weight_init(gg_backend *be, gg_weight *w, gg_type t, int64_t rows, int64_t cols,
                    const void *host_data, gg_err *err) {
    memset(w, 0, sizeof *w);
    if (rows <= 0 || cols <= 0)
        return gg_errf(err, "weight: rows (%lld) and cols (%lld) must be positive", (long long)rows,
                       (long long)cols);
    uint64_t shape[2] = {(uint64_t)rows, (uint64_t)cols};
    if (gg_type_check_shape(t, 2, shape, err))
        return gg_err_prefix(err, "weight [%lld, %lld]", (long long)rows, (long long)cols);
    if (cols > INT32_MAX || rows > INT32_MAX)
        return gg_errf(err, "weight [%lld, %lld]: a dimension exceeds 2^31 - 1 (BLAS limit)",
                       (long long)rows, (long long)cols);
    if (!host_data)
        return gg_errf(err, "weight [%lld, %lld]: no data", (long long)rows, (long long)cols);
    w->type = t;
    w->rows = rows;
    w->cols = cols;
    w->data = host_data; /* zero-copy: used in place */
    w->priv = NULL;
    return 0;
}

void cpu_weight_free(gg_backend *be, gg_weight *w) {
    if (!w) return;
    w->data = NULL;
    w->priv = NULL;
}

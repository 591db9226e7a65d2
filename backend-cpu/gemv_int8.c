/* gemv_int8.c — the int8 matmul (gg_backend.int8_matmul, ref.h
 * gg_ref_matmul_int8) for 1 to 4 tokens: decode. The same 8-bit values and
 * exact integer dot products per 64-column block as matmul_int8.c, laid out
 * for streaming the weights once: lanes run along a row, so a block's 64
 * weights are one vector, multiplied by the token's 64 quantized
 * activations with one vpdpbusd. Only the float sum differs from the
 * reference: each lane accumulates its share of every block's dot times the
 * block's scale, and the lanes are added at the end (the tests allow 2e-5 of
 * the magnitude for that).
 *
 * vpdpbusd multiplies unsigned by signed bytes: the weights are made
 * unsigned (w + 128; nf4 through a table of its int8 codes + 128) and each
 * block's accumulator starts at −128·Σx in lane 0. nf4 rows are expanded
 * without interleaving: a block's vector holds its 32 high nibbles (elements
 * 0, 2, .., 62) then its 32 low nibbles (1, 3, .., 63), and x is quantized
 * in that order. */
#include <stdlib.h>
#include <string.h>

#include "backend-cpu/cpu_internal.h"
#include "backend-cpu/wview.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <float.h>
#include <immintrin.h>

#include "backend-cpu/nf4_simd.h"

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c")))
#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")
#define GV_MAX_N 4 /* tokens (with more, matmul_int8.c's GEMM is faster: bench/matmul.c int8) */
#define GV_RB 4    /* rows at a time, sharing the activation loads */
#ifndef GV_PF_MIN
#define GV_PF_MIN 16384 /* least software-prefetch distance in bytes (as matmul.c) */
#endif

typedef struct gv_job {
    wview v;
    float *y;
    const float *bias;
    float beta;
    int64_t n, nb;
    const int8_t *xq;     /* [n][cols] quantized x (nf4: the block order above) */
    const int32_t *xinit; /* [n][nb][16]: lane 0 = −128·Σq of the block, others 0 */
    const float *xd;      /* [n][nb] scales d (NaN: the block had a NaN or an inf) */
} gv_job;

/* Token t's row x quantized per block as the reference does (nf4: into the
 * block order above), with the accumulator starts and scales. */
VNNI static void quant_x(const float *x, int64_t cols, int nf4, int8_t *q, int32_t *init, float *d) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int64_t b = 0; b < cols / 64; b++) {
        __m512 v[4], m = _mm512_setzero_ps();
        __mmask16 bad = 0;
        UNROLL for (int k = 0; k < 4; k++) {
            v[k] = _mm512_loadu_ps(x + 64 * b + 16 * k);
            __m512 a = _mm512_abs_ps(v[k]);
            bad |= _mm512_cmp_ps_mask(a, _mm512_set1_ps(FLT_MAX), _CMP_NLE_UQ);
            m = _mm512_max_ps(m, a);
        }
        if (nf4) { /* elements 0, 2, .., 62, then 1, 3, .., 63 */
            __m512 e0 = _mm512_permutex2var_ps(v[0], even, v[1]), e1 = _mm512_permutex2var_ps(v[2], even, v[3]);
            __m512 o0 = _mm512_permutex2var_ps(v[0], odd, v[1]), o1 = _mm512_permutex2var_ps(v[2], odd, v[3]);
            v[0] = e0, v[1] = e1, v[2] = o0, v[3] = o1;
        }
        float amax = _mm512_reduce_max_ps(m);
        __m512i qv = _mm512_setzero_si512();
        if (bad) {
            d[b] = __builtin_nanf("");
        } else {
            d[b] = amax / 127.0f;
            __m512 id = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
            __m128i b8[4];
            UNROLL for (int k = 0; k < 4; k++)
                b8[k] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v[k], id)));
            qv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(b8[1], b8[0])),
                                    _mm256_set_m128i(b8[3], b8[2]), 1);
        }
        _mm512_storeu_si512(q + 64 * b, qv);
        /* Σq: the bytes times 1 (vpdpbusd wants one unsigned operand) */
        int32_t s = _mm512_reduce_add_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), qv));
        _mm512_storeu_si512(init + 16 * b, _mm512_maskz_mov_epi32(1, _mm512_set1_epi32(-128 * s)));
    }
}

/* Rows [r0, r1) for NT tokens. */
VNNI INLINE void gv_rows(gg_type T, int NT, const gv_job *J, int64_t r0, int64_t r1) {
    const int RB = GV_RB;
    const int64_t cols = J->v.cols, nb = J->nb;
    const int bb = T == GG_TYPE_NF4 ? 32 : 64; /* weight bytes per block */
    const int64_t pf = RB * nb * bb > GV_PF_MIN ? RB * nb * bb : GV_PF_MIN;
    const __m512i tab = _mm512_broadcast_i32x4(_mm_xor_si128(nf4_i8_table(), _mm_set1_epi8((char)0x80)));
    const __m512i low4 = _mm512_set1_epi8(15), flip = _mm512_set1_epi8((char)0x80);
    for (int64_t r = r0; r < r1; r += RB) {
        int64_t ri[GV_RB];
        const uint8_t *row[GV_RB];
        __m512 fa[GV_RB][GV_MAX_N];
        UNROLL for (int i = 0; i < RB; i++) {
            ri[i] = r + i < r1 ? r + i : r1 - 1;
            row[i] = J->v.p + ri[i] * nb * bb;
            UNROLL for (int t = 0; t < NT; t++) fa[i][t] = _mm512_setzero_ps();
        }
        for (int64_t c = 0; c < nb; c += 16) {
            int m = nb - c < 16 ? (int)(nb - c) : 16;
            __mmask16 mk = (__mmask16)((1u << m) - 1);
            float s[GV_RB][GV_MAX_N][16]; /* d·dw of each block */
            UNROLL for (int i = 0; i < RB; i++) {
                __m512 dw;
                if (T == GG_TYPE_NF4) {
                    float ap[16];
                    nf4_aps512(&J->v, ri[i] * nb + c, m, ap);
                    dw = _mm512_div_ps(_mm512_maskz_loadu_ps(mk, ap), _mm512_set1_ps(127.0f));
                } else {
                    dw = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, J->v.q8d + 2 * (ri[i] * nb + c)));
                }
                UNROLL for (int t = 0; t < NT; t++)
                    _mm512_storeu_ps(s[i][t], _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, J->xd + t * nb + c), dw));
            }
            for (int k = 0; k < m; k++) {
                int64_t b = c + k;
                __m512i xv[GV_MAX_N];
                UNROLL for (int t = 0; t < NT; t++) xv[t] = _mm512_loadu_si512(J->xq + t * cols + 64 * b);
                UNROLL for (int i = 0; i < RB; i++) {
                    _mm_prefetch((const char *)((uintptr_t)row[i] + (uintptr_t)(b * bb + pf)), _MM_HINT_T0);
                    __m512i w;
                    if (T == GG_TYPE_NF4) {
                        __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(row[i] + 32 * b)));
                        raw = _mm512_mask_srli_epi16(raw, 0x0000ffffu, raw, 4); /* low half: high nibbles */
                        w = _mm512_shuffle_epi8(tab, _mm512_and_si512(raw, low4));
                    } else {
                        w = _mm512_xor_si512(_mm512_loadu_si512(row[i] + 64 * b), flip);
                    }
                    UNROLL for (int t = 0; t < NT; t++) {
                        __m512i acc = _mm512_loadu_si512(J->xinit + (t * nb + b) * 16);
                        acc = _mm512_dpbusd_epi32(acc, w, xv[t]);
                        fa[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(s[i][t][k]), fa[i][t]);
                    }
                }
            }
        }
        UNROLL for (int i = 0; i < RB; i++) {
            if (r + i >= r1) break;
            UNROLL for (int t = 0; t < NT; t++) {
                float v = _mm512_reduce_add_ps(fa[i][t]) + (J->bias ? J->bias[ri[i]] : 0.0f);
                float *y = J->y + t * J->v.rows + ri[i];
                *y = J->beta != 0 ? v + J->beta * *y : v;
            }
        }
    }
}

#define GV_CASES(T)                                                                                \
    switch (J->n) {                                                                                \
    case 1: gv_rows(T, 1, J, lo, hi); break;                                                       \
    case 2: gv_rows(T, 2, J, lo, hi); break;                                                       \
    case 3: gv_rows(T, 3, J, lo, hi); break;                                                       \
    default: gv_rows(T, 4, J, lo, hi); break;                                                      \
    }

VNNI static void gv_worker(void *arg, int ith, int nth) {
    const gv_job *J = arg;
    int64_t lo, hi;
    gg_pool_split(J->v.rows, GV_RB, ith, nth, &lo, &hi);
    if (lo >= hi) return;
    if (J->v.t == GG_TYPE_NF4) GV_CASES(GG_TYPE_NF4)
    else GV_CASES(GG_TYPE_Q8)
}

int cpu_gemv_int8(gg_backend *be, float *y, const float *x, int64_t n, const gg_weight *w,
                  const float *bias, float beta) {
    if ((w->type != GG_TYPE_Q8 && w->type != GG_TYPE_NF4) || w->cols % 64 || n < 1 || n > GV_MAX_N ||
        !cpu_int8_supported() || cpu_ctx_of(be)->simd != GG_SIMD_AVX512)
        return -1;
    gv_job J = {.v = view_of(w), .y = y, .bias = bias, .beta = beta, .n = n, .nb = w->cols / 64};
    int8_t *xq = malloc((size_t)(n * w->cols));
    int32_t *xinit = malloc((size_t)(n * J.nb * 16) * sizeof *xinit);
    float *xd = malloc((size_t)(n * J.nb) * sizeof *xd);
    int ok = xq && xinit && xd;
    if (ok) {
        for (int64_t t = 0; t < n; t++)
            quant_x(x + t * w->cols, w->cols, w->type == GG_TYPE_NF4, xq + t * w->cols, xinit + t * J.nb * 16,
                    xd + t * J.nb);
        J.xq = xq, J.xinit = xinit, J.xd = xd;
        gg_pool_run(cpu_ctx_of(be)->pool, gv_worker, &J);
    }
    free(xq);
    free(xinit);
    free(xd);
    return ok ? 0 : -1; /* out of memory: the float path runs instead */
}

#else /* no x86 SIMD: the float path runs */
int cpu_gemv_int8(gg_backend *be, float *y, const float *x, int64_t n, const gg_weight *w,
                  const float *bias, float beta) {
    return -1;
}
#endif

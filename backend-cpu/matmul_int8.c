/* matmul_int8.c — the int8 form of the CPU matmul (gg_backend.int8_matmul)
 * for many tokens on q8 and nf4 weights: activations quantized to int8 per
 * token and 64-column block, weights as int8 (q8's values; nf4 codes through
 * a 16-entry int8 table), integer dot products with AVX-512 VNNI (vpdpbusd),
 * one float scale per block. It computes exactly gg_ref_matmul_int8
 * (ref.h), bit for bit; it is not the same as the float matmul (the 8-bit
 * activations and the rounded nf4 table differ by ~0.4% of a block's
 * largest value), which is why it is opt-in.
 *
 * Layout. vpdpbusd multiplies 4 unsigned bytes by 4 signed bytes in each of
 * 16 int32 lanes. Lanes are tokens: the activations of 16 tokens are packed
 * per 64-column block as 16 quads × 16 tokens × 4 bytes (q + 128, unsigned),
 * and 4 weight bytes of one row are broadcast to all lanes (signed, read in
 * place from the row). The +128 is taken back by starting each block's
 * accumulator at −128·Σw. Per block: int32 → float, times d_token·d_row,
 * added into a float accumulator (fmaf, as the reference). */
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

/* Register block of the kernel: RB rows × TG groups of 16 tokens (2·RB·TG
 * accumulators + TG activation vectors fit in 32 registers). Tile: rows of
 * int8 weights (about TILE_I8 bytes) that stay in L2 across the token
 * groups. */
#ifndef I8_RB
#define I8_RB 4
#endif
#ifndef I8_TG
#define I8_TG 3
#endif
#ifndef TILE_I8
#define TILE_I8 (192 << 10)
#endif

int cpu_int8_supported(void) {
    static int ok = -1;
    if (ok < 0)
        ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    return ok;
}

typedef struct i8_job {
    wview v;
    const float *x;
    float *y;
    const float *bias;
    float beta;
    int64_t n, nb, ng; /* tokens, 64-column blocks, groups of 16 tokens */
    uint8_t *xp;       /* [ng][nb][16 quads][16 tokens][4] q + 128 */
    float *xd;         /* [ng][nb][16 tokens] scales d */
    int64_t tile_rows;
    uint8_t *scratch; /* per thread: int8 tile (nf4), then its sums and scales */
    size_t scratch_bytes;
} i8_job;

/* ---- activations ---- */

/* Tokens of groups [lo, hi) quantized and packed; tokens past n are zero. */
VNNI static void pack_x(const i8_job *J, int64_t g0, int64_t g1) {
    const int64_t nb = J->nb, cols = J->v.cols;
    const __m512i vidx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4,
                                                             3, 2, 1, 0),
                                            _mm512_set1_epi32(16));
    for (int64_t g = g0; g < g1; g++)
        for (int i = 0; i < 16; i++) {
            int64_t t = 16 * g + i;
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *dst = J->xp + ((g * nb + b) * 256 + i) * 4;
                float *d = J->xd + (g * nb + b) * 16 + i;
                __m512i q = _mm512_setzero_si512(); /* 64 bytes q + 128, built below */
                if (t >= J->n) {
                    *d = 0.0f;
                } else {
                    const float *x = J->x + t * cols + 64 * b;
                    __m512 v[4], m = _mm512_setzero_ps();
                    __mmask16 bad = 0;
                    UNROLL for (int k = 0; k < 4; k++) {
                        v[k] = _mm512_loadu_ps(x + 16 * k);
                        __m512 a = _mm512_abs_ps(v[k]);
                        bad |= _mm512_cmp_ps_mask(a, _mm512_set1_ps(FLT_MAX), _CMP_NLE_UQ);
                        m = _mm512_max_ps(m, a);
                    }
                    float amax = _mm512_reduce_max_ps(m);
                    if (bad) {
                        *d = __builtin_nanf("");
                    } else {
                        *d = amax / 127.0f;
                        __m512 id = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
                        __m128i b8[4];
                        UNROLL for (int k = 0; k < 4; k++)
                            b8[k] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v[k], id)));
                        q = _mm512_inserti64x4(
                            _mm512_castsi256_si512(_mm256_set_m128i(b8[1], b8[0])),
                            _mm256_set_m128i(b8[3], b8[2]), 1);
                    }
                }
                q = _mm512_xor_si512(q, _mm512_set1_epi8((char)0x80));
                /* dword j (elements 4j..4j+3) to quad j of this token */
                _mm512_i32scatter_epi32(dst, vidx, q, 4);
            }
        }
}

static void pack_x_worker(void *arg, int ith, int nth) {
    const i8_job *J = arg;
    int64_t lo, hi;
    gg_pool_split(J->ng, 1, ith, nth, &lo, &hi);
    if (lo < hi) pack_x(J, lo, hi);
}

/* ---- weights ---- */

/* Row r as int8 into dst (nf4; q8 rows are used in place), and per block
 * -128·Σw and the scale dw. */
VNNI static void prep_row(const wview *v, int64_t r, int8_t *dst, int32_t *wsum, float *wd) {
    const int64_t nb = v->cols / 64;
    const __m512i ones = _mm512_set1_epi8(1);
    const __m512i tab = _mm512_broadcast_i32x4(nf4_i8_table());
    for (int64_t b = 0; b < nb; b++) {
        int64_t gb = r * nb + b;
        __m512i w;
        if (v->t == GG_TYPE_Q8) {
            w = _mm512_loadu_si512(v->p + 64 * gb);
            wd[b] = _cvtsh_ss(rd16(v->q8d + 2 * gb));
        } else {
            /* byte k holds element 2k (high nibble) and 2k + 1 (low) */
            __m512i t = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(v->p + 32 * gb)));
            __m512i e = _mm512_or_si512(_mm512_srli_epi16(t, 4),
                                        _mm512_slli_epi16(_mm512_and_si512(t, _mm512_set1_epi16(15)), 8));
            w = _mm512_shuffle_epi8(tab, e);
            _mm512_storeu_si512(dst + 64 * b, w);
            wd[b] = nf4_ap(v, gb) / 127.0f;
        }
        /* Σ w = Σ 1·w over the bytes */
        wsum[b] = -128 * _mm512_reduce_add_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, w));
    }
}

/* ---- the kernel ---- */

/* out[i][g][lane] = Σ_b fmaf(dot, d·dw, ·) for RB rows (int8 rows w[i],
 * their -128·Σw ws[i] and scales wd[i]) and TG token groups from x / xd
 * (a group every xs bytes / ds floats). */
VNNI INLINE void kern(int RB, int TG, int64_t nb, const int8_t *const *w, const int32_t *const *ws,
                      const float *const *wd, const uint8_t *x, int64_t xs, const float *xd,
                      int64_t ds, float out[I8_RB][I8_TG][16]) {
    __m512 fa[I8_RB][I8_TG];
    UNROLL for (int i = 0; i < RB; i++) UNROLL for (int g = 0; g < TG; g++) fa[i][g] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512i ia[I8_RB][I8_TG];
        UNROLL for (int i = 0; i < RB; i++) {
            __m512i s = _mm512_set1_epi32(ws[i][b]);
            UNROLL for (int g = 0; g < TG; g++) ia[i][g] = s;
        }
        const uint8_t *xb = x + b * 1024;
        UNROLL for (int j = 0; j < 16; j++) {
            __m512i xv[I8_TG];
            UNROLL for (int g = 0; g < TG; g++) xv[g] = _mm512_load_si512(xb + g * xs + 64 * j);
            UNROLL for (int i = 0; i < RB; i++) {
                int32_t q4;
                memcpy(&q4, w[i] + 64 * b + 4 * j, 4);
                __m512i wv = _mm512_set1_epi32(q4);
                UNROLL for (int g = 0; g < TG; g++) ia[i][g] = _mm512_dpbusd_epi32(ia[i][g], xv[g], wv);
            }
        }
        __m512 dx[I8_TG];
        UNROLL for (int g = 0; g < TG; g++) dx[g] = _mm512_loadu_ps(xd + g * ds + 16 * b);
        UNROLL for (int i = 0; i < RB; i++) {
            __m512 dw = _mm512_set1_ps(wd[i][b]);
            UNROLL for (int g = 0; g < TG; g++)
                fa[i][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[i][g]), _mm512_mul_ps(dx[g], dw), fa[i][g]);
        }
    }
    UNROLL for (int i = 0; i < RB; i++) UNROLL for (int g = 0; g < TG; g++) _mm512_storeu_ps(out[i][g], fa[i][g]);
}

#define KERN_TG(RB, tg, ...)                                                                       \
    switch (tg) {                                                                                  \
    case 1: kern(RB, 1, __VA_ARGS__); break;                                                       \
    case 2: kern(RB, 2, __VA_ARGS__); break;                                                       \
    default: kern(RB, 3, __VA_ARGS__); break;                                                      \
    }

VNNI static void kern_any(int rb, int tg, int64_t nb, const int8_t *const *w, const int32_t *const *ws,
                          const float *const *wd, const uint8_t *x, int64_t xs, const float *xd,
                          int64_t ds, float out[I8_RB][I8_TG][16]) {
#if I8_RB != 4 || I8_TG != 3
#error "kern_any is written for I8_RB 4, I8_TG 3"
#endif
    switch (rb) {
    case 1: KERN_TG(1, tg, nb, w, ws, wd, x, xs, xd, ds, out) break;
    case 2: KERN_TG(2, tg, nb, w, ws, wd, x, xs, xd, ds, out) break;
    case 3: KERN_TG(3, tg, nb, w, ws, wd, x, xs, xd, ds, out) break;
    default: KERN_TG(4, tg, nb, w, ws, wd, x, xs, xd, ds, out) break;
    }
}

/* Thread ith: its share of the rows, a tile at a time. For each I8_TG
 * groups of tokens the tile's results gather in yb[token][tile row], then
 * go to y one contiguous run of rows per token. */
VNNI static void mm_worker(void *arg, int ith, int nth) {
    const i8_job *J = arg;
    const int64_t rows = J->v.rows, cols = J->v.cols, nb = J->nb, TR = J->tile_rows;
    int64_t lo, hi;
    gg_pool_split(rows, I8_RB, ith, nth, &lo, &hi);
    if (lo >= hi) return;
    int nf4 = J->v.t == GG_TYPE_NF4;
    uint8_t *sc = J->scratch + (size_t)ith * J->scratch_bytes;
    int8_t *tw = (int8_t *)sc;
    int32_t *tsum = (int32_t *)(sc + TR * cols);
    float *tdw = (float *)(sc + TR * cols + 4 * TR * nb);
    float *yb = (float *)(sc + TR * cols + 8 * TR * nb); /* [16·I8_TG][TR] */
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int64_t r0 = lo; r0 < hi; r0 += TR) {
        int64_t nr = hi - r0 < TR ? hi - r0 : TR;
        for (int64_t r = 0; r < nr; r++)
            prep_row(&J->v, r0 + r, nf4 ? tw + r * cols : NULL, tsum + r * nb, tdw + r * nb);
        for (int64_t g0 = 0; g0 < J->ng; g0 += I8_TG) {
            int tg = (int)(J->ng - g0 < I8_TG ? J->ng - g0 : I8_TG);
            for (int64_t r = 0; r < nr; r += I8_RB) {
                int rb = (int)(nr - r < I8_RB ? nr - r : I8_RB);
                const int8_t *w[I8_RB];
                const int32_t *ws[I8_RB];
                const float *wd[I8_RB];
                for (int i = 0; i < rb; i++) {
                    w[i] = nf4 ? tw + (r + i) * cols : (const int8_t *)J->v.p + (r0 + r + i) * cols;
                    ws[i] = tsum + (r + i) * nb;
                    wd[i] = tdw + (r + i) * nb;
                }
                float out[I8_RB][I8_TG][16];
                kern_any(rb, tg, nb, w, ws, wd, J->xp + g0 * nb * 1024, nb * 1024, J->xd + g0 * nb * 16,
                         nb * 16, out);
                const __m512i idx = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)TR));
                for (int i = 0; i < rb; i++)
                    for (int g = 0; g < tg; g++)
                        _mm512_i32scatter_ps(yb + 16 * g * TR + r + i, idx, _mm512_loadu_ps(out[i][g]), 4);
            }
            int64_t t1 = 16 * (g0 + tg) < J->n ? 16 * (g0 + tg) : J->n;
            for (int64_t t = 16 * g0; t < t1; t++) {
                const float *src = yb + (t - 16 * g0) * TR;
                float *y = J->y + t * rows + r0;
                const float *bias = J->bias ? J->bias + r0 : NULL;
                if (J->beta != 0) {
                    if (bias) for (int64_t r = 0; r < nr; r++) y[r] = (src[r] + bias[r]) + J->beta * y[r];
                    else for (int64_t r = 0; r < nr; r++) y[r] = src[r] + J->beta * y[r];
                } else if (bias) {
                    for (int64_t r = 0; r < nr; r++) y[r] = src[r] + bias[r];
                } else {
                    memcpy(y, src, (size_t)nr * sizeof *y);
                }
            }
        }
    }
}

int cpu_matmul_int8(gg_backend *be, float *y, const float *x, int64_t n, const gg_weight *w,
                    const float *bias, float beta) {
    if ((w->type != GG_TYPE_Q8 && w->type != GG_TYPE_NF4) || w->cols % 64 || !cpu_int8_supported() ||
        cpu_ctx_of(be)->simd != GG_SIMD_AVX512)
        return -1;
    i8_job J = {.v = view_of(w), .x = x, .y = y, .bias = bias, .beta = beta, .n = n,
                .nb = w->cols / 64, .ng = (n + 15) / 16};
    int64_t tr = (TILE_I8 / w->cols) & ~(int64_t)(I8_RB - 1);
    tr = tr < I8_RB ? I8_RB : tr;
    J.tile_rows = tr;
    cpu_ctx *c = cpu_ctx_of(be);
    size_t nth = (size_t)gg_pool_size(c->pool);
    J.scratch_bytes = (size_t)(tr * w->cols + 8 * tr * J.nb + 4 * 16 * I8_TG * tr); /* multiple of 64 */
    size_t xp_bytes = (size_t)(J.ng * J.nb * 1024), xd_bytes = (size_t)(J.ng * J.nb * 16) * sizeof(float);
    size_t need = nth * J.scratch_bytes + xp_bytes + xd_bytes;
    if (need > c->i8_cap) {
        free(c->i8_buf);
        c->i8_cap = 0;
        c->i8_buf = aligned_alloc(64, need); /* every part is a multiple of 64 bytes */
        if (!c->i8_buf) return -1;     /* out of memory: the float path runs instead */
        c->i8_cap = need;
    }
    J.scratch = c->i8_buf;
    J.xp = J.scratch + nth * J.scratch_bytes;
    J.xd = (float *)(J.xp + xp_bytes);
    gg_pool_run(c->pool, pack_x_worker, &J);
    gg_pool_run(c->pool, mm_worker, &J);
    return 0;
}

#else /* no x86 SIMD: the int8 form is not available, the float path runs */
int cpu_int8_supported(void) { return 0; }
int cpu_matmul_int8(gg_backend *be, float *y, const float *x, int64_t n, const gg_weight *w,
                    const float *bias, float beta) {
    return -1;
}
#endif

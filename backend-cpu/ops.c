/* ops.c — the CPU backend's non-matmul ops (cpu_internal.h, "ops.c"):
 * rmsnorm, layernorm, RoPE, attention, activations, softmax, add, scale,
 * argmax, topk. Each computes what its scalar reference in ref_ops.c
 * defines, up to float rounding.
 *
 * The inner loops are written once, with GCC vector extensions of 8 floats,
 * as always-inline bodies, and compiled three times (OP_KERNELS below): for
 * AVX-512 (VL), for AVX2 + FMA, and for the baseline; cpu_ctx.simd picks
 * the copy at run time. No vector is passed by value between functions
 * (that would change the ABI between the copies).
 *
 * Sums (norms, softmax) accumulate in float within blocks of 256 elements
 * and add the blocks in double. Attention is flash-style: a tile of up to
 * 8 (query, head) rows that share a kv head makes one pass over the keys in
 * blocks of KB, each row keeping a streaming softmax (running max, sum and
 * unnormalised output); scores are computed 8 keys at a time (one vector,
 * lane = key), so decode (1 query) and prefill use the lanes alike. Tiles
 * are handed to the pool's threads dynamically. Other ops run on the pool
 * when they touch PAR_MIN elements or more, else on the caller. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-cpu/cpu_internal.h"
#include "backend-cpu/cpu_simd.h"

#define SUM_BLOCK 256  /* elements per float partial sum */
#define KB 16          /* keys per block of the attention's streaming softmax (multiple of VW) */
#define ATTN_MAX_HD 256 /* head_dim up to which attention scratch is on the stack */

/* ------------------------------------------------------------------------ */
/* Vector helpers (GCC vector extensions)                                    */

INLINE float hsum_f(const vf *v) {
    vf x = *v + __builtin_shufflevector(*v, *v, 4, 5, 6, 7, 0, 1, 2, 3);
    x += __builtin_shufflevector(x, x, 2, 3, 0, 1, 6, 7, 4, 5);
    x += __builtin_shufflevector(x, x, 1, 0, 3, 2, 5, 4, 7, 6);
    return x[0];
}

INLINE float hmax_f(const vf *v) {
    vf x = *v, y = __builtin_shufflevector(x, x, 4, 5, 6, 7, 0, 1, 2, 3);
    x = VMAX(y, x);
    y = __builtin_shufflevector(x, x, 2, 3, 0, 1, 6, 7, 4, 5);
    x = VMAX(y, x);
    y = __builtin_shufflevector(x, x, 1, 0, 3, 2, 5, 4, 7, 6);
    x = VMAX(y, x);
    return x[0];
}

/* ------------------------------------------------------------------------ */
/* Elementwise and row bodies                                                */

enum { SUM_X, SUM_X2, SUM_DEV2 };

/* Σ x, Σ x² or Σ (x − c)² over n elements (mode is a constant after
 * inlining): float lanes within blocks of SUM_BLOCK, double across. */
INLINE double blocked_sum(const float *x, int64_t n, int mode, float c) {
    double total = 0;
    int64_t i = 0;
    while (i + VW <= n) {
        int64_t end = i + SUM_BLOCK < n ? i + SUM_BLOCK : n;
        vf a0 = {0}, a1 = {0};
        for (; i + 2 * VW <= end; i += 2 * VW) {
            vf v0 = LOADU(x + i), v1 = LOADU(x + i + VW);
            if (mode == SUM_DEV2) v0 -= c, v1 -= c;
            a0 += mode == SUM_X ? v0 : v0 * v0;
            a1 += mode == SUM_X ? v1 : v1 * v1;
        }
        for (; i + VW <= end; i += VW) {
            vf v0 = LOADU(x + i);
            if (mode == SUM_DEV2) v0 -= c;
            a0 += mode == SUM_X ? v0 : v0 * v0;
        }
        a0 += a1;
        total += hsum_d(&a0);
    }
    for (; i < n; i++) {
        double v = mode == SUM_DEV2 ? (double)(x[i] - c) : (double)x[i];
        total += mode == SUM_X ? v : v * v;
    }
    return total;
}

/* y = x · inv · (w + one). */
INLINE void rms_apply_body(float *y, const float *x, const float *w, float inv, float one, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) STOREU(y + i, LOADU(x + i) * inv * (LOADU(w + i) + one));
    for (; i < n; i++) y[i] = x[i] * inv * (w[i] + one);
}

/* y = (x − mean) · inv · w + b. */
INLINE void ln_apply_body(float *y, const float *x, const float *w, const float *b, float mean, float inv,
                          int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) STOREU(y + i, (LOADU(x + i) - mean) * inv * LOADU(w + i) + LOADU(b + i));
    for (; i < n; i++) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

/* One head of rotate-half RoPE with the row's cos/sin tables. */
INLINE void rope_apply_body(float *x, const float *c, const float *s, int64_t half) {
    float *x1 = x + half;
    int64_t i = 0;
    for (; i + VW <= half; i += VW) {
        vf a = LOADU(x + i), b = LOADU(x1 + i), cv = LOADU(c + i), sv = LOADU(s + i);
        STOREU(x + i, a * cv - b * sv);
        STOREU(x1 + i, b * cv + a * sv);
    }
    for (; i < half; i++) {
        float a = x[i], b = x1[i];
        x[i] = a * c[i] - b * s[i];
        x1[i] = b * c[i] + a * s[i];
    }
}

/* x·σ(k·x) (SiLU: k = 1; GELU-tanh, as x·σ(2u): k = 2·√(2/π)·(1 + 0.044715·x²)),
 * times up when up is not NULL. */
INLINE void sigmoid_act_body(float *y, const float *x, const float *up, int64_t n, int tanh_form) {
    const float k0 = 1.5957691216057308f; /* 2·sqrt(2/pi) */
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf v = LOADU(x + i);
        vf z = tanh_form ? -k0 * (v + 0.044715f * v * v * v) : -v;
        vexp(&z);
        vf r = v / (1.0f + z);
        if (up) r *= LOADU(up + i);
        STOREU(y + i, r);
    }
    for (; i < n; i++) {
        float v = x[i];
        float z = tanh_form ? -k0 * (v + 0.044715f * v * v * v) : -v;
        float r = v / (1.0f + expf(z));
        y[i] = up ? r * up[i] : r;
    }
}

/* Largest element, ignoring NaN (-inf if there is none). */
INLINE float max_body(const float *x, int64_t n) {
    vf m = SPLAT(-INFINITY);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf v = LOADU(x + i);
        m = VMAX(v, m);
    }
    float r = hmax_f(&m);
    for (; i < n; i++)
        if (x[i] > r) r = x[i];
    return r;
}

/* Softmax of one row in place. */
INLINE void softmax_row_body(float *x, int64_t n) {
    float m = max_body(x, n);
    double total = 0;
    int64_t i = 0;
    while (i + VW <= n) {
        int64_t end = i + SUM_BLOCK < n ? i + SUM_BLOCK : n;
        vf acc = {0};
        for (; i + VW <= end; i += VW) {
            vf e = LOADU(x + i) - m;
            vexp(&e);
            STOREU(x + i, e);
            acc += e;
        }
        total += hsum_d(&acc);
    }
    for (; i < n; i++) {
        x[i] = expf(x[i] - m);
        total += x[i];
    }
    float inv = (float)(1.0 / total);
    for (i = 0; i + VW <= n; i += VW) STOREU(x + i, LOADU(x + i) * inv);
    for (; i < n; i++) x[i] *= inv;
}

INLINE void add_body(float *y, const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) STOREU(y + i, LOADU(a + i) + LOADU(b + i));
    for (; i < n; i++) y[i] = a[i] + b[i];
}

INLINE void scale_body(float *y, const float *x, float s, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) STOREU(y + i, LOADU(x + i) * s);
    for (; i < n; i++) y[i] = x[i] * s;
}

/* ------------------------------------------------------------------------ */
/* Selection bodies                                                          */

/* Whether any lane of a comparison result is set. */
INLINE int vany(const vi *m) {
    typedef uint64_t vq __attribute__((vector_size(VW * 4)));
    vq t = (vq)*m;
    return (t[0] | t[1] | t[2] | t[3]) != 0;
}

/* Index of the largest element, the first on ties, NaN never (0 when all
 * are NaN): the max, then its first occurrence. */
INLINE int64_t argmax_body(const float *x, int64_t n) {
    float m = max_body(x, n);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vi eq = LOADU(x + i) == m;
        if (vany(&eq)) break;
    }
    for (; i < n; i++)
        if (x[i] == m) return i;
    return 0;
}

/* The topk order: a before b when a is larger, NaN after every number, ties
 * by lower index. */
static int topk_before(float va, int32_t ia, float vb, int32_t ib) {
    int na = va != va, nb = vb != vb;
    if (na != nb) return nb;
    if (!na && va != vb) return va > vb;
    return ia < ib;
}

/* Sifts heap entry i down in a heap of n whose root is the entry that
 * comes last in topk order. */
static void topk_sift(float *v, int32_t *id, int64_t n, int64_t i) {
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && topk_before(v[c], id[c], v[c + 1], id[c + 1])) c++;
        if (!topk_before(v[i], id[i], v[c], id[c])) return;
        float tv = v[i];
        int32_t ti = id[i];
        v[i] = v[c], id[i] = id[c];
        v[c] = tv, id[c] = ti;
        i = c;
    }
}

/* One row: a heap of the k best so far in vals/ids (root = the worst kept),
 * then sorted in place by repeatedly moving the root to the end. Runs of 8
 * elements none of which beats a number at the root are skipped at once. */
INLINE void topk_row_body(float *v, int32_t *id, const float *x, int64_t cols, int64_t k) {
    for (int64_t i = 0; i < k; i++) v[i] = x[i], id[i] = (int32_t)i;
    for (int64_t i = k / 2 - 1; i >= 0; i--) topk_sift(v, id, k, i);
    for (int64_t i = k; i < cols; i++) {
        if (i + VW <= cols && v[0] == v[0]) {
            vi gt = LOADU(x + i) > v[0];
            if (!vany(&gt)) {
                i += VW - 1;
                continue;
            }
        }
        float xi = x[i], rv = v[0];
        /* later index: only a strictly larger number (or a number over a
         * NaN root) displaces the root */
        if (xi > rv || (rv != rv && xi == xi)) {
            v[0] = xi, id[0] = (int32_t)i;
            topk_sift(v, id, k, 0);
        }
    }
    for (int64_t n = k - 1; n > 0; n--) {
        float tv = v[0];
        int32_t ti = id[0];
        v[0] = v[n], id[0] = id[n];
        v[n] = tv, id[n] = ti;
        topk_sift(v, id, n, 0);
    }
}

/* ------------------------------------------------------------------------ */
/* Attention: the job, its tiles, and the tile body                          */

typedef struct attn_job attn_job;
struct attn_job {
    float *out, *lse;
    const float *q, *k, *v;
    const int32_t *k_lo, *k_hi;
    int64_t n, kv_stride, n_heads, n_kvh, hd, group;
    float scale;
    int64_t hb, qb;      /* heads and queries per tile (hb·qb <= VW) */
    int64_t n_hsub;      /* tiles per kv head's group of query heads */
    int64_t n_qblk;      /* blocks of qb queries */
    int64_t n_tiles;
    atomic_int_fast64_t next; /* the next tile to take */
    void (*tile)(const attn_job *j, float *buf, int64_t tile);
};

/* The (query, head) rows of one tile. */
typedef struct attn_rows {
    int nr;
    int64_t koff;     /* the kv head's column offset in k and v rows */
    int64_t jlo, jhi; /* union of the rows' key ranges */
    int32_t lo[VW], hi[VW];
    const float *q[VW];
    float *out[VW];
    float *lse[VW];
} attn_rows;

/* Tiles run from the last block of queries (the most keys when causal) to
 * the first; within a block, by kv head, then by group of query heads. */
static void attn_tile_rows(const attn_job *j, int64_t tile, attn_rows *R) {
    int64_t per_q = j->n_kvh * j->n_hsub;
    int64_t qblk = j->n_qblk - 1 - tile / per_q, g = tile % per_q / j->n_hsub, hs = tile % j->n_hsub;
    int64_t t0 = qblk * j->qb, hh0 = hs * j->hb;
    int64_t nh = j->group - hh0 < j->hb ? j->group - hh0 : j->hb;
    R->nr = 0;
    R->koff = g * j->hd;
    R->jlo = INT64_MAX;
    R->jhi = -1;
    for (int64_t t = t0; t < t0 + j->qb && t < j->n; t++) {
        for (int64_t i = 0; i < nh; i++) {
            int64_t row = t * j->n_heads + g * j->group + hh0 + i;
            int r = R->nr++;
            R->lo[r] = j->k_lo[t];
            R->hi[r] = j->k_hi[t];
            R->q[r] = j->q + row * j->hd;
            R->out[r] = j->out + row * j->hd;
            R->lse[r] = j->lse ? j->lse + row : NULL;
            if (R->lo[r] < R->jlo) R->jlo = R->lo[r];
            if (R->hi[r] > R->jhi) R->jhi = R->hi[r];
        }
    }
}

/* Pairwise sums of the lanes of x and y, interleaved by the index lists LO
 * and HI (the steps of an 8 × 8 transpose-and-add). */
#define ATTN_PAIRS(x, y, LO, HI) (__builtin_shufflevector(x, y, LO) + __builtin_shufflevector(x, y, HI))
#define ATTN_LO1 0, 8, 1, 9, 4, 12, 5, 13
#define ATTN_HI1 2, 10, 3, 11, 6, 14, 7, 15
#define ATTN_LO2 0, 1, 8, 9, 4, 5, 12, 13
#define ATTN_HI2 2, 3, 10, 11, 6, 7, 14, 15
#define ATTN_LO4 0, 1, 2, 3, 8, 9, 10, 11
#define ATTN_HI4 4, 5, 6, 7, 12, 13, 14, 15

/* The dot products of q with 8 key rows, as one vector (lane i: key i). */
INLINE void attn_dot8(const float *q, const float *const kr[VW], int64_t hd, vf *out) {
    vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
    int64_t d = 0;
    for (; d + VW <= hd; d += VW) {
        vf qv = LOADU(q + d);
        a0 += qv * LOADU(kr[0] + d);
        a1 += qv * LOADU(kr[1] + d);
        a2 += qv * LOADU(kr[2] + d);
        a3 += qv * LOADU(kr[3] + d);
        a4 += qv * LOADU(kr[4] + d);
        a5 += qv * LOADU(kr[5] + d);
        a6 += qv * LOADU(kr[6] + d);
        a7 += qv * LOADU(kr[7] + d);
    }
    /* transpose-and-add: lane i of the result sums the lanes of a_i */
    vf b0 = ATTN_PAIRS(a0, a1, ATTN_LO1, ATTN_HI1), b1 = ATTN_PAIRS(a2, a3, ATTN_LO1, ATTN_HI1);
    vf b2 = ATTN_PAIRS(a4, a5, ATTN_LO1, ATTN_HI1), b3 = ATTN_PAIRS(a6, a7, ATTN_LO1, ATTN_HI1);
    vf c0 = ATTN_PAIRS(b0, b1, ATTN_LO2, ATTN_HI2), c1 = ATTN_PAIRS(b2, b3, ATTN_LO2, ATTN_HI2);
    vf r = ATTN_PAIRS(c0, c1, ATTN_LO4, ATTN_HI4);
    for (; d < hd; d++)
        for (int i = 0; i < VW; i++) r[i] += q[d] * kr[i][d];
    *out = r;
}

/* s[i] = scale · q·k[j0 + i] for i < KB, -inf outside [a, b]. Rows outside
 * [a, b] are not read (they may be past n_kv, or uninitialised): q stands
 * in for them. */
INLINE void attn_row_scores(const attn_job *j, const float *q, int64_t koff, int64_t j0, int64_t a, int64_t b,
                            vf *s) {
    for (int64_t g = 0; g < KB / VW; g++) {
        int64_t g0 = j0 + g * VW;
        if (g0 > b || g0 + VW - 1 < a) {
            s[g] = SPLAT(-INFINITY);
            continue;
        }
        const float *kr[VW];
        const float *k0 = j->k + g0 * j->kv_stride + koff;
        vf dot;
        if (g0 >= a && g0 + VW - 1 <= b) { /* the common case: all 8 keys in range */
            for (int i = 0; i < VW; i++) kr[i] = k0 + i * j->kv_stride;
            attn_dot8(q, kr, j->hd, &dot);
            s[g] = dot * j->scale;
            continue;
        }
        vi ok;
        for (int i = 0; i < VW; i++) {
            ok[i] = g0 + i >= a && g0 + i <= b ? -1 : 0;
            kr[i] = ok[i] ? k0 + i * j->kv_stride : q;
        }
        attn_dot8(q, kr, j->hd, &dot);
        s[g] = VSEL(ok, dot * j->scale, SPLAT(-INFINITY));
    }
}

INLINE void row_scale(float *x, float s, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) STOREU(x + i, LOADU(x + i) * s);
    for (; i < n; i++) x[i] *= s;
}

/* Streaming-softmax step of one row: the running max *m and sum *l take
 * the block's scores s, which become the weights exp(s − m) in p[KB]; the
 * partial output o is rescaled when the max grows. */
INLINE void attn_row_online(const vf *s, float *m, float *l, float *o, int64_t hd, float *p) {
    vf mx = s[0];
    for (int g = 1; g < KB / VW; g++) mx = VMAX(s[g], mx);
    float bm = hmax_f(&mx);
    if (bm > *m) {
        if (*l != 0) { /* (o and l are still 0 before the first block) */
            float alpha = expf(*m - bm);
            *l *= alpha;
            row_scale(o, alpha, hd);
        }
        *m = bm;
    }
    vf sum = {0};
    for (int g = 0; g < KB / VW; g++) {
        vf e = s[g] - *m;
        vexp(&e);
        STOREU(p + g * VW, e);
        sum += e;
    }
    *l += hsum_f(&sum);
}

/* o += Σ p[i] · v[j0 + i] over the keys i of [a, b] (relative to j0).
 * Columns go in panels of 8 vectors, so that 8 independent sums hide the
 * FMA latency; each panel sums the block first and then adds it to o (less
 * rounding than one long chain). */
INLINE void attn_row_accumulate(const attn_job *j, int64_t koff, int64_t j0, int64_t a, int64_t b, const float *p,
                                float *o) {
    int64_t hd = j->hd, st = j->kv_stride;
    const float *vb = j->v + j0 * st + koff;
    int64_t d = 0;
    for (; d + 8 * VW <= hd; d += 8 * VW) {
        vf c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, c4 = {0}, c5 = {0}, c6 = {0}, c7 = {0};
        for (int64_t i = a; i <= b; i++) {
            const float *vr = vb + i * st + d;
            float w = p[i];
            c0 += w * LOADU(vr);
            c1 += w * LOADU(vr + VW);
            c2 += w * LOADU(vr + 2 * VW);
            c3 += w * LOADU(vr + 3 * VW);
            c4 += w * LOADU(vr + 4 * VW);
            c5 += w * LOADU(vr + 5 * VW);
            c6 += w * LOADU(vr + 6 * VW);
            c7 += w * LOADU(vr + 7 * VW);
        }
        STOREU(o + d, LOADU(o + d) + c0);
        STOREU(o + d + VW, LOADU(o + d + VW) + c1);
        STOREU(o + d + 2 * VW, LOADU(o + d + 2 * VW) + c2);
        STOREU(o + d + 3 * VW, LOADU(o + d + 3 * VW) + c3);
        STOREU(o + d + 4 * VW, LOADU(o + d + 4 * VW) + c4);
        STOREU(o + d + 5 * VW, LOADU(o + d + 5 * VW) + c5);
        STOREU(o + d + 6 * VW, LOADU(o + d + 6 * VW) + c6);
        STOREU(o + d + 7 * VW, LOADU(o + d + 7 * VW) + c7);
    }
    for (; d + VW <= hd; d += VW) {
        vf acc = {0};
        for (int64_t i = a; i <= b; i++) acc += p[i] * LOADU(vb + i * st + d);
        STOREU(o + d, LOADU(o + d) + acc);
    }
    for (; d < hd; d++) {
        float acc = 0;
        for (int64_t i = a; i <= b; i++) acc += p[i] * vb[i * st + d];
        o[d] += acc;
    }
}

/* One tile, start to end: blocks of KB keys outer (they stay in L1 while
 * the tile's rows use them), the rows inner. buf: VW·hd + KB floats. */
INLINE void attn_tile_body(const attn_job *j, float *buf, int64_t tile) {
    attn_rows R;
    attn_tile_rows(j, tile, &R);
    int64_t hd = j->hd;
    float *o = buf, *p = buf + VW * hd; /* [VW][hd] unnormalised outputs; [KB] weights */
    float m[VW], l[VW];
    for (int r = 0; r < R.nr; r++) m[r] = -INFINITY, l[r] = 0;
    memset(o, 0, (size_t)(R.nr * hd) * sizeof *o);
    for (int64_t j0 = R.jlo; j0 <= R.jhi; j0 += KB) {
        for (int r = 0; r < R.nr; r++) {
            int64_t a = R.lo[r] > j0 ? R.lo[r] : j0, b = R.hi[r] < j0 + KB - 1 ? R.hi[r] : j0 + KB - 1;
            if (a > b) continue;
            vf s[KB / VW];
            attn_row_scores(j, R.q[r], R.koff, j0, a, b, s);
            attn_row_online(s, &m[r], &l[r], o + r * hd, hd, p);
            attn_row_accumulate(j, R.koff, j0, a - j0, b - j0, p, o + r * hd);
        }
    }
    for (int r = 0; r < R.nr; r++) {
        scale_body(R.out[r], o + r * hd, 1.0f / l[r], hd);
        if (R.lse[r]) *R.lse[r] = m[r] + logf(l[r]);
    }
}

/* ------------------------------------------------------------------------ */
/* The kernels of one SIMD level                                             */

typedef struct op_kernels {
    double (*sum)(const float *x, int64_t n, int mode, float c);
    void (*rms_apply)(float *y, const float *x, const float *w, float inv, float one, int64_t n);
    void (*ln_apply)(float *y, const float *x, const float *w, const float *b, float mean, float inv,
                     int64_t n);
    void (*rope_apply)(float *x, const float *c, const float *s, int64_t half);
    void (*sigmoid_act)(float *y, const float *x, const float *up, int64_t n, int tanh_form);
    int64_t (*argmax)(const float *x, int64_t n);
    void (*topk_row)(float *v, int32_t *id, const float *x, int64_t cols, int64_t k);
    void (*softmax_row)(float *x, int64_t n);
    void (*add)(float *y, const float *a, const float *b, int64_t n);
    void (*scale)(float *y, const float *x, float s, int64_t n);
    void (*attn_tile)(const attn_job *j, float *buf, int64_t tile);
} op_kernels;

/* Defines the copy of every body for one target (ATTR) and its table. */
#define OP_KERNELS(SFX, ATTR)                                                                      \
    ATTR static double sum_##SFX(const float *x, int64_t n, int mode, float c) {                   \
        switch (mode) {                                                                            \
        case SUM_X: return blocked_sum(x, n, SUM_X, c);                                            \
        case SUM_X2: return blocked_sum(x, n, SUM_X2, c);                                          \
        default: return blocked_sum(x, n, SUM_DEV2, c);                                            \
        }                                                                                          \
    }                                                                                              \
    ATTR static void rms_apply_##SFX(float *y, const float *x, const float *w, float inv, float one, \
                                     int64_t n) {                                                  \
        rms_apply_body(y, x, w, inv, one, n);                                                      \
    }                                                                                              \
    ATTR static void ln_apply_##SFX(float *y, const float *x, const float *w, const float *b,       \
                                    float mean, float inv, int64_t n) {                            \
        ln_apply_body(y, x, w, b, mean, inv, n);                                                   \
    }                                                                                              \
    ATTR static void rope_apply_##SFX(float *x, const float *c, const float *s, int64_t half) {     \
        rope_apply_body(x, c, s, half);                                                            \
    }                                                                                              \
    ATTR static void sigmoid_act_##SFX(float *y, const float *x, const float *up, int64_t n,        \
                                       int tanh_form) {                                            \
        if (tanh_form) sigmoid_act_body(y, x, up, n, 1);                                           \
        else sigmoid_act_body(y, x, up, n, 0);                                                     \
    }                                                                                              \
    ATTR static int64_t argmax_##SFX(const float *x, int64_t n) { return argmax_body(x, n); }      \
    ATTR static void topk_row_##SFX(float *v, int32_t *id, const float *x, int64_t cols, int64_t k) { \
        topk_row_body(v, id, x, cols, k);                                                          \
    }                                                                                              \
    ATTR static void softmax_row_##SFX(float *x, int64_t n) { softmax_row_body(x, n); }            \
    ATTR static void add_##SFX(float *y, const float *a, const float *b, int64_t n) {               \
        add_body(y, a, b, n);                                                                      \
    }                                                                                              \
    ATTR static void scale_##SFX(float *y, const float *x, float s, int64_t n) {                    \
        scale_body(y, x, s, n);                                                                    \
    }                                                                                              \
    ATTR static void attn_tile_##SFX(const attn_job *j, float *buf, int64_t tile) {                \
        attn_tile_body(j, buf, tile);                                                              \
    }                                                                                              \
    static const op_kernels kernels_##SFX = {                                                      \
        .sum = sum_##SFX,                                                                          \
        .rms_apply = rms_apply_##SFX,                                                              \
        .ln_apply = ln_apply_##SFX,                                                                \
        .rope_apply = rope_apply_##SFX,                                                            \
        .sigmoid_act = sigmoid_act_##SFX,                                                          \
        .argmax = argmax_##SFX,                                                                    \
        .topk_row = topk_row_##SFX,                                                                \
        .softmax_row = softmax_row_##SFX,                                                          \
        .add = add_##SFX,                                                                          \
        .scale = scale_##SFX,                                                                      \
        .attn_tile = attn_tile_##SFX,                                                              \
    };

OP_KERNELS(base, )

#if defined(__x86_64__) && defined(__GNUC__)
OP_KERNELS(avx2, TARGET_AVX2)
OP_KERNELS(avx512, TARGET_AVX512)
#endif

static const op_kernels *kernels_of(gg_backend *be) {
#if defined(__x86_64__) && defined(__GNUC__)
    /* simd is the level the CPU check allowed; FMA comes with AVX2 in
     * practice, but is checked all the same. */
    int simd = cpu_ctx_of(be)->simd;
    if (simd >= GG_SIMD_AVX2 && __builtin_cpu_supports("fma"))
        return simd >= GG_SIMD_AVX512 ? &kernels_avx512 : &kernels_avx2;
#endif
    return &kernels_base;
}

/* ------------------------------------------------------------------------ */
/* Norms                                                                     */

typedef struct norm_ctx {
    const op_kernels *k;
    float *out;
    const float *x, *w, *b;
    int64_t dim;
    float eps;
    int plus_one;
} norm_ctx;

static void rmsnorm_rows(void *arg, int64_t lo, int64_t hi) {
    const norm_ctx *c = arg;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * c->dim;
        double ss = c->k->sum(x, c->dim, SUM_X2, 0.0f);
        float inv = (float)(1.0 / sqrt(ss / (double)c->dim + (double)c->eps));
        c->k->rms_apply(c->out + r * c->dim, x, c->w, inv, c->plus_one ? 1.0f : 0.0f, c->dim);
    }
}

void cpu_rmsnorm(gg_backend *be, float *out, const float *x, const float *w, int64_t n, int64_t dim, float eps,
                 int plus_one) {
    norm_ctx c = {kernels_of(be), out, x, w, NULL, dim, eps, plus_one};
    par_for(be, n, 1, n * dim, rmsnorm_rows, &c);
}

static void layernorm_rows(void *arg, int64_t lo, int64_t hi) {
    const norm_ctx *c = arg;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = c->x + r * c->dim;
        float mean = (float)(c->k->sum(x, c->dim, SUM_X, 0.0f) / (double)c->dim);
        double var = c->k->sum(x, c->dim, SUM_DEV2, mean) / (double)c->dim;
        float inv = (float)(1.0 / sqrt(var + (double)c->eps));
        c->k->ln_apply(c->out + r * c->dim, x, c->w, c->b, mean, inv, c->dim);
    }
}

void cpu_layernorm(gg_backend *be, float *out, const float *x, const float *w, const float *b, int64_t n,
                   int64_t dim, float eps) {
    norm_ctx c = {kernels_of(be), out, x, w, b, dim, eps, 0};
    par_for(be, n, 1, n * dim, layernorm_rows, &c);
}

/* ------------------------------------------------------------------------ */
/* RoPE                                                                      */

typedef struct rope_ctx {
    const op_kernels *k;
    float *x;
    int64_t row_stride, n_heads, head_dim;
    const int32_t *pos;
    const float *inv_freq;
    float attn_factor;
} rope_ctx;

static void rope_rows(void *arg, int64_t lo, int64_t hi) {
    const rope_ctx *c = arg;
    int64_t half = c->head_dim / 2;
    float *cs = cpu_scratch_alloc((size_t)(2 * half) * sizeof *cs), *sn = cs + half;
    for (int64_t t = lo; t < hi; t++) {
        for (int64_t i = 0; i < half; i++) {
            float f = (float)c->pos[t] * c->inv_freq[i]; /* the float32 product, as HF */
            cs[i] = (float)cos((double)f) * c->attn_factor;
            sn[i] = (float)sin((double)f) * c->attn_factor;
        }
        for (int64_t h = 0; h < c->n_heads; h++)
            c->k->rope_apply(c->x + t * c->row_stride + h * c->head_dim, cs, sn, half);
    }
    free(cs);
}

void cpu_rope(gg_backend *be, float *x, int64_t n, int64_t row_stride, int64_t n_heads, int64_t head_dim,
              const int32_t *pos, const float *inv_freq, float attn_factor) {
    rope_ctx c = {kernels_of(be), x, row_stride, n_heads, head_dim, pos, inv_freq, attn_factor};
    par_for(be, n, 1, n * n_heads * head_dim, rope_rows, &c);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */

static void attn_worker(void *arg, int ith, int nth) {
    attn_job *j = arg;
    size_t nf = (size_t)(VW * j->hd + KB);
    _Alignas(64) float stackbuf[VW * ATTN_MAX_HD + KB];
    float *buf = j->hd <= ATTN_MAX_HD ? stackbuf : cpu_scratch_alloc(nf * sizeof *buf);
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (t >= j->n_tiles) break;
        j->tile(j, buf, t);
    }
    if (buf != stackbuf) free(buf);
}

void cpu_attention(gg_backend *be, float *out, const float *q, const float *k, const float *v, int64_t n,
                   int64_t n_kv, int64_t kv_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                   const int32_t *k_lo, const int32_t *k_hi, float scale, float *lse) {
    if (n <= 0 || n_heads <= 0) return;
    attn_job j = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .k_lo = k_lo, .k_hi = k_hi, .n = n,
                  .kv_stride = kv_stride, .n_heads = n_heads, .n_kvh = n_kv_heads, .hd = head_dim,
                  .group = n_heads / n_kv_heads, .scale = scale, .tile = kernels_of(be)->attn_tile};
    j.hb = j.group < VW ? j.group : VW;
    j.qb = VW / j.hb;
    j.n_hsub = (j.group + j.hb - 1) / j.hb;
    j.n_qblk = (n + j.qb - 1) / j.qb;
    j.n_tiles = j.n_qblk * j.n_kvh * j.n_hsub;
    atomic_init(&j.next, 0);
    if (n * n_heads > 1) gg_pool_run(cpu_ctx_of(be)->pool, attn_worker, &j);
    else attn_worker(&j, 0, 1);
}

/* ------------------------------------------------------------------------ */
/* Activations                                                               */

typedef struct act_ctx {
    const op_kernels *k;
    float *out;
    const float *x, *up;
    gg_act a;
} act_ctx;

static void act_range(void *arg, int64_t lo, int64_t hi) {
    const act_ctx *c = arg;
    const float *up = c->up ? c->up + lo : NULL;
    if (c->a != GG_ACT_GELU) {
        c->k->sigmoid_act(c->out + lo, c->x + lo, up, hi - lo, c->a == GG_ACT_GELU_TANH);
        return;
    }
    const float r2 = 0.70710678118654752f; /* 1/sqrt(2) */
    for (int64_t i = lo; i < hi; i++) {
        float g = 0.5f * c->x[i] * (1.0f + erff(c->x[i] * r2));
        c->out[i] = c->up ? g * c->up[i] : g;
    }
}

void cpu_act(gg_backend *be, float *out, const float *x, int64_t n, gg_act a) {
    act_ctx c = {kernels_of(be), out, x, NULL, a};
    par_for(be, n, SUM_BLOCK, n, act_range, &c);
}

void cpu_glu(gg_backend *be, float *out, const float *gate, const float *up, int64_t n, gg_act a) {
    act_ctx c = {kernels_of(be), out, gate, up, a};
    par_for(be, n, SUM_BLOCK, n, act_range, &c);
}

/* ------------------------------------------------------------------------ */
/* Softmax, add, scale                                                       */

typedef struct rows_ctx {
    const op_kernels *k;
    float *y;
    const float *a, *b;
    float s;
    int64_t cols;
} rows_ctx;

static void softmax_rows(void *arg, int64_t lo, int64_t hi) {
    const rows_ctx *c = arg;
    for (int64_t r = lo; r < hi; r++) c->k->softmax_row(c->y + r * c->cols, c->cols);
}

void cpu_softmax(gg_backend *be, float *x, int64_t rows, int64_t cols) {
    rows_ctx c = {kernels_of(be), x, NULL, NULL, 0.0f, cols};
    par_for(be, rows, 1, rows * cols, softmax_rows, &c);
}

static void add_range(void *arg, int64_t lo, int64_t hi) {
    const rows_ctx *c = arg;
    c->k->add(c->y + lo, c->a + lo, c->b + lo, hi - lo);
}

void cpu_add(gg_backend *be, float *y, const float *a, const float *b, int64_t n) {
    rows_ctx c = {kernels_of(be), y, a, b, 0.0f, 0};
    par_for(be, n, SUM_BLOCK, n, add_range, &c);
}

static void scale_range(void *arg, int64_t lo, int64_t hi) {
    const rows_ctx *c = arg;
    c->k->scale(c->y + lo, c->a + lo, c->s, hi - lo);
}

void cpu_scale(gg_backend *be, float *y, const float *x, float s, int64_t n) {
    rows_ctx c = {kernels_of(be), y, x, NULL, s, 0};
    par_for(be, n, SUM_BLOCK, n, scale_range, &c);
}

/* ------------------------------------------------------------------------ */
/* Selection                                                                 */

typedef struct select_ctx {
    const op_kernels *k;
    int32_t *ids;
    float *vals;
    const float *x;
    int64_t cols, topk;
} select_ctx;

static void argmax_rows(void *arg, int64_t lo, int64_t hi) {
    const select_ctx *c = arg;
    for (int64_t r = lo; r < hi; r++) {
        c->ids[r] = (int32_t)c->k->argmax(c->x + r * c->cols, c->cols);
    }
}

void cpu_argmax(gg_backend *be, int32_t *ids, const float *x, int64_t rows, int64_t cols) {
    select_ctx c = {kernels_of(be), ids, NULL, x, cols, 0};
    par_for(be, rows, 1, rows * cols, argmax_rows, &c);
}

static void topk_rows(void *arg, int64_t lo, int64_t hi) {
    const select_ctx *c = arg;
    for (int64_t r = lo; r < hi; r++)
        c->k->topk_row(c->vals + r * c->topk, c->ids + r * c->topk, c->x + r * c->cols, c->cols, c->topk);
}

void cpu_topk(gg_backend *be, float *vals, int32_t *ids, const float *x, int64_t rows, int64_t cols, int64_t k) {
    select_ctx c = {kernels_of(be), ids, vals, x, cols, k};
    par_for(be, rows, 1, rows * cols, topk_rows, &c);
}

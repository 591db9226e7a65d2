/* ops_bwd.c — the CPU backend's backward ops (cpu_internal.h, "ops_bwd.c"):
 * rmsnorm_bwd, layernorm_bwd, act_bwd, glu_bwd, attention_bwd. Each
 * computes what its scalar reference in ref_bwd.c defines, up to float
 * rounding, and gives the same bits for any thread count.
 *
 * As in ops.c, the inner loops are written once with GCC vector extensions
 * of 8 floats as always-inline bodies, compiled for AVX-512 (VL), AVX2 + FMA
 * and the baseline (BWD_KERNELS below), and cpu_ctx.simd picks the copy at
 * run time. The vector helpers repeat ops.c's (static there).
 *
 * Attention backward is flash-style and recomputes the weights from the
 * saved lse, p = exp(scale·q·k − lse), in two passes that each own what
 * they write, so no sum depends on how the work is split among threads:
 * 1. dq: a tile is up to QROWS (query, head) rows sharing a kv head (tokens
 *    × the heads of its group); it walks the keys its rows attend in
 *    blocks of QKB: per row D = dout·out (kept for pass 2),
 *    ds = scale·p·(dout·v − D), dq = Σ ds·k.
 * 2. dk, dv: an item is (kv head, block of KVB keys) and owns those key
 *    rows; it walks every query that attends the block, in order, with each
 *    head of the group, and adds p·dout into dv and ds·q into dk, RB rows
 *    at a time (a rank-RB update, two keys × four vectors per step).
 * Both turn their key block ([keys][hd] → [hd][keys], k and v) once for
 * all their rows, so the scores of 4 rows × 16 keys are 8 sums in
 * registers (one key vector load per column feeds 4 rows) with no
 * horizontal sums. Keys no row attends are turned as zeros, never read
 * (they may be NaN). Scores and dout·v are computed in both passes: 7
 * passes over head_dim per (query, key) pair where a fused pass would need
 * 5, the price of determinism without atomics or per-thread copies of dk
 * and dv. Work goes to the pool's threads dynamically, the largest first. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-cpu/cpu_internal.h"
#include "backend-cpu/cpu_simd.h"

#define SUM_BLOCK 256  /* elements per float partial sum */
#define QKB (2 * VW)   /* keys per block of the dq pass (one 4 × 16 score tile) */
#define KVB 32         /* keys per dk/dv work item (multiple of 2·VW) */
#define RB 16          /* query rows per rank update of the dk/dv pass (multiple of 4) */
#define QROWS 32       /* query rows per dq tile (tokens × the heads of a group) */

/* ------------------------------------------------------------------------ */
/* Norm rows                                                                 */

/* Σ a·b and Σ a·c·(d + one) over n elements (b, c, d may repeat a):
 * float lanes within blocks of SUM_BLOCK, double across. */
INLINE void dot2_body(const float *a, const float *b, const float *c, const float *d, float one, int64_t n,
                      double *s1, double *s2) {
    double t1 = 0, t2 = 0;
    int64_t i = 0;
    while (i + VW <= n) {
        int64_t end = i + SUM_BLOCK < n ? i + SUM_BLOCK : n;
        vf acc1 = {0}, acc2 = {0};
        for (; i + VW <= end; i += VW) {
            vf av = LOADU(a + i);
            acc1 += av * LOADU(b + i);
            acc2 += av * LOADU(c + i) * (LOADU(d + i) + one);
        }
        t1 += hsum_d(&acc1);
        t2 += hsum_d(&acc2);
    }
    for (; i < n; i++) {
        t1 += (double)a[i] * b[i];
        t2 += (double)a[i] * c[i] * (d[i] + one);
    }
    *s1 = t1, *s2 = t2;
}

/* One row of rmsnorm backward: dx (+)= inv·(w + one)·dy − k·x with
 * k = inv³/dim · Σ dy·(w + one)·x. */
INLINE void rms_bwd_row_body(float *dx, const float *dy, const float *x, const float *w, float one, int64_t n,
                             float eps, int accumulate) {
    double ss, c;
    dot2_body(x, x, dy, w, one, n, &ss, &c);
    double invd = 1.0 / sqrt(ss / (double)n + (double)eps);
    float inv = (float)invd, k = (float)(c * invd * invd * invd / (double)n);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf d = inv * (LOADU(w + i) + one) * LOADU(dy + i) - k * LOADU(x + i);
        if (accumulate) d += LOADU(dx + i);
        STOREU(dx + i, d);
    }
    for (; i < n; i++) {
        float d = inv * (w[i] + one) * dy[i] - k * x[i];
        dx[i] = accumulate ? dx[i] + d : d;
    }
}

/* Σ x, then Σ (x − mean)², as the forward computes them. */
INLINE void mean_var_body(const float *x, int64_t n, float *mean, double *var) {
    double s = 0;
    int64_t i = 0;
    while (i + VW <= n) {
        int64_t end = i + SUM_BLOCK < n ? i + SUM_BLOCK : n;
        vf acc = {0};
        for (; i + VW <= end; i += VW) acc += LOADU(x + i);
        s += hsum_d(&acc);
    }
    for (; i < n; i++) s += x[i];
    float m = (float)(s / (double)n);
    double v = 0;
    i = 0;
    while (i + VW <= n) {
        int64_t end = i + SUM_BLOCK < n ? i + SUM_BLOCK : n;
        vf acc = {0};
        for (; i + VW <= end; i += VW) {
            vf dv = LOADU(x + i) - m;
            acc += dv * dv;
        }
        v += hsum_d(&acc);
    }
    for (; i < n; i++) v += (double)(x[i] - m) * (x[i] - m);
    *mean = m, *var = v / (double)n;
}

/* One row of layernorm backward: with g = dy·w and xh = (x − mean)·inv,
 * dx (+)= inv·(g − mean(g) − xh·mean(g·xh)). */
INLINE void ln_bwd_row_body(float *dx, const float *dy, const float *x, const float *w, int64_t n, float eps,
                            int accumulate) {
    float mean;
    double var;
    mean_var_body(x, n, &mean, &var);
    double invd = 1.0 / sqrt(var + (double)eps);
    double sg = 0, sgx = 0;
    int64_t i = 0;
    while (i + VW <= n) {
        int64_t end = i + SUM_BLOCK < n ? i + SUM_BLOCK : n;
        vf a1 = {0}, a2 = {0};
        for (; i + VW <= end; i += VW) {
            vf g = LOADU(dy + i) * LOADU(w + i);
            a1 += g;
            a2 += g * (LOADU(x + i) - mean);
        }
        sg += hsum_d(&a1);
        sgx += hsum_d(&a2);
    }
    for (; i < n; i++) {
        sg += (double)dy[i] * w[i];
        sgx += (double)dy[i] * w[i] * (x[i] - mean);
    }
    float inv = (float)invd, mg = (float)(sg / (double)n);
    float k = (float)(sgx * invd * invd / (double)n); /* inv · mean(g·xh) */
    for (i = 0; i + VW <= n; i += VW) {
        vf d = inv * (LOADU(dy + i) * LOADU(w + i) - mg - (LOADU(x + i) - mean) * k);
        if (accumulate) d += LOADU(dx + i);
        STOREU(dx + i, d);
    }
    for (; i < n; i++) {
        float d = inv * (dy[i] * w[i] - mg - (x[i] - mean) * k);
        dx[i] = accumulate ? dx[i] + d : d;
    }
}

/* ------------------------------------------------------------------------ */
/* Activations of the sigmoid form                                           */

/* SiLU and GELU-tanh are f = x·σ(u), u = x (SiLU) or
 * u = k0·(x + 0.044715·x³) (GELU-tanh, k0 = 2·√(2/π)), so
 * f' = σ + x·u'·σ(1 − σ); with z = exp(−u), σ = 1/(1 + z) and
 * σ(1 − σ) = z·σ² (no cancellation). Without up: dg = dy·f'. With up
 * (glu): dg = dy·up·f', du = dy·f. Every input element is read before the
 * outputs at that element are written (in place). */
INLINE void sig_bwd_body(float *dg, float *du, const float *dy, const float *x, const float *up, int64_t n,
                         int tanh_form) {
    const float k0 = 1.5957691216057308f, a3 = 0.044715f;
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf v = LOADU(x + i), g = LOADU(dy + i);
        vf v2 = v * v;
        vf z = tanh_form ? -k0 * (v + a3 * v2 * v) : -v;
        vexp(&z);
        vf s = 1.0f / (1.0f + z);
        vf du_dx = tanh_form ? k0 * (1.0f + 3.0f * a3 * v2) : SPLAT(1.0f);
        vf fp = s + v * du_dx * (z * s) * s;
        if (up) {
            vf u = LOADU(up + i);
            STOREU(dg + i, g * u * fp);
            STOREU(du + i, g * v * s);
        } else {
            STOREU(dg + i, g * fp);
        }
    }
    for (; i < n; i++) {
        float v = x[i], g = dy[i];
        float w = tanh_form ? k0 * (v + a3 * v * v * v) : v;
        float z = expf(fminf(-w, 88.3f)), s = 1.0f / (1.0f + z);
        float du_dx = tanh_form ? k0 * (1.0f + 3.0f * a3 * v * v) : 1.0f;
        float fp = s + v * du_dx * (z * s) * s;
        if (up) {
            float u = up[i];
            dg[i] = g * u * fp;
            du[i] = g * v * s;
        } else {
            dg[i] = g * fp;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Attention: the job                                                        */

typedef struct bwd_job bwd_job;
typedef struct bwd_scratch bwd_scratch;
struct bwd_job {
    float *dq, *dk, *dv;
    float *D; /* [n, n_heads]: dout·out per row, written by pass 1 */
    const float *dout, *q, *k, *v, *out, *lse;
    const int32_t *k_lo, *k_hi;
    int64_t n, n_kv, kv_stride, n_heads, n_kvh, hd, group;
    float scale;
    int64_t qt, n_qblk, n_tiles; /* pass 1: tiles of qt tokens × a kv head's group of heads */
    int64_t n_kblk, n_items;     /* pass 2: items of KVB keys × a kv head */
    atomic_int_fast64_t next;    /* the next tile or item to take */
    void (*dq_tile)(const bwd_job *j, bwd_scratch *S, int64_t tile);
    void (*dkdv_item)(const bwd_job *j, bwd_scratch *S, int64_t item);
};

/* A group of (query, head) rows sharing a kv head, padded to a multiple
 * of 4 with empty rows (a > b; their q and dout are row 0's). */
typedef struct bwd_rows {
    int nr, np;            /* rows, rows padded */
    const float **q, **g;  /* q and dout rows */
    int32_t *a, *b;        /* key range of each row */
    float *lse, *D;
} bwd_rows;

/* Pads R to a multiple of 4 rows with empty ones (a > b). */
static inline void bwd_rows_pad(bwd_rows *R) {
    for (R->np = R->nr; R->np % 4; R->np++) {
        R->q[R->np] = R->q[0], R->g[R->np] = R->g[0];
        R->a[R->np] = 1, R->b[R->np] = 0, R->lse[R->np] = 0, R->D[R->np] = 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Attention: bodies                                                         */

/* The 8 × 8 transpose: c[i] holds element i of r0..r7. */
#define T1L 0, 8, 1, 9, 4, 12, 5, 13
#define T1H 2, 10, 3, 11, 6, 14, 7, 15
#define T2L 0, 1, 8, 9, 4, 5, 12, 13
#define T2H 2, 3, 10, 11, 6, 7, 14, 15
#define T4L 0, 1, 2, 3, 8, 9, 10, 11
#define T4H 4, 5, 6, 7, 12, 13, 14, 15
#define SHUF(x, y, IDX) __builtin_shufflevector(x, y, IDX)

/* mt[d·ld + i] = r[i][d] for 8 rows, d < hd: the block of keys turned so
 * that a vector holds one column of 8 keys. */
INLINE void transpose8_body(const float *const r[VW], int64_t hd, float *mt, int64_t ld) {
    int64_t d = 0;
    for (; d + VW <= hd; d += VW) {
        vf r0 = LOADU(r[0] + d), r1 = LOADU(r[1] + d), r2 = LOADU(r[2] + d), r3 = LOADU(r[3] + d);
        vf r4 = LOADU(r[4] + d), r5 = LOADU(r[5] + d), r6 = LOADU(r[6] + d), r7 = LOADU(r[7] + d);
        vf t0 = SHUF(r0, r1, T1L), t1 = SHUF(r0, r1, T1H), t2 = SHUF(r2, r3, T1L), t3 = SHUF(r2, r3, T1H);
        vf t4 = SHUF(r4, r5, T1L), t5 = SHUF(r4, r5, T1H), t6 = SHUF(r6, r7, T1L), t7 = SHUF(r6, r7, T1H);
        vf u0 = SHUF(t0, t2, T2L), u1 = SHUF(t0, t2, T2H), u2 = SHUF(t1, t3, T2L), u3 = SHUF(t1, t3, T2H);
        vf u4 = SHUF(t4, t6, T2L), u5 = SHUF(t4, t6, T2H), u6 = SHUF(t5, t7, T2L), u7 = SHUF(t5, t7, T2H);
        float *o = mt + d * ld;
        STOREU(o, SHUF(u0, u4, T4L));
        STOREU(o + ld, SHUF(u1, u5, T4L));
        STOREU(o + 2 * ld, SHUF(u2, u6, T4L));
        STOREU(o + 3 * ld, SHUF(u3, u7, T4L));
        STOREU(o + 4 * ld, SHUF(u0, u4, T4H));
        STOREU(o + 5 * ld, SHUF(u1, u5, T4H));
        STOREU(o + 6 * ld, SHUF(u2, u6, T4H));
        STOREU(o + 7 * ld, SHUF(u3, u7, T4H));
    }
    for (; d < hd; d++)
        for (int i = 0; i < VW; i++) mt[d * ld + i] = r[i][d];
}

/* Marks keys [lo, hi] ∩ [j0, j0 + nk) in the difference array cnt[nk + 1]
 * (the block's keys some row attends); 0 if none of them. */
static inline int bwd_mark(int *cnt, int64_t j0, int nk, int64_t lo, int64_t hi) {
    int64_t a = lo > j0 ? lo : j0, b = hi < j0 + nk - 1 ? hi : j0 + nk - 1;
    if (a > b) return 0;
    cnt[a - j0]++, cnt[b - j0 + 1]--;
    return 1;
}

/* The block of nk keys from j0 (nk a multiple of VW): kr[i] points to the
 * kv head's columns of key j0 + i where cnt says a row attends it, else
 * to zero (a row of hd zeros: such keys may be NaN, or past n_kv, and are
 * never read); and the k and v rows turned into kt, vt [hd][nk]. */
INLINE void bwd_block_turn(const bwd_job *j, int64_t koff, int64_t j0, int nk, const int *cnt,
                           const float *zero, const float **kr, float *kt, float *vt) {
    const float *vr[KVB];
    for (int i = 0, c = 0; i < nk; i++) {
        c += cnt[i];
        kr[i] = c > 0 ? j->k + (j0 + i) * j->kv_stride + koff : zero;
        vr[i] = c > 0 ? j->v + (j0 + i) * j->kv_stride + koff : zero;
    }
    for (int i = 0; i < nk; i += VW) {
        transpose8_body(kr + i, j->hd, kt + i, nk);
        transpose8_body(vr + i, j->hd, vt + i, nk);
    }
}

/* s[2r + g], lane i: x_r · key (g·VW + i) of the turned block mt (columns
 * of ld floats), for 4 rows and 16 keys: 8 sums in registers, one load of
 * each key vector per column for the 4 rows. */
INLINE void bwd_scores_body(const float *const x[4], const float *mt, int64_t ld, int64_t hd, vf *s) {
    vf a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, c0 = {0}, c1 = {0}, e0 = {0}, e1 = {0};
    for (int64_t d = 0; d < hd; d++) {
        vf k0 = LOADU(mt + d * ld), k1 = LOADU(mt + d * ld + VW);
        float x0 = x[0][d], x1 = x[1][d], x2 = x[2][d], x3 = x[3][d];
        a0 += x0 * k0, a1 += x0 * k1;
        b0 += x1 * k0, b1 += x1 * k1;
        c0 += x2 * k0, c1 += x2 * k1;
        e0 += x3 * k0, e1 += x3 * k1;
    }
    s[0] = a0, s[1] = a1, s[2] = b0, s[3] = b1, s[4] = c0, s[5] = c1, s[6] = e0, s[7] = e1;
}

/* For rows r0..r0+3 of R and the 16 keys from k0 (in a block of ld keys):
 * p = exp(scale·q·k − lse) and ds = scale·p·(dout·v − D) into p, ds
 * ([4][ld], from column c0), 0 for keys outside a row's range. Returns 0
 * (and writes nothing) when no row of the four attends these keys. */
INLINE int bwd_probs4_body(const bwd_job *j, const bwd_rows *R, int r0, const float *kt, const float *vt,
                           int64_t ld, int64_t c0, int64_t k0, float *p, float *ds) {
    int any = 0;
    for (int r = r0; r < r0 + 4; r++) any |= R->a[r] <= R->b[r] && R->a[r] <= k0 + 2 * VW - 1 && R->b[r] >= k0;
    if (!any) return 0;
    vf sk[8], sv[8];
    bwd_scores_body(R->q + r0, kt + c0, ld, j->hd, sk);
    bwd_scores_body(R->g + r0, vt + c0, ld, j->hd, sv);
    const vi lane = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int r = 0; r < 4; r++) {
        int32_t a = R->a[r0 + r], b = R->b[r0 + r];
        float lse = R->lse[r0 + r], D = R->D[r0 + r];
        for (int g = 0; g < 2; g++) {
            vi idx = lane + (int32_t)(k0 + g * VW);
            vi ok = (idx >= a) & (idx <= b);
            vf e = VSEL(ok, sk[2 * r + g] * j->scale - lse, SPLAT(-INFINITY));
            vexp(&e);
            vf d = VSEL(ok, e * (sv[2 * r + g] - D) * j->scale, SPLAT(0));
            STOREU(p + r * ld + c0 + g * VW, e);
            STOREU(ds + r * ld + c0 + g * VW, d);
        }
    }
    return 1;
}

/* acc[r] += Σ_i w[r·ld + i] · kr[i] over keys i in [ia, ib], for 4 rows
 * (accumulator rows of hd): two vectors × four rows per step. */
INLINE void bwd_dq_update_body(float *acc, const float *w, int64_t ld, const float *const *kr, int64_t ia,
                               int64_t ib, int64_t hd) {
    float *o0 = acc, *o1 = acc + hd, *o2 = acc + 2 * hd, *o3 = acc + 3 * hd;
    int64_t d = 0;
    for (; d + 2 * VW <= hd; d += 2 * VW) {
        vf a0 = LOADU(o0 + d), a1 = LOADU(o0 + d + VW), b0 = LOADU(o1 + d), b1 = LOADU(o1 + d + VW);
        vf c0 = LOADU(o2 + d), c1 = LOADU(o2 + d + VW), e0 = LOADU(o3 + d), e1 = LOADU(o3 + d + VW);
        for (int64_t i = ia; i <= ib; i++) {
            vf k0 = LOADU(kr[i] + d), k1 = LOADU(kr[i] + d + VW);
            float w0 = w[i], w1 = w[ld + i], w2 = w[2 * ld + i], w3 = w[3 * ld + i];
            a0 += w0 * k0, a1 += w0 * k1;
            b0 += w1 * k0, b1 += w1 * k1;
            c0 += w2 * k0, c1 += w2 * k1;
            e0 += w3 * k0, e1 += w3 * k1;
        }
        STOREU(o0 + d, a0), STOREU(o0 + d + VW, a1), STOREU(o1 + d, b0), STOREU(o1 + d + VW, b1);
        STOREU(o2 + d, c0), STOREU(o2 + d + VW, c1), STOREU(o3 + d, e0), STOREU(o3 + d + VW, e1);
    }
    for (; d + VW <= hd; d += VW) {
        vf a0 = LOADU(o0 + d), b0 = LOADU(o1 + d), c0 = LOADU(o2 + d), e0 = LOADU(o3 + d);
        for (int64_t i = ia; i <= ib; i++) {
            vf k0 = LOADU(kr[i] + d);
            a0 += w[i] * k0, b0 += w[ld + i] * k0, c0 += w[2 * ld + i] * k0, e0 += w[3 * ld + i] * k0;
        }
        STOREU(o0 + d, a0), STOREU(o1 + d, b0), STOREU(o2 + d, c0), STOREU(o3 + d, e0);
    }
    for (; d < hd; d++) {
        float a0 = o0[d], b0 = o1[d], c0 = o2[d], e0 = o3[d];
        for (int64_t i = ia; i <= ib; i++) {
            float k0 = kr[i][d];
            a0 += w[i] * k0, b0 += w[ld + i] * k0, c0 += w[2 * ld + i] * k0, e0 += w[3 * ld + i] * k0;
        }
        o0[d] = a0, o1[d] = b0, o2[d] = c0, o3[d] = e0;
    }
}

INLINE float dot_body(const float *a, const float *b, int64_t n) {
    vf acc = {0};
    int64_t i = 0;
    for (; i + VW <= n; i += VW) acc += LOADU(a + i) * LOADU(b + i);
    float s = (float)hsum_d(&acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* The scratch of one worker (bwd_scratch_new). */
struct bwd_scratch {
    float *zero;        /* [hd] zeros */
    float *kt, *vt;     /* [hd][KVB] turned key block */
    float *acc;         /* pass 1: [rows][hd] dq; pass 2: [2][KVB][hd] dk, dv */
    float *p, *ds;      /* [rows][KVB] */
    bwd_rows R;
};

/* Pass 1, one tile: qt tokens × the group of query heads of kv head g. D
 * of each row, then dq = scale·Σ ds·k over the blocks of QKB keys the rows
 * attend (block outer: turned once for all the rows). */
INLINE void dq_tile_body(const bwd_job *j, bwd_scratch *S, int64_t tile) {
    int64_t hd = j->hd, g = tile % j->n_kvh, qblk = j->n_qblk - 1 - tile / j->n_kvh, koff = g * hd;
    int64_t t0 = qblk * j->qt, t1 = t0 + j->qt < j->n ? t0 + j->qt : j->n;
    bwd_rows *R = &S->R;
    int64_t jlo = INT64_MAX, jhi = -1;
    R->nr = 0;
    for (int64_t t = t0; t < t1; t++) {
        for (int64_t hh = 0; hh < j->group; hh++) {
            int64_t row = t * j->n_heads + g * j->group + hh;
            int r = R->nr++;
            R->q[r] = j->q + row * hd, R->g[r] = j->dout + row * hd;
            R->a[r] = j->k_lo[t], R->b[r] = j->k_hi[t];
            R->lse[r] = j->lse[row];
            R->D[r] = j->D[row] = dot_body(R->g[r], j->out + row * hd, hd);
        }
        if (j->k_lo[t] < jlo) jlo = j->k_lo[t];
        if (j->k_hi[t] > jhi) jhi = j->k_hi[t];
    }
    bwd_rows_pad(R);
    memset(S->acc, 0, (size_t)(R->np * hd) * sizeof *S->acc);
    const float *kr[KVB];
    for (int64_t j0 = jlo / QKB * QKB; j0 <= jhi; j0 += QKB) {
        int cnt[QKB + 1] = {0}, any = 0;
        for (int r = 0; r < R->nr; r += (int)j->group) any |= bwd_mark(cnt, j0, QKB, R->a[r], R->b[r]);
        if (!any) continue;
        bwd_block_turn(j, koff, j0, QKB, cnt, S->zero, kr, S->kt, S->vt);
        for (int r0 = 0; r0 < R->np; r0 += 4) {
            if (!bwd_probs4_body(j, R, r0, S->kt, S->vt, QKB, 0, j0, S->p, S->ds)) continue;
            int64_t ia = QKB, ib = -1;
            for (int r = r0; r < r0 + 4; r++) {
                int64_t a = R->a[r] - j0, b = R->b[r] - j0;
                if (a > b || b < 0 || a >= QKB) continue;
                if (a < ia) ia = a > 0 ? a : 0;
                if (b > ib) ib = b < QKB - 1 ? b : QKB - 1;
            }
            bwd_dq_update_body(S->acc + r0 * hd, S->ds, QKB, kr, ia, ib, hd);
        }
    }
    for (int r = 0; r < R->nr; r++) {
        int64_t t = t0 + r / j->group, row = t * j->n_heads + g * j->group + r % j->group;
        memcpy(j->dq + row * hd, S->acc + r * hd, (size_t)hd * sizeof *S->acc);
    }
}

/* acc[i] += Σ_r w[r·KVB + i] · x[r] for keys i in [ia, ib] of a block
 * (acc rows of hd): two keys × four vectors per step, the nr rows summed
 * in order. */
INLINE void bwd_rank_update(float *acc, const float *w, const float *const *x, int nr, int64_t ia, int64_t ib,
                            int64_t hd) {
    int64_t i = ia;
    for (; i + 1 <= ib; i += 2) {
        float *o0 = acc + i * hd, *o1 = o0 + hd;
        int64_t d = 0;
        for (; d + 4 * VW <= hd; d += 4 * VW) {
            vf a0 = LOADU(o0 + d), a1 = LOADU(o0 + d + VW), a2 = LOADU(o0 + d + 2 * VW),
               a3 = LOADU(o0 + d + 3 * VW);
            vf b0 = LOADU(o1 + d), b1 = LOADU(o1 + d + VW), b2 = LOADU(o1 + d + 2 * VW),
               b3 = LOADU(o1 + d + 3 * VW);
            for (int r = 0; r < nr; r++) {
                const float *xr = x[r] + d;
                float w0 = w[r * KVB + i], w1 = w[r * KVB + i + 1];
                vf x0 = LOADU(xr), x1 = LOADU(xr + VW), x2 = LOADU(xr + 2 * VW), x3 = LOADU(xr + 3 * VW);
                a0 += w0 * x0, a1 += w0 * x1, a2 += w0 * x2, a3 += w0 * x3;
                b0 += w1 * x0, b1 += w1 * x1, b2 += w1 * x2, b3 += w1 * x3;
            }
            STOREU(o0 + d, a0), STOREU(o0 + d + VW, a1), STOREU(o0 + d + 2 * VW, a2);
            STOREU(o0 + d + 3 * VW, a3);
            STOREU(o1 + d, b0), STOREU(o1 + d + VW, b1), STOREU(o1 + d + 2 * VW, b2);
            STOREU(o1 + d + 3 * VW, b3);
        }
        for (; d + VW <= hd; d += VW) {
            vf a0 = LOADU(o0 + d), b0 = LOADU(o1 + d);
            for (int r = 0; r < nr; r++) {
                vf x0 = LOADU(x[r] + d);
                a0 += w[r * KVB + i] * x0;
                b0 += w[r * KVB + i + 1] * x0;
            }
            STOREU(o0 + d, a0), STOREU(o1 + d, b0);
        }
        for (; d < hd; d++) {
            float a0 = o0[d], b0 = o1[d];
            for (int r = 0; r < nr; r++) {
                a0 += w[r * KVB + i] * x[r][d];
                b0 += w[r * KVB + i + 1] * x[r][d];
            }
            o0[d] = a0, o1[d] = b0;
        }
    }
    if (i == ib) {
        float *o0 = acc + i * hd;
        int64_t d = 0;
        for (; d + VW <= hd; d += VW) {
            vf a0 = LOADU(o0 + d);
            for (int r = 0; r < nr; r++) a0 += w[r * KVB + i] * LOADU(x[r] + d);
            STOREU(o0 + d, a0);
        }
        for (; d < hd; d++) {
            float a0 = o0[d];
            for (int r = 0; r < nr; r++) a0 += w[r * KVB + i] * x[r][d];
            o0[d] = a0;
        }
    }
}

/* The rows gathered so far (R->nr of them, keys [ua, ub] relative to j0):
 * p and ds, then the rank updates dv += p·dout, dk += ds·q. */
INLINE void dkdv_flush(const bwd_job *j, bwd_scratch *S, int64_t j0, int64_t ua, int64_t ub) {
    bwd_rows *R = &S->R;
    int64_t hd = j->hd;
    bwd_rows_pad(R);
    for (int r0 = 0; r0 < R->np; r0 += 4) {
        for (int64_t c0 = 0; c0 < KVB; c0 += 2 * VW) {
            if (bwd_probs4_body(j, R, r0, S->kt, S->vt, KVB, c0, j0 + c0, S->p + r0 * KVB, S->ds + r0 * KVB))
                continue;
            for (int r = r0; r < r0 + 4; r++) { /* no row attends these keys */
                memset(S->p + r * KVB + c0, 0, 2 * VW * sizeof *S->p);
                memset(S->ds + r * KVB + c0, 0, 2 * VW * sizeof *S->ds);
            }
        }
    }
    float *ak = S->acc, *av = ak + KVB * hd;
    bwd_rank_update(av, S->p, R->g, R->nr, ua, ub, hd);
    bwd_rank_update(ak, S->ds, R->q, R->nr, ua, ub, hd);
    R->nr = 0;
}

/* Pass 2, one item: kv head g, keys [j0, j1]. Every query attending the
 * block, in order, with each head of the group, gathered RB rows at a
 * time. */
INLINE void dkdv_item_body(const bwd_job *j, bwd_scratch *S, int64_t item) {
    int64_t hd = j->hd, st = j->kv_stride, kblk = item / j->n_kvh, g = item % j->n_kvh, koff = g * hd;
    int64_t j0 = kblk * KVB, j1 = j0 + KVB - 1 < j->n_kv - 1 ? j0 + KVB - 1 : j->n_kv - 1;
    bwd_rows *R = &S->R;
    float *ak = S->acc, *av = ak + KVB * hd;
    memset(ak, 0, (size_t)(2 * KVB * hd) * sizeof *ak);
    int cnt[KVB + 1] = {0}, any = 0;
    for (int64_t t = 0; t < j->n; t++) any |= bwd_mark(cnt, j0, (int)(j1 - j0 + 1), j->k_lo[t], j->k_hi[t]);
    if (any) {
        const float *kr[KVB];
        bwd_block_turn(j, koff, j0, KVB, cnt, S->zero, kr, S->kt, S->vt);
        int64_t ua = INT64_MAX, ub = -1;
        R->nr = 0;
        for (int64_t t = 0; t < j->n; t++) {
            int64_t a = j->k_lo[t] > j0 ? j->k_lo[t] : j0, b = j->k_hi[t] < j1 ? j->k_hi[t] : j1;
            if (a > b) continue;
            if (a < ua) ua = a;
            if (b > ub) ub = b;
            for (int64_t hh = 0; hh < j->group; hh++) {
                int64_t row = t * j->n_heads + g * j->group + hh;
                int r = R->nr++;
                R->q[r] = j->q + row * hd, R->g[r] = j->dout + row * hd;
                R->a[r] = (int32_t)a, R->b[r] = (int32_t)b;
                R->lse[r] = j->lse[row], R->D[r] = j->D[row];
                if (R->nr == RB) {
                    dkdv_flush(j, S, j0, ua - j0, ub - j0);
                    ua = hh + 1 < j->group ? a : INT64_MAX, ub = hh + 1 < j->group ? b : -1;
                }
            }
        }
        if (R->nr > 0) dkdv_flush(j, S, j0, ua - j0, ub - j0);
    }
    for (int64_t i = 0; i <= j1 - j0; i++) {
        memcpy(j->dk + (j0 + i) * st + koff, ak + i * hd, (size_t)hd * sizeof *ak);
        memcpy(j->dv + (j0 + i) * st + koff, av + i * hd, (size_t)hd * sizeof *av);
    }
}

/* ------------------------------------------------------------------------ */
/* The kernels of one SIMD level                                             */

typedef struct bwd_kernels {
    void (*rms_row)(float *dx, const float *dy, const float *x, const float *w, float one, int64_t n, float eps,
                    int accumulate);
    void (*ln_row)(float *dx, const float *dy, const float *x, const float *w, int64_t n, float eps,
                   int accumulate);
    void (*sig_bwd)(float *dg, float *du, const float *dy, const float *x, const float *up, int64_t n,
                    int tanh_form);
    void (*dq_tile)(const bwd_job *j, bwd_scratch *S, int64_t tile);
    void (*dkdv_item)(const bwd_job *j, bwd_scratch *S, int64_t item);
} bwd_kernels;

/* Defines the copy of every body for one target (ATTR) and its table. */
#define BWD_KERNELS(SFX, ATTR)                                                                     \
    ATTR static void rms_row_##SFX(float *dx, const float *dy, const float *x, const float *w,      \
                                   float one, int64_t n, float eps, int accumulate) {              \
        if (accumulate) rms_bwd_row_body(dx, dy, x, w, one, n, eps, 1);                            \
        else rms_bwd_row_body(dx, dy, x, w, one, n, eps, 0);                                       \
    }                                                                                              \
    ATTR static void ln_row_##SFX(float *dx, const float *dy, const float *x, const float *w,       \
                                  int64_t n, float eps, int accumulate) {                          \
        if (accumulate) ln_bwd_row_body(dx, dy, x, w, n, eps, 1);                                  \
        else ln_bwd_row_body(dx, dy, x, w, n, eps, 0);                                             \
    }                                                                                              \
    ATTR static void sig_bwd_##SFX(float *dg, float *du, const float *dy, const float *x,           \
                                   const float *up, int64_t n, int tanh_form) {                    \
        if (up) {                                                                                  \
            if (tanh_form) sig_bwd_body(dg, du, dy, x, up, n, 1);                                  \
            else sig_bwd_body(dg, du, dy, x, up, n, 0);                                            \
        } else {                                                                                   \
            if (tanh_form) sig_bwd_body(dg, NULL, dy, x, NULL, n, 1);                              \
            else sig_bwd_body(dg, NULL, dy, x, NULL, n, 0);                                        \
        }                                                                                          \
    }                                                                                              \
    ATTR static void dq_tile_##SFX(const bwd_job *j, bwd_scratch *S, int64_t tile) {               \
        dq_tile_body(j, S, tile);                                                                  \
    }                                                                                              \
    ATTR static void dkdv_item_##SFX(const bwd_job *j, bwd_scratch *S, int64_t item) {             \
        dkdv_item_body(j, S, item);                                                                \
    }                                                                                              \
    static const bwd_kernels bwd_kernels_##SFX = {                                                 \
        .rms_row = rms_row_##SFX,                                                                  \
        .ln_row = ln_row_##SFX,                                                                    \
        .sig_bwd = sig_bwd_##SFX,                                                                  \
        .dq_tile = dq_tile_##SFX,                                                                  \
        .dkdv_item = dkdv_item_##SFX,                                                              \
    };

BWD_KERNELS(base, )

#if defined(__x86_64__) && defined(__GNUC__)
BWD_KERNELS(avx2, TARGET_AVX2)
BWD_KERNELS(avx512, TARGET_AVX512)
#endif

static const bwd_kernels *kernels_of(gg_backend *be) {
#if defined(__x86_64__) && defined(__GNUC__)
    int simd = cpu_ctx_of(be)->simd;
    if (simd >= GG_SIMD_AVX2 && __builtin_cpu_supports("fma"))
        return simd >= GG_SIMD_AVX512 ? &bwd_kernels_avx512 : &bwd_kernels_avx2;
#endif
    return &bwd_kernels_base;
}

/* ------------------------------------------------------------------------ */
/* Norms                                                                     */

typedef struct norm_bwd_ctx {
    const bwd_kernels *k;
    float *dx;
    const float *dy, *x, *w;
    int64_t dim;
    float eps;
    int plus_one, accumulate;
} norm_bwd_ctx;

static void rmsnorm_bwd_rows(void *arg, int64_t lo, int64_t hi) {
    const norm_bwd_ctx *c = arg;
    for (int64_t r = lo; r < hi; r++)
        c->k->rms_row(c->dx + r * c->dim, c->dy + r * c->dim, c->x + r * c->dim, c->w,
                      c->plus_one ? 1.0f : 0.0f, c->dim, c->eps, c->accumulate);
}

void cpu_rmsnorm_bwd(gg_backend *be, float *dx, const float *dy, const float *x, const float *w, int64_t n,
                     int64_t dim, float eps, int plus_one, float beta) {
    norm_bwd_ctx c = {kernels_of(be), dx, dy, x, w, dim, eps, plus_one, beta != 0.0f};
    par_for(be, n, 1, n * dim, rmsnorm_bwd_rows, &c);
}

static void layernorm_bwd_rows(void *arg, int64_t lo, int64_t hi) {
    const norm_bwd_ctx *c = arg;
    for (int64_t r = lo; r < hi; r++)
        c->k->ln_row(c->dx + r * c->dim, c->dy + r * c->dim, c->x + r * c->dim, c->w, c->dim, c->eps,
                     c->accumulate);
}

void cpu_layernorm_bwd(gg_backend *be, float *dx, const float *dy, const float *x, const float *w, int64_t n,
                       int64_t dim, float eps, float beta) {
    norm_bwd_ctx c = {kernels_of(be), dx, dy, x, w, dim, eps, 0, beta != 0.0f};
    par_for(be, n, 1, n * dim, layernorm_bwd_rows, &c);
}

/* ------------------------------------------------------------------------ */
/* Activations                                                               */

typedef struct act_bwd_ctx {
    const bwd_kernels *k;
    float *dg, *du;
    const float *dy, *x, *up;
    gg_act a;
} act_bwd_ctx;

/* GELU (erf form): f = x·Φ(x), f' = Φ(x) + x·φ(x), Φ through erfc (no
 * cancellation for negative x). */
static void gelu_bwd_range(const act_bwd_ctx *c, int64_t lo, int64_t hi) {
    const float r2 = 0.70710678118654752f, rpi = 0.39894228040143268f; /* 1/√2, 1/√(2π) */
    for (int64_t i = lo; i < hi; i++) {
        float v = c->x[i], g = c->dy[i];
        float cdf = 0.5f * erfcf(-v * r2), fp = cdf + v * expf(-0.5f * v * v) * rpi;
        if (c->up) {
            float u = c->up[i];
            c->dg[i] = g * u * fp;
            c->du[i] = g * v * cdf;
        } else {
            c->dg[i] = g * fp;
        }
    }
}

static void act_bwd_range(void *arg, int64_t lo, int64_t hi) {
    const act_bwd_ctx *c = arg;
    if (c->a == GG_ACT_GELU) {
        gelu_bwd_range(c, lo, hi);
        return;
    }
    c->k->sig_bwd(c->dg + lo, c->du ? c->du + lo : NULL, c->dy + lo, c->x + lo, c->up ? c->up + lo : NULL,
                  hi - lo, c->a == GG_ACT_GELU_TANH);
}

void cpu_act_bwd(gg_backend *be, float *dx, const float *dy, const float *x, int64_t n, gg_act a) {
    act_bwd_ctx c = {kernels_of(be), dx, NULL, dy, x, NULL, a};
    par_for(be, n, SUM_BLOCK, n, act_bwd_range, &c);
}

void cpu_glu_bwd(gg_backend *be, float *dgate, float *dup, const float *dy, const float *gate, const float *up,
                 int64_t n, gg_act a) {
    act_bwd_ctx c = {kernels_of(be), dgate, dup, dy, gate, up, a};
    par_for(be, n, SUM_BLOCK, n, act_bwd_range, &c);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */

/* One worker's scratch for rows of up to max_rows (then padded to 4). */
static void bwd_scratch_new(bwd_scratch *S, const bwd_job *j) {
    int64_t hd = j->hd, rows = (j->qt * j->group > RB ? j->qt * j->group : RB) + 3;
    int64_t acc = rows * hd > 2 * KVB * hd ? rows * hd : 2 * KVB * hd;
    size_t nf = (size_t)(hd + 2 * hd * KVB + acc + 2 * rows * KVB);
    S->zero = cpu_scratch_alloc(nf * sizeof(float));
    memset(S->zero, 0, (size_t)hd * sizeof(float));
    S->kt = S->zero + hd, S->vt = S->kt + hd * KVB, S->acc = S->vt + hd * KVB;
    S->p = S->acc + acc, S->ds = S->p + rows * KVB;
    S->R.q = cpu_scratch_alloc((size_t)(2 * rows) * sizeof *S->R.q);
    S->R.g = S->R.q + rows;
    S->R.a = cpu_scratch_alloc((size_t)(2 * rows) * sizeof *S->R.a);
    S->R.b = S->R.a + rows;
    S->R.lse = cpu_scratch_alloc((size_t)(2 * rows) * sizeof *S->R.lse);
    S->R.D = S->R.lse + rows;
}

static void bwd_scratch_free(bwd_scratch *S) {
    free(S->zero), free(S->R.q), free(S->R.a), free(S->R.lse);
}

static void dq_worker(void *arg, int ith, int nth) {
    bwd_job *j = arg;
    bwd_scratch S;
    bwd_scratch_new(&S, j);
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (t >= j->n_tiles) break;
        j->dq_tile(j, &S, t);
    }
    bwd_scratch_free(&S);
}

static void dkdv_worker(void *arg, int ith, int nth) {
    bwd_job *j = arg;
    bwd_scratch S;
    bwd_scratch_new(&S, j);
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (t >= j->n_items) break;
        j->dkdv_item(j, &S, t);
    }
    bwd_scratch_free(&S);
}

void cpu_attention_bwd(gg_backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                       const float *k, const float *v, const float *out, const float *lse, int64_t n,
                       int64_t n_kv, int64_t kv_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                       const int32_t *k_lo, const int32_t *k_hi, float scale) {
    if (n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0) return;
    const bwd_kernels *kr = kernels_of(be);
    bwd_job j = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .q = q, .k = k, .v = v, .out = out, .lse = lse,
                 .k_lo = k_lo, .k_hi = k_hi, .n = n, .n_kv = n_kv, .kv_stride = kv_stride, .n_heads = n_heads,
                 .n_kvh = n_kv_heads, .hd = head_dim, .group = n_heads / n_kv_heads, .scale = scale,
                 .dq_tile = kr->dq_tile, .dkdv_item = kr->dkdv_item};
    j.D = cpu_scratch_alloc((size_t)(n > 0 ? n * n_heads : 1) * sizeof *j.D);
    j.qt = j.group < QROWS ? QROWS / j.group : 1;
    j.n_qblk = (n + j.qt - 1) / j.qt;
    j.n_tiles = n > 0 ? j.n_qblk * j.n_kvh : 0;
    j.n_kblk = (n_kv + KVB - 1) / KVB;
    j.n_items = j.n_kblk * j.n_kvh;
    gg_pool *pool = cpu_ctx_of(be)->pool;

    atomic_init(&j.next, 0);
    if (j.n_tiles > 1) gg_pool_run(pool, dq_worker, &j);
    else if (j.n_tiles == 1) dq_worker(&j, 0, 1);

    atomic_store_explicit(&j.next, 0, memory_order_relaxed);
    if (j.n_items > 1) gg_pool_run(pool, dkdv_worker, &j);
    else if (j.n_items == 1) dkdv_worker(&j, 0, 1);
    free(j.D);
}

/* test_backend_ops.c — the CPU backend's non-matmul ops (backend-cpu/ops.c)
 * against the scalar references (backend-cpu/ref_ops.c), through the ops
 * table: rmsnorm, layernorm, rope, attention (with lse), act, glu, softmax,
 * add, scale, argmax, topk. Every SIMD level this CPU has
 * (gg_cpu_simd_cap), random data from a fixed seed, odd sizes, sizes that
 * run on the thread pool, in-place calls. A few hand-computed values pin
 * the references themselves.
 *
 * Tolerances (the fast paths compute in float, the references in double;
 * the worst error seen is printed as "# " lines):
 * - norms, rope, attention outputs: max |out − ref| / max |ref| <= 1e-5
 *   (seen: <= 1e-6); lse: |out − ref| <= 1e-5 · (1 + |ref|) per element;
 * - act, glu: |out − ref| <= 2e-6 · (1 + |ref|) per element (a float exp or
 *   erf is a few ulp);
 * - softmax: |out − ref| <= 2e-6 · |ref| + 1e-30 per element: with logits
 *   in [-12, 12], x − max rounded to float is off by up to ulp(24)/2 ≈ 1e-6,
 *   which exp turns into that much relative error;
 * - add, scale: exact (one float operation); argmax, topk: exact. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-cpu/cpu_backend.h"
#include "backend-cpu/cpu_internal.h"
#include "backend-cpu/ref.h"
#include "tests/check.h"
#include "tests/rng.h"

#define TOL_NORM 1e-5
#define TOL_ATTN 1e-5
#define TOL_ACT 2e-6
#define TOL_SOFTMAX 2e-6

/* ------------------------------------------------------------------------ */
/* Deterministic random numbers                                              */

/* n floats uniform in [lo, hi) (never all zero). */
static float *rand_vec(size_t n, double lo, double hi) {
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (float)(lo + (hi - lo) * rng_unit());
    return v;
}

static float *dup_vec(const float *x, size_t n) {
    float *v = malloc((n ? n : 1) * sizeof *v);
    memcpy(v, x, n * sizeof *v);
    return v;
}

static void nan_fill(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* max |a − r| / max |r| (infinite when a has a NaN where r has none). */
static double rel_err(const float *a, const float *r, size_t n) {
    double e = 0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(r[i])) return INFINITY;
        if (isnan(r[i])) continue;
        double d = fabs((double)a[i] - r[i]);
        if (d > e) e = d;
        if (fabs(r[i]) > m) m = fabs(r[i]);
    }
    return e / m;
}

/* max over elements of |a − r| / (rel·|r| + floor), i.e. <= 1 passes. */
static double elem_err(const float *a, const float *r, size_t n, double rel, double floor_) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(r[i])) return INFINITY;
        if (isnan(r[i])) continue;
        double d = fabs((double)a[i] - r[i]) / (rel * fabs(r[i]) + floor_);
        if (d > e) e = d;
    }
    return e;
}

/* The largest error each test saw (printed as a "# " line); attention's
 * lse apart. */
static double worst, worst_lse;

static double track(double e) {
    if (e > worst) worst = e;
    return e;
}

/* An elem_err result (in tolerances) as a relative error. */
static double track_elem(double e, double tol) {
    track(e * tol);
    return e;
}

static void report(const char *what) {
    printf("# %s: worst error %.3g\n", what, worst);
    worst = 0;
}

static void report_attention(const char *what) {
    printf("# %s: worst out error %.3g, lse %.3g\n", what, worst, worst_lse);
    worst = worst_lse = 0;
}

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                  */

static gg_backend *be;

static const int all_levels[] = {GG_SIMD_SCALAR, GG_SIMD_AVX2, GG_SIMD_AVX512};
static const char *const level_names[] = {"scalar", "avx2", "avx512"};
#define N_LEVELS 3

/* Caps the backend at level; 0 if this CPU does not have it. */
static int use_level(int level) { return gg_cpu_simd_cap(be, level) == level; }

/* ------------------------------------------------------------------------ */
/* The references themselves, by hand                                        */

static void test_ref_known_values(void) {
    CHECK(fabsf(gg_ref_act1(1.0f, GG_ACT_GELU) - 0.8413447f) < 1e-7f, "gelu(1) = %.8f",
          gg_ref_act1(1.0f, GG_ACT_GELU));
    CHECK(fabsf(gg_ref_act1(1.0f, GG_ACT_SILU) - 0.7310586f) < 1e-7f, "silu(1) = %.8f",
          gg_ref_act1(1.0f, GG_ACT_SILU));
    CHECK(fabsf(gg_ref_act1(1.0f, GG_ACT_GELU_TANH) - 0.8411920f) < 1e-7f, "gelu_tanh(1) = %.8f",
          gg_ref_act1(1.0f, GG_ACT_GELU_TANH));
    CHECK(fabsf(gg_ref_act1(-2.0f, GG_ACT_SILU) + 0.2384058f) < 1e-7f, "silu(-2) = %.8f",
          gg_ref_act1(-2.0f, GG_ACT_SILU));
    CHECK(gg_ref_act1(0.0f, GG_ACT_GELU) == 0.0f, "gelu(0)");

    /* rmsnorm [3, 4]: rms = sqrt(12.5) */
    float x[2] = {3, 4}, w[2] = {1, 0.5f}, y[2];
    gg_ref_rmsnorm(y, x, w, 1, 2, 0.0f, 0);
    CHECK(fabsf(y[0] - 0.8485281f) < 1e-6f && fabsf(y[1] - 0.5656854f) < 1e-6f, "rmsnorm %g %g", y[0], y[1]);
    gg_ref_rmsnorm(y, x, w, 1, 2, 0.0f, 1); /* · (1 + w) */
    CHECK(fabsf(y[0] - 1.6970563f) < 1e-6f && fabsf(y[1] - 1.6970563f) < 1e-6f, "rmsnorm+1 %g %g", y[0], y[1]);

    /* layernorm [1, 3]: mean 2, var 1 */
    float b[2] = {0.25f, -1};
    float lx[2] = {1, 3};
    gg_ref_layernorm(y, lx, w, b, 1, 2, 0.0f);
    CHECK(fabsf(y[0] + 0.75f) < 1e-6f && fabsf(y[1] + 0.5f) < 1e-6f, "layernorm %g %g", y[0], y[1]);

    /* softmax [0, ln 3] = [1/4, 3/4] */
    float s[2] = {0, logf(3.0f)};
    gg_ref_softmax(s, 1, 2);
    CHECK(fabsf(s[0] - 0.25f) < 1e-7f && fabsf(s[1] - 0.75f) < 1e-7f, "softmax %g %g", s[0], s[1]);

    /* rope, hd 2, pos 1, inv_freq 1, factor 2: [1, 0] -> 2·[cos 1, sin 1] */
    float r[2] = {1, 0}, f1 = 1.0f;
    int32_t p1 = 1;
    gg_ref_rope(r, 1, 2, 1, 2, &p1, &f1, 2.0f);
    CHECK(fabsf(r[0] - 1.0806046f) < 1e-6f && fabsf(r[1] - 1.6829420f) < 1e-6f, "rope %g %g", r[0], r[1]);

    /* attention, one query, hd 1: q = 1, keys 0 and ln 3, scale 1 ->
     * weights 1/4, 3/4; v = 4, 8 -> 7; lse = log(1 + 3) */
    float q = 1, k[2] = {0, logf(3.0f)}, v[2] = {4, 8}, o, lse;
    int32_t lo = 0, hi = 1;
    gg_ref_attention(&o, &q, k, v, 1, 2, 1, 1, 1, 1, &lo, &hi, 1.0f, &lse);
    CHECK(fabsf(o - 7.0f) < 1e-6f && fabsf(lse - logf(4.0f)) < 1e-6f, "attention %g lse %g", o, lse);

    /* argmax: NaN never wins, first on ties */
    float am[5] = {NAN, 1, 3, 3, NAN};
    int32_t id;
    gg_ref_argmax(&id, am, 1, 5);
    CHECK(id == 2, "argmax %d", id);

    /* topk: descending, ties by lower index, NaN last */
    float tk[6] = {1, 5, NAN, 5, -1, 2}, tv[6];
    int32_t ti[6];
    gg_ref_topk(tv, ti, tk, 1, 6, 6);
    const int32_t want[6] = {1, 3, 5, 0, 4, 2};
    CHECK(!memcmp(ti, want, sizeof want), "topk ids %d %d %d %d %d %d", ti[0], ti[1], ti[2], ti[3], ti[4], ti[5]);
}

/* ------------------------------------------------------------------------ */
/* Norms                                                                     */

static const int64_t norm_shapes[][2] = {{1, 7}, {3, 64}, {2, 100}, {5, 1000}, {9, 4099}, {64, 1024}};
#define N_NORM_SHAPES (sizeof norm_shapes / sizeof norm_shapes[0])

static void test_rmsnorm(void) {
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        for (size_t si = 0; si < N_NORM_SHAPES; si++) {
            for (int plus_one = 0; plus_one < 2; plus_one++) {
                int64_t n = norm_shapes[si][0], dim = norm_shapes[si][1];
                size_t ne = (size_t)(n * dim);
                float *x = rand_vec(ne, -2, 2), *w = rand_vec((size_t)dim, -2, 2);
                float *ref = malloc(ne * sizeof *ref), *out = malloc(ne * sizeof *out);
                gg_ref_rmsnorm(ref, x, w, n, dim, 1e-6f, plus_one);
                be->rmsnorm(be, out, x, w, n, dim, 1e-6f, plus_one);
                double e = track(rel_err(out, ref, ne));
                CHECK(e <= TOL_NORM, "%s [%lld, %lld] plus_one %d: err %.3g", level_names[lv], (long long)n,
                      (long long)dim, plus_one, e);
                be->rmsnorm(be, x, x, w, n, dim, 1e-6f, plus_one); /* in place */
                e = track(rel_err(x, ref, ne));
                CHECK(e <= TOL_NORM, "%s in place [%lld, %lld]: err %.3g", level_names[lv], (long long)n,
                      (long long)dim, e);
                free(x), free(w), free(ref), free(out);
            }
        }
    }
    report("rmsnorm");
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

static void test_layernorm(void) {
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        for (size_t si = 0; si < N_NORM_SHAPES; si++) {
            int64_t n = norm_shapes[si][0], dim = norm_shapes[si][1];
            size_t ne = (size_t)(n * dim);
            /* off-centre rows: the mean matters */
            float *x = rand_vec(ne, 1, 5), *w = rand_vec((size_t)dim, -2, 2), *b = rand_vec((size_t)dim, -1, 1);
            float *ref = malloc(ne * sizeof *ref), *out = malloc(ne * sizeof *out);
            gg_ref_layernorm(ref, x, w, b, n, dim, 1e-5f);
            be->layernorm(be, out, x, w, b, n, dim, 1e-5f);
            double e = track(rel_err(out, ref, ne));
            CHECK(e <= TOL_NORM, "%s [%lld, %lld]: err %.3g", level_names[lv], (long long)n, (long long)dim, e);
            be->layernorm(be, x, x, w, b, n, dim, 1e-5f);
            e = track(rel_err(x, ref, ne));
            CHECK(e <= TOL_NORM, "%s in place [%lld, %lld]: err %.3g", level_names[lv], (long long)n,
                  (long long)dim, e);
            free(x), free(w), free(b), free(ref), free(out);
        }
    }
    report("layernorm");
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

/* ------------------------------------------------------------------------ */
/* RoPE                                                                      */

/* One rope call on x[n, row_stride] (extra columns past the heads must be
 * left alone), positions up to max_pos. */
static void check_rope(const char *lvname, int64_t n, int64_t n_heads, int64_t hd, int64_t extra, int64_t max_pos,
                       float factor) {
    int64_t stride = n_heads * hd + extra;
    size_t ne = (size_t)(n * stride);
    float *x = rand_vec(ne, -2, 2), *ref = dup_vec(x, ne), *inv = malloc((size_t)(hd / 2) * sizeof *inv);
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    for (int64_t i = 0; i < hd / 2; i++) inv[i] = (float)pow(10000.0, -2.0 * (double)i / (double)hd);
    for (int64_t t = 0; t < n; t++) pos[t] = (int32_t)(rng_u64() % (uint64_t)(max_pos + 1));
    gg_ref_rope(ref, n, stride, n_heads, hd, pos, inv, factor);
    be->rope(be, x, n, stride, n_heads, hd, pos, inv, factor);
    double e = track(rel_err(x, ref, ne));
    CHECK(e <= TOL_NORM, "%s n %lld heads %lld hd %lld extra %lld: err %.3g", lvname, (long long)n,
          (long long)n_heads, (long long)hd, (long long)extra, e);
    free(x), free(ref), free(inv), free(pos);
}

static void test_rope(void) {
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        const char *ln = level_names[lv];
        check_rope(ln, 1, 1, 2, 0, 10, 1.0f);
        check_rope(ln, 3, 4, 64, 0, 100, 1.0f);
        check_rope(ln, 5, 2, 22, 13, 100000, 1.0f); /* hd/2 = 11: vector tail; fused-row stride */
        check_rope(ln, 7, 3, 128, 128, 4096, 1.2f); /* attn_factor (YaRN) */
        check_rope(ln, 200, 8, 64, 0, 32768, 1.0f); /* on the pool */
    }
    report("rope");
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */

typedef struct attn_case {
    const char *name;
    int64_t n, n_kv, n_heads, n_kvh, hd, pad; /* kv_stride = n_kvh·hd + pad */
    int32_t *lo, *hi;                         /* per query, owned */
} attn_case;

/* k_lo = max(0, slot − window + 1) (window 0: no window), k_hi = slot, for
 * queries at slots n_kv − n .. n_kv − 1. */
static void causal_ranges(attn_case *c, int64_t window) {
    c->lo = malloc((size_t)c->n * sizeof *c->lo);
    c->hi = malloc((size_t)c->n * sizeof *c->hi);
    for (int64_t t = 0; t < c->n; t++) {
        int64_t slot = c->n_kv - c->n + t;
        int64_t lo = window ? slot - window + 1 : 0;
        c->lo[t] = (int32_t)(lo > 0 ? lo : 0);
        c->hi[t] = (int32_t)slot;
    }
}

/* Random q, k, v; k and v rows outside every query's range (and the
 * padding) are NaN, so reading them would show. The fast op runs at every
 * level, with and without lse. */
static void check_attention(attn_case *c) {
    int64_t st = c->n_kvh * c->hd + c->pad, qd = c->n_heads * c->hd;
    size_t nq = (size_t)(c->n * qd), nkv = (size_t)(c->n_kv * st), nl = (size_t)(c->n * c->n_heads);
    float *q = rand_vec(nq, -2, 2), *k = rand_vec(nkv, -2, 2), *v = rand_vec(nkv, -2, 2);
    for (int64_t j = 0; j < c->n_kv; j++) {
        int used = 0;
        for (int64_t t = 0; t < c->n; t++) used |= c->lo[t] <= j && j <= c->hi[t];
        for (int64_t d = 0; d < st; d++)
            if (!used || d >= c->n_kvh * c->hd) k[j * st + d] = v[j * st + d] = NAN;
    }
    float scale = 1.0f / sqrtf((float)c->hd);
    float *ref = malloc(nq * sizeof *ref), *out = malloc(nq * sizeof *out);
    float *lref = malloc(nl * sizeof *lref), *lse = malloc(nl * sizeof *lse);
    gg_ref_attention(ref, q, k, v, c->n, c->n_kv, st, c->n_heads, c->n_kvh, c->hd, c->lo, c->hi, scale, lref);
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        nan_fill(out, nq), nan_fill(lse, nl); /* every output must be written */
        be->attention(be, out, q, k, v, c->n, c->n_kv, st, c->n_heads, c->n_kvh, c->hd, c->lo, c->hi, scale, lse);
        double e = track(rel_err(out, ref, nq)), el = elem_err(lse, lref, nl, TOL_ATTN, TOL_ATTN);
        if (el * TOL_ATTN > worst_lse) worst_lse = el * TOL_ATTN;
        CHECK(e <= TOL_ATTN, "%s %s: out err %.3g", level_names[lv], c->name, e);
        CHECK(el <= 1.0, "%s %s: lse err %.3g of tolerance", level_names[lv], c->name, el);
        nan_fill(out, nq);
        be->attention(be, out, q, k, v, c->n, c->n_kv, st, c->n_heads, c->n_kvh, c->hd, c->lo, c->hi, scale, NULL);
        e = track(rel_err(out, ref, nq));
        CHECK(e <= TOL_ATTN, "%s %s without lse: out err %.3g", level_names[lv], c->name, e);
    }
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
    free(q), free(k), free(v), free(ref), free(out), free(lref), free(lse);
    free(c->lo), free(c->hi);
}

static void test_attention_prefill(void) {
    attn_case cs[] = {
        {"mha causal", 37, 37, 4, 4, 64, 0, NULL, NULL},
        {"gqa 8/2 causal", 50, 50, 8, 2, 64, 0, NULL, NULL},
        {"mqa 8/1 causal hd 32", 19, 19, 8, 1, 32, 0, NULL, NULL},
        {"gqa 6/2 hd 13 padded", 23, 23, 6, 2, 13, 5, NULL, NULL},
        {"mha one head", 1, 1, 1, 1, 16, 0, NULL, NULL},
        {"gqa 12/1 (group > 8)", 5, 5, 12, 1, 24, 0, NULL, NULL},
        {"after a cache of 100", 30, 130, 8, 2, 64, 3, NULL, NULL},
        {"gqa 32/8 prefill 300", 300, 300, 32, 8, 64, 0, NULL, NULL},
        {"gqa 8/4 hd 256", 20, 20, 8, 4, 256, 0, NULL, NULL},
        {"mha 2 hd 300 (scratch on the heap)", 9, 9, 2, 2, 300, 1, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        causal_ranges(&cs[i], 0);
        check_attention(&cs[i]);
    }
    report_attention("attention prefill");
}

static void test_attention_decode(void) {
    attn_case cs[] = {
        {"decode gqa 32/8 hd 64 over 2000", 1, 2000, 32, 8, 64, 0, NULL, NULL},
        {"decode mha 8 hd 128 over 3001", 1, 3001, 8, 8, 128, 0, NULL, NULL},
        {"decode mqa 16/1 over 700", 1, 700, 16, 1, 64, 7, NULL, NULL},
        {"decode one head over 1", 1, 1, 1, 1, 64, 0, NULL, NULL},
        {"two tokens over 999", 2, 999, 4, 2, 40, 0, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        causal_ranges(&cs[i], 0);
        check_attention(&cs[i]);
    }
    report_attention("attention decode");
}

static void test_attention_masks(void) {
    /* sliding window of 7 */
    attn_case w = {"window 7", 40, 60, 4, 2, 32, 0, NULL, NULL};
    causal_ranges(&w, 7);
    check_attention(&w);

    /* packed segments [0, 13), [13, 30), [30, 41): k_lo = segment start */
    attn_case p = {"packed segments", 41, 41, 8, 2, 64, 0, NULL, NULL};
    causal_ranges(&p, 0);
    for (int64_t t = 0; t < p.n; t++) p.lo[t] = t < 13 ? 0 : t < 30 ? 13 : 30;
    check_attention(&p);

    /* two sequences far apart in one cache: keys between them are NaN */
    attn_case s = {"two sequences", 4, 300, 8, 8, 64, 0, NULL, NULL};
    causal_ranges(&s, 0);
    int32_t lo[4] = {0, 0, 200, 200}, hi[4] = {10, 11, 250, 251};
    memcpy(s.lo, lo, sizeof lo);
    memcpy(s.hi, hi, sizeof hi);
    check_attention(&s);

    /* each query attends only itself: output = its own v row, lse = score */
    attn_case d = {"diagonal", 20, 20, 2, 1, 8, 0, NULL, NULL};
    causal_ranges(&d, 1);
    check_attention(&d);
    report_attention("attention masks");
}

/* ------------------------------------------------------------------------ */
/* Activations                                                               */

static const gg_act all_acts[] = {GG_ACT_SILU, GG_ACT_GELU, GG_ACT_GELU_TANH};
static const char *const act_names[] = {"silu", "gelu", "gelu_tanh"};
static const int64_t act_sizes[] = {1, 7, 8, 100, 1001, 40000};

/* uniform in [-8, 8] with some large magnitudes mixed in */
static float *act_input(size_t n) {
    float *x = rand_vec(n, -8, 8);
    for (size_t i = 0; i < n; i += 17) x[i] *= 12.0f;
    return x;
}

static void test_act(void) {
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        for (int a = 0; a < 3; a++) {
            for (size_t si = 0; si < sizeof act_sizes / sizeof act_sizes[0]; si++) {
                size_t n = (size_t)act_sizes[si];
                float *x = act_input(n), *ref = malloc(n * sizeof *ref), *out = malloc(n * sizeof *out);
                gg_ref_act(ref, x, (int64_t)n, all_acts[a]);
                be->act(be, out, x, (int64_t)n, all_acts[a]);
                double e = track_elem(elem_err(out, ref, n, TOL_ACT, TOL_ACT), TOL_ACT);
                CHECK(e <= 1.0, "%s %s n %zu: err %.3g of tolerance", level_names[lv], act_names[a], n, e);
                be->act(be, x, x, (int64_t)n, all_acts[a]); /* in place */
                e = track_elem(elem_err(x, ref, n, TOL_ACT, TOL_ACT), TOL_ACT);
                CHECK(e <= 1.0, "%s %s in place n %zu: err %.3g", level_names[lv], act_names[a], n, e);
                free(x), free(ref), free(out);
            }
        }
    }
    report("act");
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

static void test_glu(void) {
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        for (int a = 0; a < 3; a++) {
            for (size_t si = 0; si < sizeof act_sizes / sizeof act_sizes[0]; si++) {
                size_t n = (size_t)act_sizes[si];
                float *g = act_input(n), *u = rand_vec(n, -3, 3);
                float *ref = malloc(n * sizeof *ref), *out = malloc(n * sizeof *out);
                gg_ref_glu(ref, g, u, (int64_t)n, all_acts[a]);
                be->glu(be, out, g, u, (int64_t)n, all_acts[a]);
                double e = track_elem(elem_err(out, ref, n, TOL_ACT, TOL_ACT), TOL_ACT);
                CHECK(e <= 1.0, "%s %s n %zu: err %.3g of tolerance", level_names[lv], act_names[a], n, e);
                float *g2 = dup_vec(g, n), *u2 = dup_vec(u, n);
                be->glu(be, g2, g2, u, (int64_t)n, all_acts[a]); /* out == gate */
                be->glu(be, u2, g, u2, (int64_t)n, all_acts[a]); /* out == up */
                e = track_elem(elem_err(g2, ref, n, TOL_ACT, TOL_ACT), TOL_ACT);
                CHECK(e <= 1.0, "%s %s out == gate n %zu: err %.3g", level_names[lv], act_names[a], n, e);
                e = track_elem(elem_err(u2, ref, n, TOL_ACT, TOL_ACT), TOL_ACT);
                CHECK(e <= 1.0, "%s %s out == up n %zu: err %.3g", level_names[lv], act_names[a], n, e);
                free(g), free(u), free(g2), free(u2), free(ref), free(out);
            }
        }
    }
    report("glu");
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

/* ------------------------------------------------------------------------ */
/* Softmax, add, scale                                                       */

static void test_softmax(void) {
    static const int64_t shapes[][2] = {{1, 1}, {3, 7}, {2, 1000}, {1, 150001}, {64, 1024}, {5, 33}};
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int64_t rows = shapes[si][0], cols = shapes[si][1];
            size_t ne = (size_t)(rows * cols);
            float *x = rand_vec(ne, -12, 12);
            for (size_t i = 3; i < ne; i += 11) x[i] = -INFINITY; /* masked logits */
            float *ref = dup_vec(x, ne);
            gg_ref_softmax(ref, rows, cols);
            be->softmax(be, x, rows, cols);
            double e = track_elem(elem_err(x, ref, ne, TOL_SOFTMAX, 1e-30), TOL_SOFTMAX);
            CHECK(e <= 1.0, "%s [%lld, %lld]: err %.3g of tolerance", level_names[lv], (long long)rows,
                  (long long)cols, e);
            free(x), free(ref);
        }
    }
    report("softmax");
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

static int same_floats(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

static void test_add_scale(void) {
    static const int64_t sizes[] = {1, 13, 256, 100003};
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            size_t n = (size_t)sizes[si];
            float *a = rand_vec(n, -2, 2), *b = rand_vec(n, -2, 2);
            float *ref = malloc(n * sizeof *ref), *y = malloc(n * sizeof *y);
            gg_ref_add(ref, a, b, (int64_t)n);
            be->add(be, y, a, b, (int64_t)n);
            CHECK(same_floats(y, ref, n), "%s add n %zu", level_names[lv], n);
            float *a2 = dup_vec(a, n), *b2 = dup_vec(b, n);
            be->add(be, a2, a2, b, (int64_t)n);
            be->add(be, b2, a, b2, (int64_t)n);
            CHECK(same_floats(a2, ref, n) && same_floats(b2, ref, n), "%s add in place n %zu", level_names[lv], n);

            gg_ref_scale(ref, a, -0.37f, (int64_t)n);
            be->scale(be, y, a, -0.37f, (int64_t)n);
            CHECK(same_floats(y, ref, n), "%s scale n %zu", level_names[lv], n);
            be->scale(be, a, a, -0.37f, (int64_t)n);
            CHECK(same_floats(a, ref, n), "%s scale in place n %zu", level_names[lv], n);
            free(a), free(b), free(a2), free(b2), free(ref), free(y);
        }
    }
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

/* ------------------------------------------------------------------------ */
/* Selection                                                                 */

static void test_argmax(void) {
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        /* random rows with ties, NaN and -inf sprinkled in; rows * cols
         * large enough for the pool */
        int64_t rows = 40, cols = 1003;
        size_t ne = (size_t)(rows * cols);
        float *x = rand_vec(ne, -2, 2);
        for (size_t i = 0; i < ne; i++) x[i] = roundf(x[i] * 20); /* many ties */
        for (size_t i = 5; i < ne; i += 37) x[i] = NAN;
        for (size_t i = 9; i < ne; i += 41) x[i] = -INFINITY;
        int32_t *ref = malloc((size_t)rows * sizeof *ref), *ids = malloc((size_t)rows * sizeof *ids);
        gg_ref_argmax(ref, x, rows, cols);
        be->argmax(be, ids, x, rows, cols);
        CHECK(!memcmp(ids, ref, (size_t)rows * sizeof *ids), "%s random rows", level_names[lv]);

        /* by hand: NaN first, ties, all NaN, all -inf, one element */
        float h[4][9] = {
            {NAN, 1, 7, 3, 7, NAN, 7, 2, 0},
            {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN},
            {-INFINITY, -INFINITY, NAN, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY},
            {-5, -4, -3, -2, -1, -1, -2, -3, INFINITY},
        };
        int32_t hid[4];
        be->argmax(be, hid, &h[0][0], 4, 9);
        CHECK(hid[0] == 2 && hid[1] == 0 && hid[2] == 0 && hid[3] == 8, "%s hand rows: %d %d %d %d",
              level_names[lv], hid[0], hid[1], hid[2], hid[3]);
        float one = -3;
        be->argmax(be, hid, &one, 1, 1);
        CHECK(hid[0] == 0, "%s one element", level_names[lv]);
        free(x), free(ref), free(ids);
    }
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

/* topk of x[rows, cols] against the reference (values and ids exactly). */
static void check_topk(const char *what, const float *x, int64_t rows, int64_t cols, int64_t k) {
    size_t no = (size_t)(rows * k);
    float *rv = malloc(no * sizeof *rv), *v = malloc(no * sizeof *v);
    int32_t *ri = malloc(no * sizeof *ri), *id = malloc(no * sizeof *id);
    gg_ref_topk(rv, ri, x, rows, cols, k);
    be->topk(be, v, id, x, rows, cols, k);
    int ok = !memcmp(ri, id, no * sizeof *id);
    for (size_t i = 0; i < no && ok; i++) ok = (isnan(v[i]) && isnan(rv[i])) || v[i] == rv[i];
    CHECK(ok, "%s: [%lld, %lld] k %lld", what, (long long)rows, (long long)cols, (long long)k);
    free(rv), free(v), free(ri), free(id);
}

static void test_topk(void) {
    float *big = rand_vec(150000, -10, 10);
    float *ties = rand_vec(4 * 500, 0, 1);
    for (size_t i = 0; i < 4 * 500; i++) ties[i] = floorf(ties[i] * 8); /* 8 distinct values */
    float *nan = rand_vec(3 * 50, -1, 1);
    for (size_t i = 0; i < 3 * 50; i += 7) nan[i] = NAN;
    float *nan_head = rand_vec(2 * 200, -1, 1); /* NaN roots of the heap at first */
    for (size_t i = 0; i < 40; i++) nan_head[i] = nan_head[200 + 2 * i] = NAN;
    float hand[7] = {2, 9, 2, NAN, 9, -1, 2};
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        check_topk(level_names[lv], big, 1, 150000, 100);
        check_topk(level_names[lv], big, 1, 150000, 1);
        check_topk(level_names[lv], big, 100, 1500, 40); /* on the pool */
        check_topk(level_names[lv], ties, 4, 500, 37);
        check_topk(level_names[lv], ties, 4, 500, 500); /* k = cols */
        check_topk(level_names[lv], nan, 3, 50, 50);    /* NaN last */
        check_topk(level_names[lv], nan, 3, 50, 10);
        check_topk(level_names[lv], nan_head, 2, 200, 30);
        check_topk(level_names[lv], nan_head, 2, 200, 170);
        check_topk(level_names[lv], hand, 1, 7, 7);
        check_topk(level_names[lv], hand, 1, 1, 1); /* cols 1 */

        float v[7];
        int32_t id[7];
        be->topk(be, v, id, hand, 1, 7, 7);
        const int32_t want[7] = {1, 4, 0, 2, 6, 5, 3};
        CHECK(!memcmp(id, want, sizeof want), "%s hand: %d %d %d %d %d %d %d", level_names[lv], id[0], id[1],
              id[2], id[3], id[4], id[5], id[6]);
    }
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
    free(big), free(ties), free(nan), free(nan_head);
}

int main(void) {
    gg_err err = {{0}};
    be = gg_backend_cpu_new(2, &err);
    if (!be) {
        fprintf(stderr, "gg_backend_cpu_new: %s\n", err.msg);
        return 1;
    }
    for (int lv = 0; lv < N_LEVELS; lv++)
        if (use_level(all_levels[lv])) printf("# simd level %s\n", level_names[lv]);
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);

    RUN(test_ref_known_values);
    RUN(test_rmsnorm);
    RUN(test_layernorm);
    RUN(test_rope);
    RUN(test_attention_prefill);
    RUN(test_attention_decode);
    RUN(test_attention_masks);
    RUN(test_act);
    RUN(test_glu);
    RUN(test_softmax);
    RUN(test_add_scale);
    RUN(test_argmax);
    RUN(test_topk);
    gg_backend_free(be);
    return check_done();
}

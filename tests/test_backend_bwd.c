/* test_backend_bwd.c — the backward ops: the scalar references
 * (backend-cpu/ref_bwd.c) against finite differences of the forward
 * references (backend-cpu/ref_ops.c), and the CPU backend's fast versions
 * (backend-cpu/ops_bwd.c) against the references, through the ops table:
 * rmsnorm_bwd, layernorm_bwd, act_bwd, glu_bwd, attention_bwd. Every SIMD
 * level this CPU has (gg_cpu_simd_cap), random data from a fixed seed, odd
 * sizes, sizes that run on the thread pool, beta = 1 accumulation, in-place
 * calls where the op allows them, every activation; attention with GQA,
 * MQA, padded kv rows, packed segments (k_lo > 0), windows, a KV cache and
 * key rows nobody attends (NaN there must not leak, and their dk, dv are 0),
 * and the same bits for 1, 2 and 3 threads.
 *
 * Finite differences (references only): L(x) = Σ r·f(x) in double over the
 * float forward, with r and a direction d random; x± = x ± h·d rounded to
 * float, and the check is
 *   |(L(x+) − L(x−)) − Σ t_i| <= TOL_FD · sqrt(Σ t_i²),  t_i = dx_i·(x+ − x−)_i
 * (the actual float step is used, so only the forward's float rounding,
 * relative 1e-7 / h, and the O(h²) truncation remain; sqrt(Σ t²) is the
 * typical size of Σ t along a random direction, so a gradient off by a
 * relative 1e-3 in RMS over its elements fails). h = 1e-3; TOL_FD = 1e-3
 * (seen: <= 1.3e-4; the worst is printed).
 *
 * Fast vs reference (the fast paths compute in float, the references in
 * double; the worst error seen is printed as "# " lines):
 * - norms: max |out − ref| / max |ref| <= 1e-5 per call (seen: <= 2e-7);
 * - act_bwd, glu_bwd: |out − ref| <= 4e-6 · (|ref| + |dy|·s) per element,
 *   s = |up| for dgate, 1 otherwise (a float exp or erf is a few ulp; the
 *   |dy|·s floor covers derivatives that cancel to near 0) (seen: <= 2.1e-7);
 * - attention: max |out − ref| / max(max |ref|, 0.1) <= 2e-5 for each of
 *   dq, dk, dv (inputs are O(1); the floor makes the check absolute where
 *   the true gradient vanishes, e.g. one key per query) (seen: <= 5e-6);
 *   key rows nobody attends exactly 0. */
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

#define TOL_FD 1e-3
#define FD_H 1e-3
#define TOL_NORM 1e-5
#define TOL_ACT 4e-6
#define TOL_ATTN 2e-5

/* ------------------------------------------------------------------------ */
/* Deterministic random numbers, errors                                      */

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

/* max |a − r| / max(max |r|, floor_) (infinite when a has a NaN where r
 * has none or the other way round). */
static double rel_err_floor(const float *a, const float *r, size_t n, double floor_) {
    double e = 0, m = floor_;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(r[i])) return INFINITY;
        if (isnan(r[i])) continue;
        double d = fabs((double)a[i] - r[i]);
        if (d > e) e = d;
        if (fabs(r[i]) > m) m = fabs(r[i]);
    }
    return e / m;
}

static double rel_err(const float *a, const float *r, size_t n) { return rel_err_floor(a, r, n, 1e-30); }

/* Attention gradients of O(1) inputs are O(1); where the true gradient
 * vanishes (a query with one key: dq = dk = 0) the floor makes the check
 * absolute. */
static double attn_err(const float *a, const float *r, size_t n) { return rel_err_floor(a, r, n, 0.1); }

/* max over elements of |a − r| / (tol·(|r| + |f1|·|f2|)) (f2 may be NULL:
 * 1), i.e. <= 1 passes. */
static double act_err(const float *a, const float *r, const float *f1, const float *f2, size_t n, double tol) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(r[i])) return INFINITY;
        double fl = fabs((double)f1[i]) * (f2 ? fabs((double)f2[i]) : 1.0);
        double d = fabs((double)a[i] - r[i]) / (tol * (fabs((double)r[i]) + fl) + 1e-38);
        if (d > e) e = d;
    }
    return e;
}

/* The largest error each test saw, printed as a "# " line. */
static double worst;

static double track(double e) {
    if (e > worst) worst = e;
    return e;
}

static void report(const char *what) {
    printf("# %s: worst error %.3g\n", what, worst);
    worst = 0;
}

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                  */

static gg_backend *be, *be1, *be3; /* 2 threads (the tests), 1 and 3 (determinism) */

static const int all_levels[] = {GG_SIMD_SCALAR, GG_SIMD_AVX2, GG_SIMD_AVX512};
static const char *const level_names[] = {"scalar", "avx2", "avx512"};
#define N_LEVELS 3

/* Caps the backend at level; 0 if this CPU does not have it. */
static int use_level(int level) { return gg_cpu_simd_cap(be, level) == level; }

static const gg_act all_acts[] = {GG_ACT_SILU, GG_ACT_GELU, GG_ACT_GELU_TANH};
static const char *const act_names[] = {"silu", "gelu", "gelu_tanh"};

/* ------------------------------------------------------------------------ */
/* Finite differences                                                        */

/* L = Σ r·f(inputs) for the inputs a test perturbs in place. */
typedef double (*loss_fn)(void *ctx);

static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Checks the gradient g of L with respect to x[n] along a random
 * direction (x is restored); returns the error in units of
 * sqrt(Σ (g·step)²), the typical size of the directional derivative
 * (<= TOL_FD passes). */
static double fd_check(float *x, const float *g, size_t n, loss_fn L, void *ctx) {
    float *x0 = dup_vec(x, n), *xp = malloc(n * sizeof *xp), *xm = malloc(n * sizeof *xm);
    for (size_t i = 0; i < n; i++) {
        double d = 2 * rng_unit() - 1;
        xp[i] = (float)(x0[i] + FD_H * d);
        xm[i] = (float)(x0[i] - FD_H * d);
    }
    memcpy(x, xp, n * sizeof *x);
    double lp = L(ctx);
    memcpy(x, xm, n * sizeof *x);
    double lm = L(ctx);
    memcpy(x, x0, n * sizeof *x);
    double an = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        double t = (double)g[i] * ((double)xp[i] - xm[i]);
        an += t;
        mag += t * t;
    }
    free(x0), free(xp), free(xm);
    return fabs((lp - lm) - an) / (sqrt(mag) + 1e-300);
}

/* Norms: y = norm(x) for rows of dim. */
typedef struct norm_fd {
    int layer; /* 0: rmsnorm, 1: layernorm */
    float *x, *w, *b, *r, *y;
    int64_t n, dim;
    float eps;
    int plus_one;
} norm_fd;

static double norm_loss(void *arg) {
    norm_fd *c = arg;
    if (c->layer) gg_ref_layernorm(c->y, c->x, c->w, c->b, c->n, c->dim, c->eps);
    else gg_ref_rmsnorm(c->y, c->x, c->w, c->n, c->dim, c->eps, c->plus_one);
    return dot_d(c->r, c->y, (size_t)(c->n * c->dim));
}

static void fd_norm(int layer, int64_t n, int64_t dim, int plus_one) {
    size_t ne = (size_t)(n * dim);
    norm_fd c = {layer, NULL, rand_vec((size_t)dim, -2, 2), rand_vec((size_t)dim, -1, 1), rand_vec(ne, -1, 1),
                 malloc(ne * sizeof(float)), n, dim, layer ? 1e-5f : 1e-6f, plus_one};
    c.x = layer ? rand_vec(ne, 1, 5) : rand_vec(ne, -2, 2);
    float *dx = malloc(ne * sizeof *dx);
    if (layer) gg_ref_layernorm_bwd(dx, c.r, c.x, c.w, n, dim, c.eps, 0.0f);
    else gg_ref_rmsnorm_bwd(dx, c.r, c.x, c.w, n, dim, c.eps, plus_one, 0.0f);
    double e = track(fd_check(c.x, dx, ne, norm_loss, &c));
    CHECK(e <= TOL_FD, "%s [%lld, %lld] plus_one %d: fd err %.3g", layer ? "layernorm" : "rmsnorm",
          (long long)n, (long long)dim, plus_one, e);
    free(c.x), free(c.w), free(c.b), free(c.r), free(c.y), free(dx);
}

static void test_fd_norms(void) {
    static const int64_t shapes[][2] = {{1, 7}, {3, 64}, {2, 100}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        fd_norm(0, shapes[si][0], shapes[si][1], 0);
        fd_norm(0, shapes[si][0], shapes[si][1], 1);
        fd_norm(1, shapes[si][0], shapes[si][1], 0);
    }
    report("fd norms");
}

/* Activations: y = act(x), or glu(gate, up). */
typedef struct act_fd {
    float *x, *up, *r, *y; /* up NULL: act */
    size_t n;
    gg_act a;
} act_fd;

static double act_loss(void *arg) {
    act_fd *c = arg;
    if (c->up) gg_ref_glu(c->y, c->x, c->up, (int64_t)c->n, c->a);
    else gg_ref_act(c->y, c->x, (int64_t)c->n, c->a);
    return dot_d(c->r, c->y, c->n);
}

static void test_fd_act(void) {
    const size_t n = 1000;
    for (int a = 0; a < 3; a++) {
        act_fd c = {rand_vec(n, -5, 5), NULL, rand_vec(n, -1, 1), malloc(n * sizeof(float)), n, all_acts[a]};
        float *dx = malloc(n * sizeof *dx), *dup = malloc(n * sizeof *dup);
        gg_ref_act_bwd(dx, c.r, c.x, (int64_t)n, c.a);
        double e = track(fd_check(c.x, dx, n, act_loss, &c));
        CHECK(e <= TOL_FD, "act %s: fd err %.3g", act_names[a], e);

        c.up = rand_vec(n, -3, 3);
        gg_ref_glu_bwd(dx, dup, c.r, c.x, c.up, (int64_t)n, c.a);
        e = track(fd_check(c.x, dx, n, act_loss, &c));
        CHECK(e <= TOL_FD, "glu %s gate: fd err %.3g", act_names[a], e);
        e = track(fd_check(c.up, dup, n, act_loss, &c));
        CHECK(e <= TOL_FD, "glu %s up: fd err %.3g", act_names[a], e);
        free(c.x), free(c.up), free(c.r), free(c.y), free(dx), free(dup);
    }
    report("fd act, glu");
}

/* Attention: out = attention(q, k, v). */
typedef struct attn_fd {
    float *q, *k, *v, *r, *out;
    int64_t n, st, n_heads, n_kvh, hd;
    const int32_t *lo, *hi;
    float scale;
} attn_fd;

static double attn_loss(void *arg) {
    attn_fd *c = arg;
    gg_ref_attention(c->out, c->q, c->k, c->v, c->n, c->n, c->st, c->n_heads, c->n_kvh, c->hd, c->lo, c->hi,
                     c->scale, NULL);
    return dot_d(c->r, c->out, (size_t)(c->n * c->n_heads * c->hd));
}

static void test_fd_attention(void) {
    /* GQA 4/2, padded kv rows, packed segments [0, 9), [9, 20), [20, 24) */
    const int64_t n = 24, n_heads = 4, n_kvh = 2, hd = 16, st = n_kvh * hd + 3;
    int32_t lo[24], hi[24];
    for (int64_t t = 0; t < n; t++) lo[t] = t < 9 ? 0 : t < 20 ? 9 : 20, hi[t] = (int32_t)t;
    size_t nq = (size_t)(n * n_heads * hd), nkv = (size_t)(n * st);
    attn_fd c = {rand_vec(nq, -1.5, 1.5), rand_vec(nkv, -1.5, 1.5), rand_vec(nkv, -1.5, 1.5), rand_vec(nq, -1, 1),
                 malloc(nq * sizeof(float)), n, st, n_heads, n_kvh, hd, lo, hi, 1.0f / sqrtf((float)hd)};
    float *lse = malloc((size_t)(n * n_heads) * sizeof *lse);
    float *dq = malloc(nq * sizeof *dq), *dk = calloc(nkv, sizeof *dk), *dv = calloc(nkv, sizeof *dv);
    gg_ref_attention(c.out, c.q, c.k, c.v, n, n, st, n_heads, n_kvh, hd, lo, hi, c.scale, lse);
    float *out = dup_vec(c.out, nq);
    gg_ref_attention_bwd(dq, dk, dv, c.r, c.q, c.k, c.v, out, lse, n, n, st, n_heads, n_kvh, hd, lo, hi, c.scale);
    double e = track(fd_check(c.q, dq, nq, attn_loss, &c));
    CHECK(e <= TOL_FD, "dq: fd err %.3g", e);
    e = track(fd_check(c.k, dk, nkv, attn_loss, &c));
    CHECK(e <= TOL_FD, "dk: fd err %.3g", e);
    e = track(fd_check(c.v, dv, nkv, attn_loss, &c));
    CHECK(e <= TOL_FD, "dv: fd err %.3g", e);
    /* the padding columns of dk, dv are not written */
    int pad_ok = 1;
    for (int64_t j = 0; j < n; j++)
        for (int64_t d = n_kvh * hd; d < st; d++) pad_ok &= dk[j * st + d] == 0 && dv[j * st + d] == 0;
    CHECK(pad_ok, "padding written");
    report("fd attention");
    free(c.q), free(c.k), free(c.v), free(c.r), free(c.out), free(out), free(lse), free(dq), free(dk), free(dv);
}

/* A few values by hand: act'(0) = ½; silu'(1) = σ(1)·(1 + 1 − σ(1));
 * gelu'(1) = Φ(1) + φ(1). */
static void test_ref_known_values(void) {
    for (int a = 0; a < 3; a++)
        CHECK(gg_ref_act1_grad(0.0f, all_acts[a]) == 0.5f, "%s'(0) = %.8f", act_names[a],
              gg_ref_act1_grad(0.0f, all_acts[a]));
    CHECK(fabsf(gg_ref_act1_grad(1.0f, GG_ACT_SILU) - 0.9276705f) < 1e-7f, "silu'(1) = %.8f",
          gg_ref_act1_grad(1.0f, GG_ACT_SILU));
    CHECK(fabsf(gg_ref_act1_grad(1.0f, GG_ACT_GELU) - 1.0833155f) < 1e-7f, "gelu'(1) = %.8f",
          gg_ref_act1_grad(1.0f, GG_ACT_GELU));
    /* one key: the output is v whatever q and k are, so dq = dk = 0, dv = dout */
    float q[2] = {1, -2}, k[2] = {0.5f, 3}, v[2] = {4, 8}, o[2], lse, g[2] = {0.25f, -1}, dq[2], dk[2], dv[2];
    int32_t lo = 0, hi = 0;
    gg_ref_attention(o, q, k, v, 1, 1, 2, 1, 1, 2, &lo, &hi, 0.7f, &lse);
    gg_ref_attention_bwd(dq, dk, dv, g, q, k, v, o, &lse, 1, 1, 2, 1, 1, 2, &lo, &hi, 0.7f);
    CHECK(fabsf(dq[0]) < 1e-7f && fabsf(dq[1]) < 1e-7f && fabsf(dk[0]) < 1e-7f && fabsf(dk[1]) < 1e-7f,
          "one key: dq %g %g dk %g %g", dq[0], dq[1], dk[0], dk[1]);
    CHECK(dv[0] == 0.25f && dv[1] == -1.0f, "one key: dv %g %g", dv[0], dv[1]);
}

/* ------------------------------------------------------------------------ */
/* Norms, fast against the reference                                         */

static const int64_t norm_shapes[][2] = {{1, 7}, {3, 64}, {2, 100}, {5, 1000}, {9, 4099}, {64, 1024}};
#define N_NORM_SHAPES (sizeof norm_shapes / sizeof norm_shapes[0])

/* One norm backward at the current level: beta 0 over a NaN-filled dx
 * (the old contents are ignored), then beta 1 onto random contents. */
static void check_norm_bwd(int layer, const char *lvname, int64_t n, int64_t dim, int plus_one) {
    size_t ne = (size_t)(n * dim);
    float eps = layer ? 1e-5f : 1e-6f;
    float *x = layer ? rand_vec(ne, 1, 5) : rand_vec(ne, -2, 2), *w = rand_vec((size_t)dim, -2, 2);
    float *dy = rand_vec(ne, -1, 1), *ref = malloc(ne * sizeof *ref), *dx = malloc(ne * sizeof *dx);
    const char *name = layer ? "layernorm_bwd" : "rmsnorm_bwd";
    for (int beta = 0; beta < 2; beta++) {
        if (beta) {
            float *old = rand_vec(ne, -1, 1);
            memcpy(ref, old, ne * sizeof *ref), memcpy(dx, old, ne * sizeof *dx);
            free(old);
        } else {
            nan_fill(ref, ne), nan_fill(dx, ne);
        }
        if (layer) {
            gg_ref_layernorm_bwd(ref, dy, x, w, n, dim, eps, (float)beta);
            be->layernorm_bwd(be, dx, dy, x, w, n, dim, eps, (float)beta);
        } else {
            gg_ref_rmsnorm_bwd(ref, dy, x, w, n, dim, eps, plus_one, (float)beta);
            be->rmsnorm_bwd(be, dx, dy, x, w, n, dim, eps, plus_one, (float)beta);
        }
        double e = track(rel_err(dx, ref, ne));
        CHECK(e <= TOL_NORM, "%s %s [%lld, %lld] plus_one %d beta %d: err %.3g", name, lvname, (long long)n,
              (long long)dim, plus_one, beta, e);
    }
    free(x), free(w), free(dy), free(ref), free(dx);
}

static void test_rmsnorm_bwd(void) {
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        for (size_t si = 0; si < N_NORM_SHAPES; si++)
            for (int plus_one = 0; plus_one < 2; plus_one++)
                check_norm_bwd(0, level_names[lv], norm_shapes[si][0], norm_shapes[si][1], plus_one);
    }
    report("rmsnorm_bwd");
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

static void test_layernorm_bwd(void) {
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        for (size_t si = 0; si < N_NORM_SHAPES; si++)
            check_norm_bwd(1, level_names[lv], norm_shapes[si][0], norm_shapes[si][1], 0);
    }
    report("layernorm_bwd");
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

/* ------------------------------------------------------------------------ */
/* Activations, fast against the reference                                   */

static const int64_t act_sizes[] = {1, 7, 8, 100, 1001, 40000};

/* uniform in [-8, 8] with some large magnitudes mixed in */
static float *act_input(size_t n) {
    float *x = rand_vec(n, -8, 8);
    for (size_t i = 0; i < n; i += 17) x[i] *= 12.0f;
    return x;
}

static void test_act_bwd(void) {
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        for (int a = 0; a < 3; a++) {
            for (size_t si = 0; si < sizeof act_sizes / sizeof act_sizes[0]; si++) {
                size_t n = (size_t)act_sizes[si];
                float *x = act_input(n), *dy = rand_vec(n, -2, 2);
                float *ref = malloc(n * sizeof *ref), *dx = malloc(n * sizeof *dx);
                gg_ref_act_bwd(ref, dy, x, (int64_t)n, all_acts[a]);
                be->act_bwd(be, dx, dy, x, (int64_t)n, all_acts[a]);
                double e = act_err(dx, ref, dy, NULL, n, TOL_ACT);
                track(e * TOL_ACT);
                CHECK(e <= 1.0, "%s %s n %zu: err %.3g of tolerance", level_names[lv], act_names[a], n, e);
                float *d2 = dup_vec(dy, n);
                be->act_bwd(be, d2, d2, x, (int64_t)n, all_acts[a]); /* in place, dx == dy */
                e = act_err(d2, ref, dy, NULL, n, TOL_ACT);
                CHECK(e <= 1.0, "%s %s in place n %zu: err %.3g", level_names[lv], act_names[a], n, e);
                free(x), free(dy), free(ref), free(dx), free(d2);
            }
        }
    }
    report("act_bwd");
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

/* dgate and dup of glu_bwd against the reference's. */
static double glu_err(const float *dg, const float *du, const float *rg, const float *ru, const float *dy,
                      const float *up, size_t n) {
    double e1 = act_err(dg, rg, dy, up, n, TOL_ACT), e2 = act_err(du, ru, dy, NULL, n, TOL_ACT);
    double e = e1 > e2 ? e1 : e2;
    track(e * TOL_ACT);
    return e;
}

static void test_glu_bwd(void) {
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        const char *ln = level_names[lv];
        for (int a = 0; a < 3; a++) {
            for (size_t si = 0; si < sizeof act_sizes / sizeof act_sizes[0]; si++) {
                size_t n = (size_t)act_sizes[si];
                int64_t ni = (int64_t)n;
                gg_act ac = all_acts[a];
                float *g = act_input(n), *u = rand_vec(n, -3, 3), *dy = rand_vec(n, -2, 2);
                float *rg = malloc(n * sizeof *rg), *ru = malloc(n * sizeof *ru);
                float *dg = malloc(n * sizeof *dg), *du = malloc(n * sizeof *du);
                gg_ref_glu_bwd(rg, ru, dy, g, u, ni, ac);
                be->glu_bwd(be, dg, du, dy, g, u, ni, ac);
                double e = glu_err(dg, du, rg, ru, dy, u, n);
                CHECK(e <= 1.0, "%s %s n %zu: err %.3g of tolerance", ln, act_names[a], n, e);
                /* in place: dgate == gate, dup == up, and both */
                float *g2 = dup_vec(g, n), *u2 = dup_vec(u, n);
                be->glu_bwd(be, g2, du, dy, g2, u, ni, ac);
                e = glu_err(g2, du, rg, ru, dy, u, n);
                CHECK(e <= 1.0, "%s %s dgate == gate n %zu: err %.3g", ln, act_names[a], n, e);
                be->glu_bwd(be, dg, u2, dy, g, u2, ni, ac);
                e = glu_err(dg, u2, rg, ru, dy, u, n);
                CHECK(e <= 1.0, "%s %s dup == up n %zu: err %.3g", ln, act_names[a], n, e);
                memcpy(g2, g, n * sizeof *g2), memcpy(u2, u, n * sizeof *u2);
                be->glu_bwd(be, g2, u2, dy, g2, u2, ni, ac);
                e = glu_err(g2, u2, rg, ru, dy, u, n);
                CHECK(e <= 1.0, "%s %s both in place n %zu: err %.3g", ln, act_names[a], n, e);
                free(g), free(u), free(dy), free(rg), free(ru), free(dg), free(du), free(g2), free(u2);
            }
        }
    }
    report("glu_bwd");
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

/* ------------------------------------------------------------------------ */
/* Attention, fast against the reference                                     */

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

/* The inputs of one case: random q, k, v, dout; k and v rows nobody
 * attends (and the padding) NaN; out and lse from the reference forward. */
typedef struct attn_data {
    float *q, *k, *v, *dout, *out, *lse;
    int *used; /* [n_kv]: some query attends the key row */
    size_t nq, nkv;
    int64_t st;
    float scale;
} attn_data;

static void attn_data_make(const attn_case *c, attn_data *D) {
    D->st = c->n_kvh * c->hd + c->pad;
    D->nq = (size_t)(c->n * c->n_heads * c->hd);
    D->nkv = (size_t)(c->n_kv * D->st);
    D->q = rand_vec(D->nq, -2, 2), D->k = rand_vec(D->nkv, -2, 2), D->v = rand_vec(D->nkv, -2, 2);
    D->dout = rand_vec(D->nq, -1, 1);
    D->used = calloc((size_t)c->n_kv, sizeof *D->used);
    for (int64_t j = 0; j < c->n_kv; j++) {
        for (int64_t t = 0; t < c->n; t++) D->used[j] |= c->lo[t] <= j && j <= c->hi[t];
        for (int64_t d = 0; d < D->st; d++)
            if (!D->used[j] || d >= c->n_kvh * c->hd) D->k[j * D->st + d] = D->v[j * D->st + d] = NAN;
    }
    D->scale = 1.0f / sqrtf((float)c->hd);
    D->out = malloc(D->nq * sizeof *D->out);
    D->lse = malloc((size_t)(c->n * c->n_heads) * sizeof *D->lse);
    gg_ref_attention(D->out, D->q, D->k, D->v, c->n, c->n_kv, D->st, c->n_heads, c->n_kvh, c->hd, c->lo, c->hi,
                     D->scale, D->lse);
}

static void attn_data_free(attn_data *D) {
    free(D->q), free(D->k), free(D->v), free(D->dout), free(D->out), free(D->lse), free(D->used);
}

/* attention_bwd on backend b into dq, dk, dv (NaN-filled first: every
 * output must be written, the padding never). */
static void attn_bwd_run(gg_backend *b, const attn_case *c, const attn_data *D, float *dq, float *dk, float *dv) {
    nan_fill(dq, D->nq), nan_fill(dk, D->nkv), nan_fill(dv, D->nkv);
    b->attention_bwd(b, dq, dk, dv, D->dout, D->q, D->k, D->v, D->out, D->lse, c->n, c->n_kv, D->st, c->n_heads,
                     c->n_kvh, c->hd, c->lo, c->hi, D->scale);
}

/* Key rows nobody attends: dk = dv = 0 exactly. */
static int unused_rows_zero(const attn_case *c, const attn_data *D, const float *dk, const float *dv) {
    for (int64_t j = 0; j < c->n_kv; j++)
        if (!D->used[j])
            for (int64_t d = 0; d < c->n_kvh * c->hd; d++)
                if (dk[j * D->st + d] != 0 || dv[j * D->st + d] != 0) return 0;
    return 1;
}

static void check_attention_bwd(attn_case *c) {
    attn_data D;
    attn_data_make(c, &D);
    float *rq = malloc(D.nq * sizeof *rq), *rk = malloc(D.nkv * sizeof *rk), *rv = malloc(D.nkv * sizeof *rv);
    float *dq = malloc(D.nq * sizeof *dq), *dk = malloc(D.nkv * sizeof *dk), *dv = malloc(D.nkv * sizeof *dv);
    nan_fill(rk, D.nkv), nan_fill(rv, D.nkv);
    gg_ref_attention_bwd(rq, rk, rv, D.dout, D.q, D.k, D.v, D.out, D.lse, c->n, c->n_kv, D.st, c->n_heads,
                         c->n_kvh, c->hd, c->lo, c->hi, D.scale);
    for (int lv = 0; lv < N_LEVELS; lv++) {
        if (!use_level(all_levels[lv])) continue;
        attn_bwd_run(be, c, &D, dq, dk, dv);
        double eq = track(attn_err(dq, rq, D.nq)), ek = track(attn_err(dk, rk, D.nkv));
        double ev = track(attn_err(dv, rv, D.nkv));
        CHECK(eq <= TOL_ATTN && ek <= TOL_ATTN && ev <= TOL_ATTN, "%s %s: err dq %.3g dk %.3g dv %.3g",
              level_names[lv], c->name, eq, ek, ev);
        CHECK(unused_rows_zero(c, &D, dk, dv), "%s %s: unattended key rows not 0", level_names[lv], c->name);
    }
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
    attn_data_free(&D);
    free(rq), free(rk), free(rv), free(dq), free(dk), free(dv);
    free(c->lo), free(c->hi);
}

static void test_attention_bwd_prefill(void) {
    attn_case cs[] = {
        {"mha causal", 37, 37, 4, 4, 64, 0, NULL, NULL},
        {"gqa 8/2 causal", 50, 50, 8, 2, 64, 0, NULL, NULL},
        {"mqa 8/1 causal hd 32", 19, 19, 8, 1, 32, 0, NULL, NULL},
        {"gqa 6/2 hd 13 padded", 23, 23, 6, 2, 13, 5, NULL, NULL},
        {"mha one head", 1, 1, 1, 1, 16, 0, NULL, NULL},
        {"gqa 12/1 (group > 8)", 5, 5, 12, 1, 24, 0, NULL, NULL},
        {"after a cache of 100", 30, 130, 8, 2, 64, 3, NULL, NULL},
        {"gqa 16/4 prefill 160", 160, 160, 16, 4, 64, 0, NULL, NULL},
        {"gqa 8/4 hd 128 prefill 70", 70, 70, 8, 4, 128, 0, NULL, NULL},
        {"gqa 4/2 hd 256", 20, 20, 4, 2, 256, 0, NULL, NULL},
        {"mha 2 hd 44", 33, 33, 2, 2, 44, 1, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        causal_ranges(&cs[i], 0);
        check_attention_bwd(&cs[i]);
    }
    report("attention_bwd prefill");
}

static void test_attention_bwd_masks(void) {
    /* sliding window of 7 */
    attn_case w = {"window 7", 40, 60, 4, 2, 32, 0, NULL, NULL};
    causal_ranges(&w, 7);
    check_attention_bwd(&w);

    /* window 5 with groups of 3 heads: row batches end inside a token's
     * heads, and later tokens do not cover its keys */
    attn_case w3 = {"window 5 gqa 6/2", 50, 50, 6, 2, 16, 0, NULL, NULL};
    causal_ranges(&w3, 5);
    check_attention_bwd(&w3);

    /* packed segments [0, 13), [13, 30), [30, 41): k_lo = segment start */
    attn_case p = {"packed segments", 41, 41, 8, 2, 64, 0, NULL, NULL};
    causal_ranges(&p, 0);
    for (int64_t t = 0; t < p.n; t++) p.lo[t] = t < 13 ? 0 : t < 30 ? 13 : 30;
    check_attention_bwd(&p);

    /* two sequences far apart in one cache: keys between them are NaN and
     * get dk = dv = 0 */
    attn_case s = {"two sequences", 4, 300, 8, 8, 64, 0, NULL, NULL};
    causal_ranges(&s, 0);
    int32_t lo[4] = {0, 0, 200, 200}, hi[4] = {10, 11, 250, 251};
    memcpy(s.lo, lo, sizeof lo);
    memcpy(s.hi, hi, sizeof hi);
    check_attention_bwd(&s);

    /* each query attends only itself: dq = dk = 0, dv = dout */
    attn_case d = {"diagonal", 20, 20, 2, 1, 8, 0, NULL, NULL};
    causal_ranges(&d, 1);
    check_attention_bwd(&d);
    report("attention_bwd masks");
}

/* The same bits for 1, 2 and 3 threads, and from one call to the next. */
static void test_attention_bwd_threads(void) {
    attn_case c = {"gqa 8/2 packed 150", 150, 150, 8, 2, 64, 0, NULL, NULL};
    causal_ranges(&c, 0);
    for (int64_t t = 0; t < c.n; t++) c.lo[t] = t < 70 ? 0 : 70;
    attn_data D;
    attn_data_make(&c, &D);
    float *buf[4][3];
    gg_backend *bs[4] = {be, be1, be3, be};
    for (int i = 0; i < 4; i++) {
        buf[i][0] = malloc(D.nq * sizeof(float));
        buf[i][1] = malloc(D.nkv * sizeof(float));
        buf[i][2] = malloc(D.nkv * sizeof(float));
        attn_bwd_run(bs[i], &c, &D, buf[i][0], buf[i][1], buf[i][2]);
    }
    for (int i = 1; i < 4; i++) {
        int same = !memcmp(buf[i][0], buf[0][0], D.nq * sizeof(float)) &&
                   !memcmp(buf[i][1], buf[0][1], D.nkv * sizeof(float)) &&
                   !memcmp(buf[i][2], buf[0][2], D.nkv * sizeof(float));
        CHECK(same, "run %d (%d threads) differs from 2 threads", i, bs[i]->n_threads);
    }
    for (int i = 0; i < 4; i++) free(buf[i][0]), free(buf[i][1]), free(buf[i][2]);
    attn_data_free(&D);
    free(c.lo), free(c.hi);
}

int main(void) {
    gg_err err = {{0}};
    be = gg_backend_cpu_new(2, &err);
    be1 = be ? gg_backend_cpu_new(1, &err) : NULL;
    be3 = be1 ? gg_backend_cpu_new(3, &err) : NULL;
    if (!be3) {
        fprintf(stderr, "gg_backend_cpu_new: %s\n", err.msg);
        return 1;
    }
    for (int lv = 0; lv < N_LEVELS; lv++)
        if (use_level(all_levels[lv])) printf("# simd level %s\n", level_names[lv]);
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);

    RUN(test_ref_known_values);
    RUN(test_fd_norms);
    RUN(test_fd_act);
    RUN(test_fd_attention);
    RUN(test_rmsnorm_bwd);
    RUN(test_layernorm_bwd);
    RUN(test_act_bwd);
    RUN(test_glu_bwd);
    RUN(test_attention_bwd_prefill);
    RUN(test_attention_bwd_masks);
    RUN(test_attention_bwd_threads);
    gg_backend_free(be);
    gg_backend_free(be1);
    gg_backend_free(be3);
    return check_done();
}

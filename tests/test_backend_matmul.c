/* test_backend_matmul.c — the CPU backend's linear algebra (backend-cpu/
 * matmul.c) against the scalar references (backend-cpu/ref_matmul.c):
 * matmul, matmul_dx, gemm and embed, for every weight type (f32, f16, bf16,
 * q8, nf4 quantized from random normal weights), every SIMD level this CPU
 * has (gg_cpu_simd_cap), token counts on both sides of the GEMV / tiled
 * threshold and shapes whose rows are not a multiple of any tile; also
 * weight_init's validation.
 *
 * Tolerance (matmul, matmul_dx, gemm): the fast paths compute with the very
 * same dequantized weights in float32, only the summation order differs, so
 * every element must satisfy
 *     |out − ref| <= 1e-5 · (Σ_k |a_k|·|b_k| + |bias| + |beta·old|) + 1e-30
 * where the sum is the magnitude of the dot product (ref accumulates in
 * double). embed must match the reference exactly (one multiplication of
 * identical floats). beta = 0 runs with the output pre-filled with NaN.
 *
 * The int8 matmul (be->int8_matmul, q8 / nf4) must equal gg_ref_matmul_int8
 * bit for bit (same integer dot products, same fmaf chain); its GEMV form
 * for n <= 4 sums the same products in another order, within 2e-5 of the
 * magnitude (Σ|x||w| + |bias| + |beta·old|). The
 * reference must stay within the rounding of its 8-bit values of the float
 * matmul: per 64-column block b, with a_b = max|x|, s_b = Σ|w|, e = 0.5/127,
 *     q8:  e·a_b·s_b
 *     nf4: e·a_b·s_b + e·ap_b·Σ|x| + e²·64·a_b·ap_b   (ap_b = max|w| = a'_b)
 * summed over the blocks, plus TOL of the magnitude. */
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

#define TOL 1e-5

/* ------------------------------------------------------------------------ */
/* Deterministic random numbers                                              */

static float *rand_vec(size_t n, double sd) {
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(sd * rng_gauss());
    return v;
}

static float *nan_vec(size_t n) {
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = NAN;
    return v;
}

static float *abs_vec(const float *x, size_t n) {
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = fabsf(x[i]);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                  */

static gg_backend *be;

static const gg_type all_types[] = {GG_TYPE_F32, GG_TYPE_F16, GG_TYPE_BF16, GG_TYPE_Q8,
                                    GG_TYPE_NF4};
static const int all_levels[] = {GG_SIMD_SCALAR, GG_SIMD_AVX2, GG_SIMD_AVX512};
static const char *const level_names[] = {"scalar", "avx2", "avx512"};

/* Caps the backend at level; 0 if this CPU does not have it. */
static int use_level(int level) { return gg_cpu_simd_cap(be, level) == level; }

/* A random N(0, 0.5²) weight stored as type t, plus |W| as f32 (for the
 * error bounds) from the reference dequantization. */
typedef struct test_weight {
    gg_type t;
    int64_t rows, cols;
    void *bytes;
    float *absw;
    gg_weight w;
} test_weight;

static int make_weight(test_weight *tw, gg_type t, int64_t rows, int64_t cols) {
    gg_err err = {{0}};
    size_t n = (size_t)(rows * cols);
    float *src = rand_vec(n, 0.5);
    tw->t = t;
    tw->rows = rows;
    tw->cols = cols;
    tw->bytes = malloc(gg_type_nbytes(t, (uint64_t)rows, (uint64_t)cols));
    tw->absw = malloc(n * sizeof *tw->absw);
    int rc = gg_quantize(t, tw->bytes, GG_TYPE_F32, src, (uint64_t)rows, (uint64_t)cols, &err);
    CHECK(rc == 0, "quantize %s [%lld, %lld]: %s", gg_type_name(t), (long long)rows,
          (long long)cols, err.msg);
    if (rc == 0) {
        gg_dequantize_rows_ref(t, tw->bytes, (uint64_t)rows, (uint64_t)cols, 0, (uint64_t)rows,
                               tw->absw, NULL);
        for (size_t i = 0; i < n; i++)
            tw->absw[i] = fabsf(tw->absw[i]);
        rc = be->weight_init(be, &tw->w, t, rows, cols, tw->bytes, &err);
        CHECK(rc == 0, "weight_init: %s", err.msg);
    }
    free(src);
    return rc;
}

static void free_weight(test_weight *tw) {
    be->weight_free(be, &tw->w);
    free(tw->bytes);
    free(tw->absw);
}

/* Compares out[] with ref[] under the bound tol·mag[] (see the top comment);
 * returns the number of bad elements, reporting the first. */
static int compare(const char *what, const float *out, const float *ref, const float *mag,
                   size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)out[i] - ref[i]), lim = TOL * mag[i] + 1e-30;
        if (d <= lim) continue;
        if (!bad++) /* d <= lim is false (NaN included): report the first */
            CHECK(d <= lim, "%s: element %zu: %.9g vs ref %.9g (|diff| %.3g > %.3g)", what, i,
                  (double)out[i], (double)ref[i], d, lim);
    }
    return bad;
}

/* ------------------------------------------------------------------------ */
/* matmul                                                                    */

typedef struct shape {
    int64_t rows, cols;
    int float_only; /* cols not a multiple of 64 */
} shape;

static const shape mm_shapes[] = {
    {37, 64, 0}, {130, 320, 0}, {77, 4096, 0}, {520, 512, 0}, {45, 100, 1}, {19, 7, 1},
};
static const int64_t mm_ns[] = {1, 2, 3, 7, 8, 9, 33, 200};

static void check_matmul_case(test_weight *tw, int64_t n) {
    const int64_t rows = tw->rows, cols = tw->cols;
    size_t ny = (size_t)(n * rows);
    float *x = rand_vec((size_t)(n * cols), 1.0), *ax = abs_vec(x, (size_t)(n * cols));
    float *bias = rand_vec((size_t)rows, 1.0), *abias = abs_vec(bias, (size_t)rows);
    float *old = rand_vec(ny, 1.0), *aold = abs_vec(old, ny);
    float *ref = malloc(ny * sizeof *ref), *out = malloc(ny * sizeof *out);
    float *mag = malloc(ny * sizeof *mag), *dot = malloc(ny * sizeof *dot);
    gg_ref_matmul(dot, ax, n, GG_TYPE_F32, tw->absw, rows, cols, NULL, 0.0f); /* Σ|x||w| */
    for (int combo = 0; combo < 4; combo++) {
        const float *b = combo & 1 ? bias : NULL;
        float beta = combo & 2 ? 1.0f : 0.0f;
        for (size_t i = 0; i < ny; i++) /* the bound: Σ|x||w| + |bias| + |beta·old| */
            mag[i] = dot[i] + (b ? abias[i % (size_t)rows] : 0.0f) + (beta != 0 ? aold[i] : 0.0f);
        if (beta != 0) memcpy(ref, old, ny * sizeof *ref);
        gg_ref_matmul(ref, x, n, tw->t, tw->bytes, rows, cols, b, beta);
        for (size_t l = 0; l < sizeof all_levels / sizeof *all_levels; l++) {
            if (!use_level(all_levels[l])) continue;
            if (beta != 0) memcpy(out, old, ny * sizeof *out);
            else
                for (size_t i = 0; i < ny; i++)
                    out[i] = NAN;
            be->matmul(be, out, x, n, &tw->w, b, beta);
            char what[160];
            snprintf(what, sizeof what, "matmul %s [%lld, %lld] n=%lld %s bias=%d beta=%g",
                     gg_type_name(tw->t), (long long)rows, (long long)cols, (long long)n,
                     level_names[all_levels[l]], b != NULL, (double)beta);
            compare(what, out, ref, mag, ny);
        }
    }
    free(x), free(ax), free(bias), free(abias), free(old), free(aold);
    free(ref), free(out), free(mag), free(dot);
}

static void test_matmul(void) {
    for (size_t ti = 0; ti < sizeof all_types / sizeof *all_types; ti++)
        for (size_t si = 0; si < sizeof mm_shapes / sizeof *mm_shapes; si++) {
            const shape *s = &mm_shapes[si];
            if (s->float_only && gg_type_is_quantized(all_types[ti])) continue;
            test_weight tw;
            if (make_weight(&tw, all_types[ti], s->rows, s->cols) == 0)
                for (size_t ni = 0; ni < sizeof mm_ns / sizeof *mm_ns; ni++)
                    check_matmul_case(&tw, mm_ns[ni]);
            free_weight(&tw);
        }
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

/* ------------------------------------------------------------------------ */
/* int8 matmul                                                               */

/* The bound of the top comment for token i, row r. */
static double int8_bound(const test_weight *tw, const float *xi, int64_t r) {
    const int64_t cols = tw->cols;
    const float *aw = tw->absw + r * cols;
    const double e = 0.5 / 127;
    double lim = 0;
    for (int64_t b = 0; b < cols / 64; b++) {
        double ax = 0, sx = 0, aw_max = 0, sw = 0;
        for (int j = 0; j < 64; j++) {
            ax = fmax(ax, fabs(xi[64 * b + j]));
            sx += fabs(xi[64 * b + j]);
            aw_max = fmax(aw_max, aw[64 * b + j]);
            sw += aw[64 * b + j];
        }
        lim += e * ax * sw;
        if (tw->t == GG_TYPE_NF4) lim += e * aw_max * sx + e * e * 64 * ax * aw_max;
    }
    return lim;
}

static void check_int8_case(test_weight *tw, int64_t n, int poison) {
    const int64_t rows = tw->rows, cols = tw->cols;
    size_t ny = (size_t)(n * rows);
    float *x = rand_vec((size_t)(n * cols), 1.0), *ax = abs_vec(x, (size_t)(n * cols));
    if (poison) { /* token 1: an infinity in its second block, if it has one */
        x[1 * cols + (cols > 64 ? 70 : 3)] = INFINITY;
        x[(n - 1) * cols] = 0.0f;
    }
    for (int64_t c = 0; c < 64 && n > 2; c++) /* token 2's first block: all zero */
        x[2 * cols + c] = 0.0f;
    float *bias = rand_vec((size_t)rows, 1.0), *old = rand_vec(ny, 1.0);
    float *ref = malloc(ny * sizeof *ref), *out = malloc(ny * sizeof *out), *fl = malloc(ny * sizeof *fl);
    float *dot = malloc(ny * sizeof *dot);
    gg_ref_matmul(dot, ax, n, GG_TYPE_F32, tw->absw, rows, cols, NULL, 0.0f);
    int have = cpu_int8_supported();
    for (int combo = 0; combo < 3; combo++) {
        const float *b = combo >= 1 ? bias : NULL;
        float beta = combo == 2 ? 1.0f : 0.0f;
        memcpy(ref, old, ny * sizeof *ref);
        gg_ref_matmul_int8(ref, x, n, tw->t, tw->bytes, rows, cols, b, beta);
        char what[160];
        snprintf(what, sizeof what, "int8 matmul %s [%lld, %lld] n=%lld bias=%d beta=%g%s",
                 gg_type_name(tw->t), (long long)rows, (long long)cols, (long long)n, b != NULL,
                 (double)beta, poison ? " (inf)" : "");
        if (have) {
            /* n <= 4: the GEMV (same integer dots, its own float sum); else bit for bit */
            int gemv = n <= 4;
            memcpy(out, old, ny * sizeof *out);
            int rc = gemv ? cpu_gemv_int8(be, out, x, n, &tw->w, b, beta) : cpu_matmul_int8(be, out, x, n, &tw->w, b, beta);
            CHECK(rc == 0, "%s: not run", what);
            size_t bad = 0;
            for (size_t i = 0; i < ny && rc == 0; i++) {
                if (isnan(out[i]) && isnan(ref[i])) continue;
                double lim = gemv ? 2e-5 * (dot[i] + (b ? fabs(b[i % (size_t)rows]) : 0) + (beta != 0 ? fabs(old[i]) : 0))
                                  : 0.0;
                if (!(fabs((double)out[i] - ref[i]) <= lim) && !bad++)
                    CHECK(0, "%s: element %zu: %.9g vs ref %.9g (|diff| %.3g > %.3g)", what, i, (double)out[i],
                          (double)ref[i], fabs((double)out[i] - ref[i]), lim);
            }
        }
        if (poison) { /* token 1's outputs are NaN, the others finite */
            for (int64_t r = 0; r < rows; r++)
                CHECK(isnan(ref[1 * rows + r]) && isfinite(ref[r]), "%s: row %lld: %g %g", what,
                      (long long)r, (double)ref[1 * rows + r], (double)ref[r]);
            continue;
        }
        memcpy(fl, old, ny * sizeof *fl);
        gg_ref_matmul(fl, x, n, tw->t, tw->bytes, rows, cols, b, beta);
        int bad = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t r = 0; r < rows; r++) {
                size_t k = (size_t)(i * rows + r);
                double lim = int8_bound(tw, x + i * cols, r) + TOL * (dot[k] + 1.0 + 1.0);
                double d = fabs((double)ref[k] - fl[k]);
                if (!(d <= lim) && !bad++)
                    CHECK(0, "%s: token %lld row %lld: %.9g vs float %.9g (|diff| %.3g > %.3g)", what,
                          (long long)i, (long long)r, (double)ref[k], (double)fl[k], d, lim);
            }
    }
    free(x), free(ax), free(bias), free(old), free(ref), free(out), free(fl), free(dot);
}

static void test_matmul_int8(void) {
    static const shape shapes[] = {{37, 64, 0}, {130, 320, 0}, {77, 4096, 0}, {9, 192, 0}};
    static const int64_t ns[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 47, 49, 200};
    if (!cpu_int8_supported())
        printf("# AVX-512 VNNI not available on this CPU: int8 kernel not run (reference checked)\n");
    for (int t = GG_TYPE_Q8; t <= GG_TYPE_NF4; t++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            test_weight tw;
            if (make_weight(&tw, (gg_type)t, shapes[si].rows, shapes[si].cols) == 0) {
                for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
                    check_int8_case(&tw, ns[ni], 0);
                check_int8_case(&tw, 20, 1);
                check_int8_case(&tw, 3, 1);
            }
            free_weight(&tw);
        }
    /* through be->matmul: taken for n above the GEMV sizes when asked for */
    test_weight tw;
    if (make_weight(&tw, GG_TYPE_NF4, 70, 256) == 0) {
        int64_t n = 100;
        float *x = rand_vec((size_t)(n * 256), 1.0), *a = malloc((size_t)(n * 70) * sizeof *a),
              *r = malloc((size_t)(n * 70) * sizeof *r);
        be->int8_matmul = 1;
        be->matmul(be, a, x, n, &tw.w, NULL, 0.0f);
        be->int8_matmul = 0;
        gg_ref_matmul_int8(r, x, n, GG_TYPE_NF4, tw.bytes, 70, 256, NULL, 0.0f);
        if (cpu_int8_supported())
            CHECK(memcmp(a, r, (size_t)(n * 70) * sizeof *a) == 0, "be->matmul with int8_matmul set");
        free(x), free(a), free(r);
    }
    free_weight(&tw);
}

/* ------------------------------------------------------------------------ */
/* matmul_dx                                                                 */

static const shape dx_shapes[] = {{37, 64, 0}, {520, 192, 0}, {70, 4096, 0}, {45, 100, 1}};
static const int64_t dx_ns[] = {1, 3, 64, 200};

static void check_dx_case(test_weight *tw, int64_t n) {
    const int64_t rows = tw->rows, cols = tw->cols;
    size_t nx = (size_t)(n * cols);
    float *dy = rand_vec((size_t)(n * rows), 1.0), *ady = abs_vec(dy, (size_t)(n * rows));
    float *old = rand_vec(nx, 1.0), *aold = abs_vec(old, nx);
    float *ref = malloc(nx * sizeof *ref), *out = malloc(nx * sizeof *out);
    float *mag = malloc(nx * sizeof *mag), *dot = malloc(nx * sizeof *dot);
    gg_ref_matmul_dx(dot, ady, n, GG_TYPE_F32, tw->absw, rows, cols, 0.0f); /* Σ|dy||w| */
    for (int bi = 0; bi < 2; bi++) {
        float beta = (float)bi;
        for (size_t i = 0; i < nx; i++)
            mag[i] = dot[i] + (beta != 0 ? aold[i] : 0.0f);
        if (beta != 0) memcpy(ref, old, nx * sizeof *ref);
        gg_ref_matmul_dx(ref, dy, n, tw->t, tw->bytes, rows, cols, beta);
        for (size_t l = 0; l < sizeof all_levels / sizeof *all_levels; l++) {
            if (!use_level(all_levels[l])) continue;
            if (beta != 0) memcpy(out, old, nx * sizeof *out);
            else
                for (size_t i = 0; i < nx; i++)
                    out[i] = NAN;
            be->matmul_dx(be, out, dy, n, &tw->w, beta);
            char what[160];
            snprintf(what, sizeof what, "matmul_dx %s [%lld, %lld] n=%lld %s beta=%g",
                     gg_type_name(tw->t), (long long)rows, (long long)cols, (long long)n,
                     level_names[all_levels[l]], (double)beta);
            compare(what, out, ref, mag, nx);
        }
    }
    free(dy), free(ady), free(old), free(aold), free(ref), free(out), free(mag), free(dot);
}

static void test_matmul_dx(void) {
    for (size_t ti = 0; ti < sizeof all_types / sizeof *all_types; ti++)
        for (size_t si = 0; si < sizeof dx_shapes / sizeof *dx_shapes; si++) {
            const shape *s = &dx_shapes[si];
            if (s->float_only && gg_type_is_quantized(all_types[ti])) continue;
            test_weight tw;
            if (make_weight(&tw, all_types[ti], s->rows, s->cols) == 0)
                for (size_t ni = 0; ni < sizeof dx_ns / sizeof *dx_ns; ni++)
                    check_dx_case(&tw, dx_ns[ni]);
            free_weight(&tw);
        }
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

/* ------------------------------------------------------------------------ */
/* gemm                                                                      */

static void check_gemm_case(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                            float beta) {
    /* strides larger than the minimum */
    int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
    size_t na = (size_t)((ta ? K : M) * lda), nb = (size_t)((tb ? N : K) * ldb);
    size_t nc = (size_t)(M * ldc);
    float *A = rand_vec(na, 1.0), *B = rand_vec(nb, 1.0);
    float *aA = abs_vec(A, na), *aB = abs_vec(B, nb);
    float *old = rand_vec(nc, 1.0), *ref = malloc(nc * sizeof *ref), *mag = abs_vec(old, nc);
    float *out = beta != 0 ? malloc(nc * sizeof *out) : nan_vec(nc);
    if (beta != 0) memcpy(out, old, nc * sizeof *out);
    memcpy(ref, old, nc * sizeof *ref);
    gg_ref_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, ref, ldc);
    gg_ref_gemm(ta, tb, M, N, K, fabsf(alpha), aA, lda, aB, ldb, fabsf(beta), mag, ldc);
    be->gemm(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, out, ldc);
    /* the padding columns of C are not part of the result: copy them over */
    for (int64_t m = 0; m < M; m++)
        for (int64_t j = N; j < ldc; j++)
            out[m * ldc + j] = ref[m * ldc + j];
    char what[160];
    snprintf(what, sizeof what, "gemm ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g", ta, tb,
             (long long)M, (long long)N, (long long)K, (double)alpha, (double)beta);
    compare(what, out, ref, mag, nc);
    free(A), free(B), free(aA), free(aB), free(old), free(ref), free(mag), free(out);
}

static void test_gemm(void) {
    static const int64_t dims[][3] = {
        {1, 1, 1},      {5, 7, 3},      {64, 100, 33}, {200, 130, 70},
        {30, 300, 200}, {3, 4, 0},      {257, 129, 65},
    };
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t d = 0; d < sizeof dims / sizeof *dims; d++) {
                check_gemm_case(ta, tb, dims[d][0], dims[d][1], dims[d][2], 0.75f, 0.0f);
                check_gemm_case(ta, tb, dims[d][0], dims[d][1], dims[d][2], -1.25f, 1.0f);
                check_gemm_case(ta, tb, dims[d][0], dims[d][1], dims[d][2], 1.0f, 1.0f);
            }
}

/* ------------------------------------------------------------------------ */
/* embed                                                                     */

static void test_embed(void) {
    static const shape shapes[] = {{50, 64, 0}, {300, 2048, 0}, {20, 100, 1}};
    static const int64_t ns[] = {1, 5, 40};
    for (size_t ti = 0; ti < sizeof all_types / sizeof *all_types; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            const shape *s = &shapes[si];
            if (s->float_only && gg_type_is_quantized(all_types[ti])) continue;
            test_weight tw;
            if (make_weight(&tw, all_types[ti], s->rows, s->cols) != 0) {
                free_weight(&tw);
                continue;
            }
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
                int64_t n = ns[ni];
                size_t no = (size_t)(n * s->cols);
                int32_t *ids = malloc((size_t)n * sizeof *ids);
                for (int64_t i = 0; i < n; i++)
                    ids[i] = (int32_t)(rng_u64() % (uint64_t)s->rows);
                ids[0] = (int32_t)s->rows - 1; /* the last row */
                float scale = 1.5f + (float)rng_unit();
                float *ref = malloc(no * sizeof *ref);
                gg_ref_embed(ref, tw.t, tw.bytes, s->rows, s->cols, ids, n, scale);
                for (size_t l = 0; l < sizeof all_levels / sizeof *all_levels; l++) {
                    if (!use_level(all_levels[l])) continue;
                    float *out = nan_vec(no);
                    be->embed(be, out, &tw.w, ids, n, scale);
                    size_t bad = 0;
                    for (size_t i = 0; i < no; i++)
                        bad += memcmp(&out[i], &ref[i], sizeof *out) != 0;
                    CHECK(bad == 0, "embed %s [%lld, %lld] n=%lld %s: %zu elements differ",
                          gg_type_name(tw.t), (long long)s->rows, (long long)s->cols,
                          (long long)n, level_names[all_levels[l]], bad);
                    free(out);
                }
                free(ids);
                free(ref);
            }
            free_weight(&tw);
        }
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
}

/* ------------------------------------------------------------------------ */
/* weight_init validation                                                    */

static void test_weight_init(void) {
    gg_err err = {{0}};
    gg_weight w;
    uint8_t data[4096] = {0};
    CHECK(be->weight_init(be, &w, GG_TYPE_NF4, 4, 100, data, &err) == -1, "nf4 cols 100 accepted");
    CHECK(strstr(err.msg, "multiple of 64") != NULL, "message: %s", err.msg);
    err.msg[0] = 0;
    CHECK(be->weight_init(be, &w, GG_TYPE_Q8, 0, 64, data, &err) == -1, "0 rows accepted");
    CHECK(err.msg[0] != 0, "no message");
    err.msg[0] = 0;
    CHECK(be->weight_init(be, &w, GG_TYPE_F32, 3, -1, data, &err) == -1, "negative cols accepted");
    CHECK(err.msg[0] != 0, "no message");
    err.msg[0] = 0;
    CHECK(be->weight_init(be, &w, (gg_type)9, 3, 64, data, &err) == -1, "bad type accepted");
    CHECK(err.msg[0] != 0, "no message");
    CHECK(be->weight_init(be, &w, GG_TYPE_Q8, 2, 128, data, &err) == 0, "%s", err.msg);
    CHECK(w.data == data && w.rows == 2 && w.cols == 128 && w.type == GG_TYPE_Q8,
          "zero-copy fields");
    be->weight_free(be, &w);
}

/* n = 0 (and M = 0) are no-ops that touch nothing. */
static void test_empty(void) {
    test_weight tw;
    if (make_weight(&tw, GG_TYPE_NF4, 4, 64) == 0) {
        float y[4] = {1, 2, 3, 4}, x[64] = {0};
        int32_t id = 0;
        be->matmul(be, y, x, 0, &tw.w, NULL, 0.0f);
        be->matmul_dx(be, y, x, 0, &tw.w, 0.0f);
        be->embed(be, y, &tw.w, &id, 0, 1.0f);
        be->gemm(be, 0, 0, 0, 4, 4, 1.0f, x, 4, x, 4, 0.0f, y, 4);
        CHECK(y[0] == 1 && y[1] == 2 && y[2] == 3 && y[3] == 4, "output changed");
    }
    free_weight(&tw);
}

int main(void) {
    gg_err err = {{0}};
    be = gg_backend_cpu_new(2, &err);
    if (!be) {
        fprintf(stderr, "gg_backend_cpu_new: %s\n", err.msg);
        return 1;
    }
    for (int l = GG_SIMD_AVX2; l <= GG_SIMD_AVX512; l++)
        if (!use_level(l)) printf("# %s not available on this CPU: not tested\n", level_names[l]);
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);
    RUN(test_weight_init);
    RUN(test_empty);
    RUN(test_embed);
    RUN(test_gemm);
    RUN(test_matmul);
    RUN(test_matmul_dx);
    RUN(test_matmul_int8);
    gg_backend_free(be);
    return check_done();
}

/* test_backend_cuda.c — every op of the CUDA backend (libggcuda.so, loaded
 * as the tools load it) against the CPU backend on the same random data.
 * Without the library or a GPU it prints "skip:" and passes: CI builds the
 * CUDA code but has no GPU; the lent GPU machine runs this.
 *
 * Tolerances (|gpu − cpu| per element):
 * - matmul, matmul_dx, gemm: 1e-5 · (Σ|a||b| + |bias| + |beta·old|): the
 *   dequantized weights are the same floats (cuBLAS runs in pedantic f32,
 *   no TF32), only the summation order differs;
 * - norms, RoPE, activations, softmax, losses, attention and its backward,
 *   AdamW: 2e-5 · (|cpu| + 1e-3) plus 1e-6 absolute (float kernels with
 *   their own reduction order; the references accumulate in double);
 * - embed, add, scale, dropout, argmax, topk ids: exact.
 * The library is $GG_CUDA_LIB, else $GG_BIN/libggcuda.so, else bin/. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-cpu/cpu_backend.h"
#include "tests/check.h"
#include "tests/rng.h"
#include "tools/engine.h"

static gg_backend *cpu, *gpu;

static float *rnd(size_t n, double sd) {
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (float)(sd * rng_gauss());
    return v;
}

/* A device copy of host bytes. */
static void *dev(const void *h, size_t bytes) {
    gg_err err;
    void *d = gpu->alloc(gpu, bytes, &err);
    if (!d) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    if (h) gpu->upload(gpu, d, h, bytes);
    else gpu->memset0(gpu, d, bytes);
    return d;
}

/* Host copy of device floats (after sync; a failed sync fails the test). */
static float *host(const void *d, size_t n) {
    gg_err err;
    float *h = malloc((n ? n : 1) * sizeof *h);
    CHECK(gpu->sync(gpu, &err) == 0, "sync: %s", err.msg);
    gpu->download(gpu, h, d, n * sizeof *h);
    return h;
}

/* |a − b| <= rel·(|b| + mag) + abs elementwise (mag may be NULL); reports
 * the first bad element. */
static void near(const char *what, const float *a, const float *b, const float *mag, size_t n, double rel,
                 double abs_tol) {
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]), lim = rel * (fabs(b[i]) + (mag ? mag[i] : 1e-3)) + abs_tol;
        if (isnan(a[i]) && isnan(b[i])) continue;
        if (!(d <= lim)) {
            CHECK(0, "%s: element %zu: gpu %.9g, cpu %.9g (|diff| %.3g > %.3g)", what, i, (double)a[i],
                  (double)b[i], d, lim);
            return;
        }
    }
}

#define TOL 2e-5

/* ------------------------------------------------------------------------ */
/* Linear algebra                                                            */

static void test_matmul(void) {
    static const gg_type types[] = {GG_TYPE_F32, GG_TYPE_F16, GG_TYPE_BF16, GG_TYPE_Q8, GG_TYPE_NF4};
    static const int64_t shapes[][2] = {{37, 64}, {130, 320}, {256, 4096}};
    static const int64_t ns[] = {1, 7, 64, 300};
    gg_err err;
    for (size_t ti = 0; ti < 5; ti++)
        for (size_t si = 0; si < 3; si++) {
            int64_t rows = shapes[si][0], cols = shapes[si][1];
            float *src = rnd((size_t)(rows * cols), 0.5);
            size_t nbytes = gg_type_nbytes(types[ti], (uint64_t)rows, (uint64_t)cols);
            void *wb = malloc(nbytes);
            REQUIRE(gg_quantize(types[ti], wb, GG_TYPE_F32, src, (uint64_t)rows, (uint64_t)cols, &err) == 0, "%s",
                    err.msg);
            gg_weight wc, wg;
            REQUIRE(cpu->weight_init(cpu, &wc, types[ti], rows, cols, wb, &err) == 0, "%s", err.msg);
            REQUIRE(gpu->weight_init(gpu, &wg, types[ti], rows, cols, wb, &err) == 0, "%s", err.msg);
            float *absw = malloc((size_t)(rows * cols) * sizeof *absw);
            gg_dequantize_rows_ref(types[ti], wb, (uint64_t)rows, (uint64_t)cols, 0, (uint64_t)rows, absw, NULL);
            for (int64_t i = 0; i < rows * cols; i++) absw[i] = fabsf(absw[i]);
            for (size_t ni = 0; ni < 4; ni++) {
                int64_t n = ns[ni];
                size_t ny = (size_t)(n * rows), nx = (size_t)(n * cols);
                float *x = rnd(nx, 1.0), *bias = rnd((size_t)rows, 1.0), *old = rnd(ny, 1.0);
                float *ax = malloc(nx * sizeof *ax), *mag = malloc(ny * sizeof *mag);
                for (size_t i = 0; i < nx; i++) ax[i] = fabsf(x[i]);
                cpu->matmul(cpu, mag, ax, n, &(gg_weight){GG_TYPE_F32, rows, cols, absw, NULL}, NULL, 0.0f);
                for (size_t i = 0; i < ny; i++) mag[i] += fabsf(bias[i % (size_t)rows]) + fabsf(old[i]);
                /* y = old + x·Wᵀ + bias */
                float *yc = malloc(ny * sizeof *yc);
                memcpy(yc, old, ny * sizeof *yc);
                cpu->matmul(cpu, yc, x, n, &wc, bias, 1.0f);
                float *dx = dev(x, nx * 4), *dbias = dev(bias, (size_t)rows * 4), *dy = dev(old, ny * 4);
                gpu->matmul(gpu, dy, dx, n, &wg, dbias, 1.0f);
                float *yg = host(dy, ny);
                char what[96];
                snprintf(what, sizeof what, "matmul %s [%lld, %lld] n=%lld", gg_type_name(types[ti]), (long long)rows,
                         (long long)cols, (long long)n);
                near(what, yg, yc, mag, ny, 1e-5, 0);
                /* dx = dy·W (beta 0 over NaN) */
                float *gx = malloc(nx * sizeof *gx);
                cpu->matmul_dx(cpu, gx, old, n, &wc, 0.0f);
                float *nan_x = malloc(nx * sizeof *nan_x);
                for (size_t i = 0; i < nx; i++) nan_x[i] = NAN;
                float *ddx = dev(nan_x, nx * 4);
                gpu->matmul_dx(gpu, ddx, dy, 0, &wg, 0.0f); /* n = 0: nothing */
                gpu->upload(gpu, dy, old, ny * 4);
                gpu->matmul_dx(gpu, ddx, dy, n, &wg, 0.0f);
                float *gg = host(ddx, nx);
                snprintf(what, sizeof what, "matmul_dx %s [%lld, %lld] n=%lld", gg_type_name(types[ti]),
                         (long long)rows, (long long)cols, (long long)n);
                near(what, gg, gx, NULL, nx, 1e-4, 1e-4 * sqrt((double)rows));
                gpu->free(gpu, dx), gpu->free(gpu, dbias), gpu->free(gpu, dy), gpu->free(gpu, ddx);
                free(x), free(bias), free(old), free(ax), free(mag), free(yc), free(yg), free(gx), free(nan_x),
                    free(gg);
            }
            cpu->weight_free(cpu, &wc);
            gpu->weight_free(gpu, &wg);
            free(src), free(wb), free(absw);
        }
}

static void test_gemm(void) {
    static const int64_t dims[][3] = {{5, 7, 3}, {64, 48, 130}, {1, 300, 17}};
    for (int d = 0; d < 3; d++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int64_t M = dims[d][0], N = dims[d][1], K = dims[d][2];
                float *A = rnd((size_t)(M * K), 1), *B = rnd((size_t)(K * N), 1), *C = rnd((size_t)(M * N), 1);
                float *Cc = malloc((size_t)(M * N) * 4);
                memcpy(Cc, C, (size_t)(M * N) * 4);
                int64_t lda = ta ? M : K, ldb = tb ? K : N;
                cpu->gemm(cpu, ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 1.0f, Cc, N);
                float *dA = dev(A, (size_t)(M * K) * 4), *dB = dev(B, (size_t)(K * N) * 4),
                      *dC = dev(C, (size_t)(M * N) * 4);
                gpu->gemm(gpu, ta, tb, M, N, K, 0.75f, dA, lda, dB, ldb, 1.0f, dC, N);
                float *Cg = host(dC, (size_t)(M * N));
                char what[64];
                snprintf(what, sizeof what, "gemm %lldx%lldx%lld ta=%d tb=%d", (long long)M, (long long)N,
                         (long long)K, ta, tb);
                near(what, Cg, Cc, NULL, (size_t)(M * N), 1e-5, 1e-5 * (double)K);
                gpu->free(gpu, dA), gpu->free(gpu, dB), gpu->free(gpu, dC);
                free(A), free(B), free(C), free(Cc), free(Cg);
            }
}

static void test_embed(void) {
    static const gg_type types[] = {GG_TYPE_F32, GG_TYPE_F16, GG_TYPE_BF16, GG_TYPE_Q8, GG_TYPE_NF4};
    gg_err err;
    int64_t rows = 100, cols = 192, n = 9;
    int32_t ids[9] = {0, 99, 5, 5, 42, 17, 63, 1, 98};
    for (size_t ti = 0; ti < 5; ti++) {
        float *src = rnd((size_t)(rows * cols), 1);
        void *wb = malloc(gg_type_nbytes(types[ti], (uint64_t)rows, (uint64_t)cols));
        REQUIRE(gg_quantize(types[ti], wb, GG_TYPE_F32, src, (uint64_t)rows, (uint64_t)cols, &err) == 0, "%s",
                err.msg);
        gg_weight wc, wg;
        REQUIRE(cpu->weight_init(cpu, &wc, types[ti], rows, cols, wb, &err) == 0, "%s", err.msg);
        REQUIRE(gpu->weight_init(gpu, &wg, types[ti], rows, cols, wb, &err) == 0, "%s", err.msg);
        float *oc = malloc((size_t)(n * cols) * 4);
        cpu->embed(cpu, oc, &wc, ids, n, 1.5f);
        int32_t *dids = dev(ids, sizeof ids);
        float *dout = dev(NULL, (size_t)(n * cols) * 4);
        gpu->embed(gpu, dout, &wg, dids, n, 1.5f);
        float *og = host(dout, (size_t)(n * cols));
        CHECK(memcmp(og, oc, (size_t)(n * cols) * 4) == 0, "embed %s differs", gg_type_name(types[ti]));
        gpu->free(gpu, dids), gpu->free(gpu, dout);
        cpu->weight_free(cpu, &wc), gpu->weight_free(gpu, &wg);
        free(src), free(wb), free(oc), free(og);
    }
}

/* ------------------------------------------------------------------------ */
/* Layers                                                                    */

static void test_norms(void) {
    int64_t n = 7, dim = 320;
    size_t N = (size_t)(n * dim);
    float *x = rnd(N, 2), *w = rnd((size_t)dim, 1), *b = rnd((size_t)dim, 1), *dy = rnd(N, 1), *old = rnd(N, 1);
    float *dx_ = dev(x, N * 4), *dw = dev(w, (size_t)dim * 4), *db = dev(b, (size_t)dim * 4),
          *ddy = dev(dy, N * 4), *dout = dev(NULL, N * 4);
    float *oc = malloc(N * 4);
    for (int plus = 0; plus < 2; plus++) {
        cpu->rmsnorm(cpu, oc, x, w, n, dim, 1e-5f, plus);
        gpu->rmsnorm(gpu, dout, dx_, dw, n, dim, 1e-5f, plus);
        float *og = host(dout, N);
        near(plus ? "rmsnorm 1+w" : "rmsnorm", og, oc, NULL, N, TOL, 1e-6);
        free(og);
        memcpy(oc, old, N * 4);
        cpu->rmsnorm_bwd(cpu, oc, dy, x, w, n, dim, 1e-5f, plus, 1.0f);
        gpu->upload(gpu, dout, old, N * 4);
        gpu->rmsnorm_bwd(gpu, dout, ddy, dx_, dw, n, dim, 1e-5f, plus, 1.0f);
        og = host(dout, N);
        near("rmsnorm_bwd", og, oc, NULL, N, TOL, 1e-6);
        free(og);
    }
    cpu->layernorm(cpu, oc, x, w, b, n, dim, 1e-5f);
    gpu->layernorm(gpu, dout, dx_, dw, db, n, dim, 1e-5f);
    float *og = host(dout, N);
    near("layernorm", og, oc, NULL, N, TOL, 1e-6);
    free(og);
    cpu->layernorm_bwd(cpu, oc, dy, x, w, n, dim, 1e-5f, 0.0f);
    gpu->layernorm_bwd(gpu, dout, ddy, dx_, dw, n, dim, 1e-5f, 0.0f);
    og = host(dout, N);
    near("layernorm_bwd", og, oc, NULL, N, TOL, 1e-6);
    free(og);
    gpu->free(gpu, dx_), gpu->free(gpu, dw), gpu->free(gpu, db), gpu->free(gpu, ddy), gpu->free(gpu, dout);
    free(x), free(w), free(b), free(dy), free(old), free(oc);
}

static void test_rope(void) {
    int64_t n = 9, heads = 4, hd = 64, stride = heads * hd + 32;
    size_t N = (size_t)(n * stride);
    float *x = rnd(N, 1), *inv = malloc((size_t)(hd / 2) * 4);
    int32_t pos[9];
    for (int i = 0; i < 9; i++) pos[i] = 1000 + 37 * i;
    for (int64_t i = 0; i < hd / 2; i++) inv[i] = powf(10000.0f, -2.0f * (float)i / (float)hd);
    float *xc = malloc(N * 4);
    memcpy(xc, x, N * 4);
    cpu->rope(cpu, xc, n, stride, heads, hd, pos, inv, 1.25f);
    float *dx = dev(x, N * 4), *dinv = dev(inv, (size_t)(hd / 2) * 4);
    int32_t *dpos = dev(pos, sizeof pos);
    gpu->rope(gpu, dx, n, stride, heads, hd, dpos, dinv, 1.25f);
    float *xg = host(dx, N);
    near("rope", xg, xc, NULL, N, TOL, 1e-6);
    gpu->free(gpu, dx), gpu->free(gpu, dinv), gpu->free(gpu, dpos);
    free(x), free(inv), free(xc), free(xg);
}

static void test_elementwise(void) {
    size_t n = 10007;
    float *x = rnd(n, 3), *u = rnd(n, 1), *dy = rnd(n, 1);
    float *dxv = dev(x, n * 4), *du = dev(u, n * 4), *ddy = dev(dy, n * 4), *dout = dev(NULL, n * 4),
          *dout2 = dev(NULL, n * 4);
    float *oc = malloc(n * 4), *oc2 = malloc(n * 4);
    for (int a = 0; a < 3; a++) {
        char what[48];
        cpu->act(cpu, oc, x, (int64_t)n, (gg_act)a);
        gpu->act(gpu, dout, dxv, (int64_t)n, (gg_act)a);
        float *og = host(dout, n);
        snprintf(what, sizeof what, "act %d", a);
        near(what, og, oc, NULL, n, TOL, 1e-6);
        free(og);
        cpu->glu(cpu, oc, x, u, (int64_t)n, (gg_act)a);
        gpu->glu(gpu, dout, dxv, du, (int64_t)n, (gg_act)a);
        og = host(dout, n);
        snprintf(what, sizeof what, "glu %d", a);
        near(what, og, oc, NULL, n, TOL, 1e-6);
        free(og);
        cpu->act_bwd(cpu, oc, dy, x, (int64_t)n, (gg_act)a);
        gpu->act_bwd(gpu, dout, ddy, dxv, (int64_t)n, (gg_act)a);
        og = host(dout, n);
        snprintf(what, sizeof what, "act_bwd %d", a);
        near(what, og, oc, NULL, n, TOL, 1e-6);
        free(og);
        cpu->glu_bwd(cpu, oc, oc2, dy, x, u, (int64_t)n, (gg_act)a);
        gpu->glu_bwd(gpu, dout, dout2, ddy, dxv, du, (int64_t)n, (gg_act)a);
        og = host(dout, n);
        float *og2 = host(dout2, n);
        snprintf(what, sizeof what, "glu_bwd %d", a);
        near(what, og, oc, NULL, n, TOL, 1e-6);
        near(what, og2, oc2, NULL, n, TOL, 1e-6);
        free(og), free(og2);
    }
    cpu->add(cpu, oc, x, u, (int64_t)n);
    gpu->add(gpu, dout, dxv, du, (int64_t)n);
    float *og = host(dout, n);
    CHECK(memcmp(og, oc, n * 4) == 0, "add differs");
    free(og);
    cpu->scale(cpu, oc, x, -0.37f, (int64_t)n);
    gpu->scale(gpu, dout, dxv, -0.37f, (int64_t)n);
    og = host(dout, n);
    CHECK(memcmp(og, oc, n * 4) == 0, "scale differs");
    free(og);
    cpu->dropout(cpu, oc, x, (int64_t)n, 0.3f, 1234);
    gpu->dropout(gpu, dout, dxv, (int64_t)n, 0.3f, 1234);
    og = host(dout, n);
    near("dropout", og, oc, NULL, n, 1e-7, 0);
    free(og);
    cpu->sumsq(cpu, oc, x, (int64_t)n);
    gpu->sumsq(gpu, dout, dxv, (int64_t)n);
    og = host(dout, 1);
    near("sumsq", og, oc, NULL, 1, 1e-6, 0);
    free(og);
    gpu->free(gpu, dxv), gpu->free(gpu, du), gpu->free(gpu, ddy), gpu->free(gpu, dout), gpu->free(gpu, dout2);
    free(x), free(u), free(dy), free(oc), free(oc2);
}

static void test_softmax_select(void) {
    int64_t rows = 5, cols = 3001, k = 7;
    size_t N = (size_t)(rows * cols);
    float *x = rnd(N, 4);
    x[10] = x[11] = 50.0f; /* a tie in row 0: the lower index wins */
    x[cols + 3] = NAN;     /* NaN never wins */
    float *dxv = dev(x, N * 4), *oc = malloc(N * 4);
    memcpy(oc, x, N * 4);
    int32_t ic[5], *dids = dev(NULL, sizeof ic);
    cpu->argmax(cpu, ic, x, rows, cols);
    gpu->argmax(gpu, dids, dxv, rows, cols);
    int32_t ig[5];
    gg_err err;
    CHECK(gpu->sync(gpu, &err) == 0, "%s", err.msg);
    gpu->download(gpu, ig, dids, sizeof ig);
    CHECK(memcmp(ig, ic, sizeof ic) == 0, "argmax: %d %d .. vs %d %d ..", ig[0], ig[1], ic[0], ic[1]);
    float *vc = malloc((size_t)(rows * k) * 4);
    int32_t *kc = malloc((size_t)(rows * k) * 4), *kg = malloc((size_t)(rows * k) * 4);
    cpu->topk(cpu, vc, kc, x, rows, cols, k);
    float *dv = dev(NULL, (size_t)(rows * k) * 4);
    int32_t *dk = dev(NULL, (size_t)(rows * k) * 4);
    gpu->topk(gpu, dv, dk, dxv, rows, cols, k);
    float *vg = host(dv, (size_t)(rows * k));
    gpu->download(gpu, kg, dk, (size_t)(rows * k) * 4);
    CHECK(memcmp(kg, kc, (size_t)(rows * k) * 4) == 0 && memcmp(vg, vc, (size_t)(rows * k) * 4) == 0, "topk differs");
    x[cols + 3] = 0.0f; /* softmax on finite rows */
    memcpy(oc, x, N * 4);
    gpu->upload(gpu, dxv, x, N * 4);
    cpu->softmax(cpu, oc, rows, cols);
    gpu->softmax(gpu, dxv, rows, cols);
    float *og = host(dxv, N);
    near("softmax", og, oc, NULL, N, TOL, 1e-7);
    gpu->free(gpu, dxv), gpu->free(gpu, dids), gpu->free(gpu, dv), gpu->free(gpu, dk);
    free(x), free(oc), free(vc), free(kc), free(kg), free(vg), free(og);
}

/* Attention over a packed batch of two segments with GQA, and its backward. */
static void test_attention(void) {
    int64_t n = 37, heads = 8, kvh = 2, hd = 64, kv_stride = kvh * hd + 16;
    size_t nq = (size_t)(n * heads * hd), nk = (size_t)(n * kv_stride);
    float *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *dout = rnd(nq, 1);
    int32_t lo[37], hi[37];
    for (int t = 0; t < 37; t++) lo[t] = t < 20 ? 0 : 20, hi[t] = t;
    float sc = 1.0f / 8.0f;
    float *oc = malloc(nq * 4), *lc = malloc((size_t)(n * heads) * 4);
    cpu->attention(cpu, oc, q, k, v, n, n, kv_stride, heads, kvh, hd, lo, hi, sc, lc);
    float *dq = dev(q, nq * 4), *dk = dev(k, nk * 4), *dv = dev(v, nk * 4), *ddo = dev(dout, nq * 4);
    float *dO = dev(NULL, nq * 4), *dl = dev(NULL, (size_t)(n * heads) * 4);
    int32_t *dlo = dev(lo, sizeof lo), *dhi = dev(hi, sizeof hi);
    gpu->attention(gpu, dO, dq, dk, dv, n, n, kv_stride, heads, kvh, hd, dlo, dhi, sc, dl);
    float *og = host(dO, nq), *lg = host(dl, (size_t)(n * heads));
    near("attention out", og, oc, NULL, nq, TOL, 1e-6);
    near("attention lse", lg, lc, NULL, (size_t)(n * heads), TOL, 1e-6);
    float *gqc = malloc(nq * 4), *gkc = calloc(nk, 4), *gvc = calloc(nk, 4);
    cpu->attention_bwd(cpu, gqc, gkc, gvc, dout, q, k, v, oc, lc, n, n, kv_stride, heads, kvh, hd, lo, hi, sc);
    float *gq = dev(NULL, nq * 4), *gk = dev(NULL, nk * 4), *gv = dev(NULL, nk * 4);
    gpu->upload(gpu, dO, oc, nq * 4);
    gpu->upload(gpu, dl, lc, (size_t)(n * heads) * 4);
    gpu->attention_bwd(gpu, gq, gk, gv, ddo, dq, dk, dv, dO, dl, n, n, kv_stride, heads, kvh, hd, dlo, dhi, sc);
    float *hq = host(gq, nq), *hk = host(gk, nk), *hv = host(gv, nk);
    near("attention_bwd dq", hq, gqc, NULL, nq, 1e-4, 1e-5);
    for (int64_t j = 0; j < n; j++) { /* only the first kvh·hd columns of dk, dv are defined */
        near("attention_bwd dk", hk + j * kv_stride, gkc + j * kv_stride, NULL, (size_t)(kvh * hd), 1e-4, 1e-5);
        near("attention_bwd dv", hv + j * kv_stride, gvc + j * kv_stride, NULL, (size_t)(kvh * hd), 1e-4, 1e-5);
    }
    gpu->free(gpu, dq), gpu->free(gpu, dk), gpu->free(gpu, dv), gpu->free(gpu, ddo), gpu->free(gpu, dO);
    gpu->free(gpu, dl), gpu->free(gpu, dlo), gpu->free(gpu, dhi), gpu->free(gpu, gq), gpu->free(gpu, gk);
    gpu->free(gpu, gv);
    free(q), free(k), free(v), free(dout), free(oc), free(lc), free(og), free(lg), free(gqc), free(gkc), free(gvc);
    free(hq), free(hk), free(hv);
}

/* ------------------------------------------------------------------------ */
/* Training                                                                  */

static void test_cross_entropy(void) {
    int64_t rows = 6, cols = 5003;
    size_t N = (size_t)(rows * cols);
    float *x = rnd(N, 3), *xc = malloc(N * 4), lc[6];
    int32_t lab[6] = {0, 5002, -100, 17, 4000, 1};
    memcpy(xc, x, N * 4);
    cpu->cross_entropy(cpu, lc, xc, lab, rows, cols, 0.25f);
    float *dxv = dev(x, N * 4), *dl = dev(NULL, sizeof lc);
    int32_t *dlab = dev(lab, sizeof lab);
    gpu->cross_entropy(gpu, dl, dxv, dlab, rows, cols, 0.25f);
    float *lg = host(dl, 6), *xg = host(dxv, N);
    near("cross_entropy loss", lg, lc, NULL, 6, TOL, 1e-6);
    near("cross_entropy grad", xg, xc, NULL, N, TOL, 1e-9);
    gpu->free(gpu, dxv), gpu->free(gpu, dl), gpu->free(gpu, dlab);
    free(x), free(xc), free(lg), free(xg);
}

static void test_adamw(void) {
    int64_t n = 1000;
    size_t b = (size_t)n * 4;
    float *p = rnd((size_t)n, 1), *g = rnd((size_t)n, 0.1), *m = rnd((size_t)n, 0.01), *v = malloc(b);
    for (int64_t i = 0; i < n; i++) v[i] = fabsf(m[i]) * 0.1f;
    gg_adamw_hp hp = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                      .grad_scale = 0.5f, .step = 3};
    float *pc = malloc(b), *mc = malloc(b), *vc = malloc(b);
    memcpy(pc, p, b), memcpy(mc, m, b), memcpy(vc, v, b);
    cpu->adamw(cpu, pc, g, mc, vc, n, &hp);
    float *dp = dev(p, b), *dg = dev(g, b), *dm = dev(m, b), *dv = dev(v, b);
    gpu->adamw(gpu, dp, dg, dm, dv, n, &hp);
    float *pg = host(dp, (size_t)n), *mg = host(dm, (size_t)n), *vg = host(dv, (size_t)n);
    near("adamw p", pg, pc, NULL, (size_t)n, 1e-6, 1e-7);
    near("adamw m", mg, mc, NULL, (size_t)n, 1e-6, 1e-9);
    near("adamw v", vg, vc, NULL, (size_t)n, 1e-6, 1e-12);
    /* 8-bit: two steps from the zero state */
    size_t nb = (size_t)((n + GG_ADAM8_BLOCK - 1) / GG_ADAM8_BLOCK);
    uint8_t *m8c = calloc((size_t)n, 1), *v8c = calloc((size_t)n, 1), *m8g = malloc((size_t)n), *v8g = malloc((size_t)n);
    float *mac = calloc(nb, 4), *vac = calloc(nb, 4);
    memcpy(pc, p, b);
    uint8_t *dm8 = dev(NULL, (size_t)n), *dv8 = dev(NULL, (size_t)n);
    float *dma = dev(NULL, nb * 4), *dva = dev(NULL, nb * 4);
    gpu->upload(gpu, dp, p, b);
    for (int s = 1; s <= 2; s++) {
        hp.step = s;
        cpu->adamw8bit(cpu, pc, g, m8c, v8c, mac, vac, n, &hp);
        gpu->adamw8bit(gpu, dp, dg, dm8, dv8, dma, dva, n, &hp);
    }
    float *pg8 = host(dp, (size_t)n);
    gpu->download(gpu, m8g, dm8, (size_t)n);
    gpu->download(gpu, v8g, dv8, (size_t)n);
    near("adamw8bit p", pg8, pc, NULL, (size_t)n, 1e-6, 1e-7);
    int diff = 0;
    for (int64_t i = 0; i < n; i++) diff += m8g[i] != m8c[i] || v8g[i] != v8c[i];
    CHECK(diff <= n / 100, "adamw8bit: %d of %lld codes differ", diff, (long long)n);
    gpu->free(gpu, dp), gpu->free(gpu, dg), gpu->free(gpu, dm), gpu->free(gpu, dv);
    gpu->free(gpu, dm8), gpu->free(gpu, dv8), gpu->free(gpu, dma), gpu->free(gpu, dva);
    free(p), free(g), free(m), free(v), free(pc), free(mc), free(vc), free(pg), free(mg), free(vg);
    free(m8c), free(v8c), free(m8g), free(v8g), free(mac), free(vac), free(pg8);
}

int main(void) {
    gg_err err = {{0}};
    if (!getenv("GG_CUDA_LIB")) { /* the library next to the tools */
        static char lib[1100];
        const char *bin = getenv("GG_BIN");
        snprintf(lib, sizeof lib, "%s/libggcuda.so", bin && *bin ? bin : "bin");
        setenv("GG_CUDA_LIB", lib, 1);
    }
    gpu = gg_tool_backend("cuda", 0, &err);
    if (!gpu) {
        printf("skip: %s\n", err.msg);
        return check_done();
    }
    cpu = gg_backend_cpu_new(0, &err);
    if (!cpu) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    rng_seed(42);
    RUN(test_matmul);
    RUN(test_gemm);
    RUN(test_embed);
    RUN(test_norms);
    RUN(test_rope);
    RUN(test_elementwise);
    RUN(test_softmax_select);
    RUN(test_attention);
    RUN(test_cross_entropy);
    RUN(test_adamw);
    gg_backend_free(gpu);
    gg_backend_free(cpu);
    return check_done();
}

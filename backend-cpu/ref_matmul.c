/* ref_matmul.c — scalar references of the linear-algebra ops (ref.h):
 * matmul, matmul_dx, gemm, embed. The weight is dequantized with
 * gg_dequantize_rows_ref (the definition of every type); plain loops, one
 * thread, dot products accumulated in double. Slow on purpose: these define
 * what the fast CPU and CUDA kernels must compute. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-cpu/ref.h"

/* The references return nothing: running out of memory or an invalid
 * weight here is a bug in the test, so it stops the program. */
static void *ref_alloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "ref_matmul: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

static void ref_dequant(gg_type t, const void *w, int64_t rows, int64_t cols, int64_t row0,
                        int64_t nrows, float *dst) {
    gg_err err;
    if (gg_dequantize_rows_ref(t, w, (uint64_t)rows, (uint64_t)cols, (uint64_t)row0,
                               (uint64_t)nrows, dst, &err)) {
        fprintf(stderr, "ref_matmul: %s\n", err.msg);
        abort();
    }
}

void gg_ref_matmul(float *y, const float *x, int64_t n, gg_type t, const void *w, int64_t rows,
                   int64_t cols, const float *bias, float beta) {
    float *wr = ref_alloc((size_t)cols * sizeof *wr);
    for (int64_t r = 0; r < rows; r++) {
        ref_dequant(t, w, rows, cols, r, 1, wr);
        for (int64_t i = 0; i < n; i++) {
            const float *xi = x + i * cols;
            double s = 0;
            for (int64_t k = 0; k < cols; k++)
                s += (double)xi[k] * wr[k];
            if (bias) s += bias[r];
            if (beta != 0) s += (double)beta * y[i * rows + r];
            y[i * rows + r] = (float)s;
        }
    }
    free(wr);
}

void gg_ref_matmul_dx(float *dx, const float *dy, int64_t n, gg_type t, const void *w, int64_t rows,
                      int64_t cols, float beta) {
    float *W = ref_alloc((size_t)(rows * cols) * sizeof *W);
    double *acc = ref_alloc((size_t)cols * sizeof *acc);
    ref_dequant(t, w, rows, cols, 0, rows, W);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = 0; k < cols; k++)
            acc[k] = beta != 0 ? (double)beta * dx[i * cols + k] : 0.0;
        for (int64_t r = 0; r < rows; r++) {
            double g = dy[i * rows + r];
            const float *wr = W + r * cols;
            for (int64_t k = 0; k < cols; k++)
                acc[k] += g * wr[k];
        }
        for (int64_t k = 0; k < cols; k++)
            dx[i * cols + k] = (float)acc[k];
    }
    free(acc);
    free(W);
}

void gg_ref_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                double a = ta ? A[k * lda + m] : A[m * lda + k];
                double b = tb ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
            }
            s *= alpha;
            if (beta != 0) s += (double)beta * C[m * ldc + j];
            C[m * ldc + j] = (float)s;
        }
}

void gg_ref_embed(float *out, gg_type t, const void *w, int64_t rows, int64_t cols,
                  const int32_t *ids, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) {
        float *o = out + i * cols;
        ref_dequant(t, w, rows, cols, ids[i], 1, o);
        for (int64_t k = 0; k < cols; k++)
            o[k] = scale * o[k];
    }
}

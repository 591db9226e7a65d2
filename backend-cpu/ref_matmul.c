/* ref_matmul.c — scalar references of the linear-algebra ops (ref.h):
 * matmul, matmul_dx, gemm, embed. The weight is dequantized with
 * gg_dequantize_rows_ref (the definition of every type); plain loops, one
 * thread, dot products accumulated in double. Slow on purpose: these define
 * what the fast CPU and CUDA kernels must compute. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-cpu/ref.h"
#include "backend-cpu/wview.h"

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

void gg_ref_matmul_int8(float *y, const float *x, int64_t n, gg_type t, const void *w, int64_t rows,
                        int64_t cols, const float *bias, float beta) {
    if (t != GG_TYPE_Q8 && t != GG_TYPE_NF4) {
        fprintf(stderr, "ref_matmul_int8: %s weights have no int8 form\n", gg_type_name(t));
        abort();
    }
    gg_weight gw = {.type = t, .rows = rows, .cols = cols, .data = w};
    wview v = view_of(&gw);
    const int64_t nb = cols / 64;
    int8_t *wq = ref_alloc((size_t)cols);
    float *wd = ref_alloc((size_t)nb * sizeof *wd);
    int8_t nf4[16];
    for (int i = 0; i < 16; i++)
        nf4[i] = (int8_t)lrintf(127.0f * gg_nf4_codes[i]);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t b = 0; b < nb; b++) {
            int64_t gb = r * nb + b;
            if (t == GG_TYPE_Q8) {
                wd[b] = gg_f16_to_f32(rd16(v.q8d + 2 * gb));
                memcpy(wq + 64 * b, v.p + 64 * gb, 64);
            } else {
                wd[b] = nf4_ap(&v, gb) / 127.0f;
                for (int j = 0; j < 64; j++) {
                    uint8_t by = v.p[32 * gb + j / 2];
                    wq[64 * b + j] = nf4[j & 1 ? by & 15 : by >> 4];
                }
            }
        }
        for (int64_t i = 0; i < n; i++) {
            const float *xi = x + i * cols;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                /* a block with a NaN or an infinity gets d = NaN, q = 0 */
                float amax = 0.0f;
                int bad = 0;
                for (int j = 0; j < 64; j++) {
                    float a = fabsf(xi[64 * b + j]);
                    if (!(a <= FLT_MAX)) bad = 1;
                    else if (a > amax) amax = a;
                }
                float id = amax > 0 ? 127.0f / amax : 0.0f, d = bad ? NAN : amax / 127.0f;
                int32_t dot = 0;
                for (int j = 0; j < 64; j++) {
                    float q = bad ? 0.0f : nearbyintf(xi[64 * b + j] * id);
                    q = q > 127 ? 127 : q < -127 ? -127 : q;
                    dot += (int32_t)q * wq[64 * b + j];
                }
                acc = fmaf((float)dot, d * wd[b], acc);
            }
            float s = acc + (bias ? bias[r] : 0.0f);
            y[i * rows + r] = beta != 0 ? s + beta * y[i * rows + r] : s;
        }
    }
    free(wq);
    free(wd);
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

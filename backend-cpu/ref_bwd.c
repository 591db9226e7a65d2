/* ref_bwd.c — scalar references of the backward ops (ref.h): rmsnorm,
 * layernorm, activations (act, glu) and attention. Plain loops, one
 * thread, reductions accumulated in double, exactly the semantics of
 * models/backend.h and the derivatives of the forward references in
 * ref_ops.c. Slow on purpose: these define what the fast CPU (ops_bwd.c)
 * and CUDA kernels must compute. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-cpu/ref.h"

/* Running out of memory here is a bug in the test: stop the program. */
static void *ref_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "ref_bwd: out of memory (%zu × %zu bytes)\n", n, size);
        abort();
    }
    return p;
}

/* ------------------------------------------------------------------------ */
/* Norms                                                                     */

/* y = x·inv·g with inv = (Σx²/dim + eps)^-½:
 *   dx = inv·g·dy − x·inv³/dim · Σ dy·g·x. */
void gg_ref_rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *w, int64_t n, int64_t dim,
                        float eps, int plus_one, float beta) {
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * dim, *gr = dy + r * dim;
        float *dr = dx + r * dim;
        double ss = 0, c = 0;
        for (int64_t i = 0; i < dim; i++) {
            double g = plus_one ? 1.0 + (double)w[i] : (double)w[i];
            ss += (double)xr[i] * xr[i];
            c += (double)gr[i] * g * xr[i];
        }
        double inv = 1.0 / sqrt(ss / (double)dim + (double)eps);
        double k = c * inv * inv * inv / (double)dim;
        for (int64_t i = 0; i < dim; i++) {
            double g = plus_one ? 1.0 + (double)w[i] : (double)w[i];
            double d = inv * g * gr[i] - k * xr[i];
            dr[i] = (float)(beta != 0.0f ? (double)dr[i] + d : d);
        }
    }
}

/* y = xhat·w + b, xhat = (x − mean)·inv: with g = dy·w,
 *   dx = inv · (g − mean(g) − xhat·mean(g·xhat)). */
void gg_ref_layernorm_bwd(float *dx, const float *dy, const float *x, const float *w, int64_t n, int64_t dim,
                          float eps, float beta) {
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * dim, *gr = dy + r * dim;
        float *dr = dx + r * dim;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < dim; i++) mean += xr[i];
        mean /= (double)dim;
        for (int64_t i = 0; i < dim; i++) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        var /= (double)dim;
        double inv = 1.0 / sqrt(var + (double)eps);
        double mg = 0, mgx = 0;
        for (int64_t i = 0; i < dim; i++) {
            double g = (double)gr[i] * w[i];
            mg += g;
            mgx += g * ((double)xr[i] - mean) * inv;
        }
        mg /= (double)dim;
        mgx /= (double)dim;
        for (int64_t i = 0; i < dim; i++) {
            double g = (double)gr[i] * w[i], xh = ((double)xr[i] - mean) * inv;
            double d = inv * (g - mg - xh * mgx);
            dr[i] = (float)(beta != 0.0f ? (double)dr[i] + d : d);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Activations                                                               */

/* act(x) and act'(x) in double, the forms of ref_ops.c. */
static double ref_act_d(double x, gg_act a) {
    switch (a) {
    case GG_ACT_SILU: return x / (1.0 + exp(-x));
    case GG_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case GG_ACT_GELU_TANH: {
        const double k = 0.7978845608028654; /* sqrt(2/pi) */
        return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
    }
    }
    return x;
}

static double ref_act_grad_d(double x, gg_act a) {
    switch (a) {
    case GG_ACT_SILU: { /* σ·(1 + x·(1 − σ)) */
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1.0 + x * (1.0 - s));
    }
    case GG_ACT_GELU: /* Φ(x) + x·φ(x) */
        return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) * 0.3989422804014327;
    case GG_ACT_GELU_TANH: { /* ½(1 + t) + ½x(1 − t²)·k(1 + 3·0.044715·x²) */
        const double k = 0.7978845608028654;
        double t = tanh(k * (x + 0.044715 * x * x * x));
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x);
    }
    }
    return 1.0;
}

float gg_ref_act1_grad(float x, gg_act a) { return (float)ref_act_grad_d(x, a); }

void gg_ref_act_bwd(float *dx, const float *dy, const float *x, int64_t n, gg_act a) {
    for (int64_t i = 0; i < n; i++) dx[i] = (float)((double)dy[i] * ref_act_grad_d(x[i], a));
}

void gg_ref_glu_bwd(float *dgate, float *dup, const float *dy, const float *gate, const float *up, int64_t n,
                    gg_act a) {
    for (int64_t i = 0; i < n; i++) {
        double g = gate[i], u = up[i], d = dy[i]; /* read before either write (in place) */
        dgate[i] = (float)(d * u * ref_act_grad_d(g, a));
        dup[i] = (float)(d * ref_act_d(g, a));
    }
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */

static double ref_dot(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* With p_j = exp(scale·q·k_j − lse) (the forward's weights), D = dout·out,
 * ds_j = p_j·(dout·v_j − D):  dv_j += p_j·dout, dk_j += scale·ds_j·q,
 * dq = scale·Σ ds_j·k_j. Query heads of one group add into their kv head's
 * dk, dv; key rows no query attends stay 0. */
void gg_ref_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                          const float *v, const float *out, const float *lse, int64_t n, int64_t n_kv,
                          int64_t kv_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                          const int32_t *k_lo, const int32_t *k_hi, float scale) {
    int64_t group = n_heads / n_kv_heads, hd = head_dim, kvd = n_kv_heads * hd;
    double *dkd = ref_calloc((size_t)(n_kv * kvd), sizeof *dkd);
    double *dvd = ref_calloc((size_t)(n_kv * kvd), sizeof *dvd);
    double *dqd = ref_calloc((size_t)(hd > 0 ? hd : 1), sizeof *dqd);
    for (int64_t t = 0; t < n; t++) {
        for (int64_t h = 0; h < n_heads; h++) {
            int64_t row = t * n_heads + h, koff = (h / group) * hd;
            const float *qr = q + row * hd, *gr = dout + row * hd;
            double D = ref_dot(gr, out + row * hd, hd);
            memset(dqd, 0, (size_t)hd * sizeof *dqd);
            for (int64_t j = k_lo[t]; j <= k_hi[t]; j++) {
                const float *kj = k + j * kv_stride + koff, *vj = v + j * kv_stride + koff;
                double p = exp((double)scale * ref_dot(qr, kj, hd) - (double)lse[row]);
                double ds = p * (ref_dot(gr, vj, hd) - D);
                double *dkj = dkd + j * kvd + koff, *dvj = dvd + j * kvd + koff;
                for (int64_t d = 0; d < hd; d++) {
                    dvj[d] += p * gr[d];
                    dkj[d] += (double)scale * ds * qr[d];
                    dqd[d] += (double)scale * ds * kj[d];
                }
            }
            for (int64_t d = 0; d < hd; d++) dq[row * hd + d] = (float)dqd[d];
        }
    }
    for (int64_t j = 0; j < n_kv; j++) {
        for (int64_t c = 0; c < kvd; c++) {
            dk[j * kv_stride + c] = (float)dkd[j * kvd + c];
            dv[j * kv_stride + c] = (float)dvd[j * kvd + c];
        }
    }
    free(dkd), free(dvd), free(dqd);
}

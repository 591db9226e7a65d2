/* ref_ops.c — scalar references of the non-matmul ops (ref.h): rmsnorm,
 * layernorm, rope, attention, activations, softmax, add, scale, argmax,
 * topk. Plain loops, one thread, reductions accumulated in double, exactly
 * the semantics of models/backend.h. Slow on purpose: these define what
 * the fast CPU (ops.c) and CUDA kernels must compute. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend-cpu/ref.h"

/* Running out of memory here is a bug in the test: stop the program. */
static void *ref_alloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "ref_ops: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

/* ------------------------------------------------------------------------ */
/* Norms                                                                     */

void gg_ref_rmsnorm(float *out, const float *x, const float *w, int64_t n, int64_t dim, float eps,
                    int plus_one) {
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * dim;
        float *yr = out + r * dim;
        double ss = 0;
        for (int64_t i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        double inv = 1.0 / sqrt(ss / (double)dim + (double)eps);
        for (int64_t i = 0; i < dim; i++) {
            double g = plus_one ? 1.0 + (double)w[i] : (double)w[i];
            yr[i] = (float)((double)xr[i] * inv * g);
        }
    }
}

void gg_ref_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, int64_t dim,
                      float eps) {
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * dim;
        float *yr = out + r * dim;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < dim; i++) mean += xr[i];
        mean /= (double)dim;
        for (int64_t i = 0; i < dim; i++) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        var /= (double)dim;
        double inv = 1.0 / sqrt(var + (double)eps);
        for (int64_t i = 0; i < dim; i++) yr[i] = (float)(((double)xr[i] - mean) * inv * w[i] + b[i]);
    }
}

/* ------------------------------------------------------------------------ */
/* RoPE                                                                      */

void gg_ref_rope(float *x, int64_t n, int64_t row_stride, int64_t n_heads, int64_t head_dim, const int32_t *pos,
                 const float *inv_freq, float attn_factor) {
    int64_t half = head_dim / 2;
    for (int64_t t = 0; t < n; t++) {
        for (int64_t i = 0; i < half; i++) {
            float f = (float)pos[t] * inv_freq[i]; /* the float32 product, as HF */
            float c = (float)cos((double)f) * attn_factor;
            float s = (float)sin((double)f) * attn_factor;
            for (int64_t h = 0; h < n_heads; h++) {
                float *xh = x + t * row_stride + h * head_dim;
                double x0 = xh[i], x1 = xh[i + half];
                xh[i] = (float)(x0 * c - x1 * s);
                xh[i + half] = (float)(x1 * c + x0 * s);
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */

/* One query head against keys [lo, hi]: out[hd] and the log-sum-exp.
 * s is scratch for hi - lo + 1 scores. */
static double ref_attend_one(float *out, const float *qv, const float *k, const float *v, int64_t kv_stride,
                             int64_t koff, int64_t hd, int64_t lo, int64_t hi, float scale, double *s) {
    double m = -INFINITY;
    for (int64_t j = lo; j <= hi; j++) {
        const float *kj = k + j * kv_stride + koff;
        double dot = 0;
        for (int64_t d = 0; d < hd; d++) dot += (double)qv[d] * kj[d];
        s[j - lo] = (double)scale * dot;
        if (s[j - lo] > m) m = s[j - lo];
    }
    double sum = 0;
    for (int64_t j = lo; j <= hi; j++) {
        s[j - lo] = exp(s[j - lo] - m);
        sum += s[j - lo];
    }
    for (int64_t d = 0; d < hd; d++) {
        double acc = 0;
        for (int64_t j = lo; j <= hi; j++) acc += s[j - lo] * v[j * kv_stride + koff + d];
        out[d] = (float)(acc / sum);
    }
    return m + log(sum);
}

void gg_ref_attention(float *out, const float *q, const float *k, const float *v, int64_t n, int64_t n_kv,
                      int64_t kv_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                      const int32_t *k_lo, const int32_t *k_hi, float scale, float *lse) {
    int64_t group = n_heads / n_kv_heads;
    double *s = ref_alloc((size_t)(n_kv > 0 ? n_kv : 1) * sizeof *s);
    for (int64_t t = 0; t < n; t++) {
        for (int64_t h = 0; h < n_heads; h++) {
            int64_t row = t * n_heads + h;
            double l = ref_attend_one(out + row * head_dim, q + row * head_dim, k, v, kv_stride,
                                      (h / group) * head_dim, head_dim, k_lo[t], k_hi[t], scale, s);
            if (lse) lse[row] = (float)l;
        }
    }
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Activations                                                               */

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

float gg_ref_act1(float x, gg_act a) { return (float)ref_act_d(x, a); }

void gg_ref_act(float *out, const float *x, int64_t n, gg_act a) {
    for (int64_t i = 0; i < n; i++) out[i] = (float)ref_act_d(x[i], a);
}

void gg_ref_glu(float *out, const float *gate, const float *up, int64_t n, gg_act a) {
    for (int64_t i = 0; i < n; i++) out[i] = (float)(ref_act_d(gate[i], a) * up[i]);
}

/* ------------------------------------------------------------------------ */
/* Softmax, add, scale                                                       */

void gg_ref_softmax(float *x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * cols;
        double m = -INFINITY, sum = 0;
        for (int64_t i = 0; i < cols; i++)
            if (xr[i] > m) m = xr[i];
        for (int64_t i = 0; i < cols; i++) sum += exp((double)xr[i] - m);
        for (int64_t i = 0; i < cols; i++) xr[i] = (float)(exp((double)xr[i] - m) / sum);
    }
}

void gg_ref_add(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void gg_ref_scale(float *y, const float *x, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = s * x[i];
}

/* ------------------------------------------------------------------------ */
/* Selection                                                                 */

void gg_ref_argmax(int32_t *ids, const float *x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        int64_t best = -1;
        for (int64_t i = 0; i < cols; i++)
            if (!isnan(xr[i]) && (best < 0 || xr[i] > xr[best])) best = i;
        ids[r] = (int32_t)(best < 0 ? 0 : best);
    }
}

typedef struct ref_item {
    float v;
    int32_t i;
} ref_item;

/* Descending by value, NaN after every number, ties by lower index. */
static int ref_item_cmp(const void *pa, const void *pb) {
    const ref_item *a = pa, *b = pb;
    int na = isnan(a->v), nb = isnan(b->v);
    if (na != nb) return na - nb;
    if (!na && a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

void gg_ref_topk(float *vals, int32_t *ids, const float *x, int64_t rows, int64_t cols, int64_t k) {
    ref_item *it = ref_alloc((size_t)cols * sizeof *it);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) it[i] = (ref_item){x[r * cols + i], (int32_t)i};
        qsort(it, (size_t)cols, sizeof *it, ref_item_cmp);
        for (int64_t j = 0; j < k; j++) {
            vals[r * k + j] = it[j].v;
            ids[r * k + j] = it[j].i;
        }
    }
    free(it);
}

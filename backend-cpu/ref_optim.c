/* ref_optim.c — scalar references of the loss, dropout, reduction and
 * optimizer ops (ref.h): cross_entropy, dropout, sumsq, adamw, adamw8bit,
 * and the 8-bit code maps (gg_ref_adam8_map). Plain loops, one thread,
 * double accumulation; these define what optim.c and the CUDA kernels
 * compute.
 *
 * Two of them are defined in float on purpose, because their results are
 * part of the format of training state and must be reproduced bit for bit
 * by every backend:
 * - dropout: out = x / (1 − p) (one float division) where kept;
 * - adamw8bit: per block, both moments are dequantized, the AdamW update
 *   runs in float with the step constants of adam8_consts (below) in
 *   exactly the operation order of adam8_update, p is updated from the new
 *   unquantized moments (as bitsandbytes), then each moment is requantized
 *   with its new absmax: value × (1 / absmax) (a float product) goes to the
 *   nearest code, decided by the float midpoint (a + b)·0.5 of the two
 *   codes around it (a value on the midpoint takes the lower code; NaN
 *   takes code 0), except that a positive second moment never takes code 0
 *   (it takes code 1, the smallest positive one). Rounding to nearest, a v
 *   below 1.6e-7 of its block's absmax (a gradient 2500 times smaller than
 *   the block's largest) would become 0 while m is not, and the next step
 *   would divide m by about sqrt(1 − β2)·|g|: parameters blow up
 *   (tests/test_backend_optim.c: a 67-unit jump in 50 steps at lr 1e-2).
 *
 * The 8-bit state. Both moments are stored per block of GG_ADAM8_BLOCK
 * elements as one float absmax and one byte per element, the index of a
 * code of a 256-entry ascending map; value = map[code] × absmax. The maps
 * are the "dynamic" data type of Dettmers et al. (8-bit optimizers via
 * block-wise quantization), as bitsandbytes' create_dynamic_map builds it
 * with 7 exponent bits: for each decade 10^(e−6), e = 0..6, the midpoints
 * of 2^e (signed) or 2^(e+1) (unsigned) equal steps of [0.1, 1] scaled by
 * the decade — both signs in the signed map — plus 0 and 1. The signed map
 * then has −0.99296875 as its lowest code; we replace it by −1 so that the
 * element that sets a block's absmax is stored exactly whatever its sign.
 *
 * Zero blocks: dequantization is map[code] × absmax with no special case,
 * so absmax 0 reads as zeros whatever the codes (the initial state, all
 * bytes 0, reads code 0 = −1 × 0 = −0.0 for the first moment, which
 * behaves as 0 in every later operation). A block whose new absmax is 0 is
 * written as absmax 0 and all codes 0 — the initial state again. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* adamw8bit must be bit-identical to optim.c */
#endif

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "backend-cpu/adam8_map.h"
#include "backend-cpu/ref.h"

/* ------------------------------------------------------------------------ */
/* Cross-entropy                                                             */

void gg_ref_cross_entropy(float *loss, float *logits, const int32_t *labels, int64_t rows, int64_t cols,
                          float grad_scale) {
    for (int64_t r = 0; r < rows; r++) {
        float *x = logits + r * cols;
        int32_t label = labels[r];
        if (label < 0) {
            loss[r] = 0.0f;
            memset(x, 0, (size_t)cols * sizeof *x);
            continue;
        }
        double m = -INFINITY, sum = 0;
        for (int64_t i = 0; i < cols; i++)
            if (x[i] > m) m = x[i];
        for (int64_t i = 0; i < cols; i++) sum += exp((double)x[i] - m);
        double lse = m + log(sum);
        loss[r] = (float)(lse - (double)x[label]);
        for (int64_t i = 0; i < cols; i++) {
            double g = exp((double)x[i] - lse) - (i == label ? 1.0 : 0.0);
            x[i] = (float)((double)grad_scale * g);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Dropout, sum of squares                                                   */

void gg_ref_dropout(float *out, const float *x, int64_t n, float p, uint64_t seed) {
    float keep = 1.0f - p;
    for (int64_t i = 0; i < n; i++) out[i] = gg_dropout_u(seed, (uint64_t)i) >= p ? x[i] / keep : 0.0f;
}

void gg_ref_sumsq(float *out, const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    out[0] = (float)s;
}

/* ------------------------------------------------------------------------ */
/* AdamW, f32 state                                                          */

void gg_ref_adamw(float *p, const float *g, float *m, float *v, int64_t n, const gg_adamw_hp *hp) {
    double lr = hp->lr, b1 = hp->beta1, b2 = hp->beta2, eps = hp->eps;
    double bc1 = 1.0 - pow(b1, (double)hp->step), bc2 = 1.0 - pow(b2, (double)hp->step);
    double decay = 1.0 - lr * hp->weight_decay, step_size = lr / bc1, bc2_sqrt = sqrt(bc2);
    for (int64_t i = 0; i < n; i++) {
        double gi = (double)g[i] * hp->grad_scale;
        double mi = b1 * m[i] + (1.0 - b1) * gi;
        double vi = b2 * v[i] + (1.0 - b2) * gi * gi;
        double pi = (double)p[i] * decay - step_size * mi / (sqrt(vi) / bc2_sqrt + eps);
        m[i] = (float)mi;
        v[i] = (float)vi;
        p[i] = (float)pi;
    }
}

/* ------------------------------------------------------------------------ */
/* The 8-bit code maps                                                       */

static float adam8_maps[2][256]; /* [0] unsigned, [1] signed */
static pthread_once_t adam8_once = PTHREAD_ONCE_INIT;


static void adam8_build_both(void) {
    gg_adam8_build(adam8_maps[0], 0);
    gg_adam8_build(adam8_maps[1], 1);
}

const float *gg_ref_adam8_map(int is_signed) {
    pthread_once(&adam8_once, adam8_build_both);
    return adam8_maps[is_signed ? 1 : 0];
}

/* The index of the code nearest to x: binary search for the codes a <= x < b
 * around it, then the float midpoint decides (on it: the lower code). */
static uint8_t adam8_nearest(const float *map, float x) {
    if (x >= map[255]) return 255;
    if (!(x > map[0])) return 0; /* below the map, or NaN */
    int lo = 0, hi = 255;        /* map[lo] <= x < map[hi] */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (map[mid] <= x) lo = mid;
        else hi = mid;
    }
    return (uint8_t)(x > (map[lo] + map[hi]) * 0.5f ? hi : lo);
}

/* ------------------------------------------------------------------------ */
/* AdamW, 8-bit state                                                        */

/* The constants of one step, rounded to float as the tensor ops see them. */
typedef struct adam8_c {
    float gs, decay, b1, omb1, b2, omb2, eps, step_size, bc2_sqrt;
} adam8_c;

static adam8_c adam8_consts(const gg_adamw_hp *hp) {
    double bc1 = 1.0 - pow((double)hp->beta1, (double)hp->step);
    double bc2 = 1.0 - pow((double)hp->beta2, (double)hp->step);
    adam8_c c = {
        .gs = hp->grad_scale,
        .decay = (float)(1.0 - (double)hp->lr * (double)hp->weight_decay),
        .b1 = hp->beta1,
        .omb1 = (float)(1.0 - (double)hp->beta1),
        .b2 = hp->beta2,
        .omb2 = (float)(1.0 - (double)hp->beta2),
        .eps = hp->eps,
        .step_size = (float)((double)hp->lr / bc1),
        .bc2_sqrt = (float)sqrt(bc2),
    };
    return c;
}

/* One element's update in float, in place on *p, *m, *v. */
static void adam8_update(const adam8_c *c, float *p, float g, float *m, float *v) {
    float gi = g * c->gs;
    float mi = c->b1 * *m + c->omb1 * gi;
    float vi = c->b2 * *v + c->omb2 * (gi * gi);
    float den = sqrtf(vi) / c->bc2_sqrt + c->eps;
    *p = *p * c->decay - c->step_size * (mi / den);
    *m = mi;
    *v = vi;
}

/* Codes of x[len] with a new absmax (all codes 0 when it is 0); with
 * floor1, a positive value takes at least code 1. */
static float adam8_quantize(uint8_t *codes, const float *x, int64_t len, const float *map, int floor1) {
    float amax = 0.0f;
    for (int64_t i = 0; i < len; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]);
    if (amax == 0.0f) {
        memset(codes, 0, (size_t)len);
        return 0.0f;
    }
    float inv = 1.0f / amax;
    for (int64_t i = 0; i < len; i++) {
        uint8_t c = adam8_nearest(map, x[i] * inv);
        codes[i] = floor1 && c == 0 && x[i] > 0.0f ? 1 : c;
    }
    return amax;
}

void gg_ref_adamw8bit(float *p, const float *g, uint8_t *m8, uint8_t *v8, float *m_absmax, float *v_absmax,
                      int64_t n, const gg_adamw_hp *hp) {
    const float *smap = gg_ref_adam8_map(1), *umap = gg_ref_adam8_map(0);
    adam8_c c = adam8_consts(hp);
    float m[GG_ADAM8_BLOCK], v[GG_ADAM8_BLOCK];
    for (int64_t b = 0; b * GG_ADAM8_BLOCK < n; b++) {
        int64_t i0 = b * GG_ADAM8_BLOCK, len = n - i0 < GG_ADAM8_BLOCK ? n - i0 : GG_ADAM8_BLOCK;
        for (int64_t i = 0; i < len; i++) {
            m[i] = smap[m8[i0 + i]] * m_absmax[b];
            v[i] = umap[v8[i0 + i]] * v_absmax[b];
            adam8_update(&c, &p[i0 + i], g[i0 + i], &m[i], &v[i]);
        }
        m_absmax[b] = adam8_quantize(m8 + i0, m, len, smap, 0);
        v_absmax[b] = adam8_quantize(v8 + i0, v, len, umap, 1);
    }
}

/* wview.h — where the parts of a weight's container layout (ggfmt/quant.h)
 * lie, for the CPU matmul kernels (matmul.c, matmul_int8.c): the element or
 * code bytes, q8's block scales, nf4's quantized absmax, group scales and
 * mean, and nf4's block scale a'_b computed exactly as quant.c does. */
#ifndef GG_CPU_WVIEW_H
#define GG_CPU_WVIEW_H

#include <stdint.h>
#include <string.h>

#include "ggfmt/quant.h"
#include "models/backend.h"

/* Where the parts of a weight's container layout are (ggfmt/quant.h). */
typedef struct wview {
    gg_type t;
    int64_t rows, cols;
    const uint8_t *p;      /* f32/f16/bf16 elements, q8 int8 values, nf4 codes */
    const uint8_t *q8d;    /* q8: f16 scale of each block */
    const int8_t *qabs;    /* nf4: quantized absmax of each block */
    const uint8_t *gscale; /* nf4: f32 scale of each group of 256 blocks */
    float mean;            /* nf4: mean of the block absmax values */
} wview;

static inline float rdf32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static inline wview view_of(const gg_weight *w) {
    wview v = {.t = w->type, .rows = w->rows, .cols = w->cols, .p = w->data};
    size_t n = (size_t)(w->rows * w->cols), nb = n / 64;
    if (w->type == GG_TYPE_Q8) v.q8d = v.p + n;
    if (w->type == GG_TYPE_NF4) {
        size_t ng = (nb + GG_NF4_GROUP - 1) / GG_NF4_GROUP;
        size_t scales = (n / 2 + nb + 3) & ~(size_t)3;
        v.qabs = (const int8_t *)(v.p + n / 2);
        v.gscale = v.p + scales;
        v.mean = rdf32(v.p + scales + 4 * ng);
    }
    return v;
}

/* nf4 block scale a'_b = (f32)q_b * s_g + mean of block gb (row-major block
 * index), the same float quant.c computes: the product is rounded on its own
 * (the empty asm hides it from FMA contraction). */
static inline float nf4_ap(const wview *v, int64_t gb) {
    float prod = (float)v->qabs[gb] * rdf32(v->gscale + 4 * (gb / GG_NF4_GROUP));
#if defined(__GNUC__) && defined(__x86_64__)
    __asm__("" : "+x"(prod));
#else
    volatile float keep = prod;
    prod = keep;
#endif
    return prod + v->mean;
}

#endif

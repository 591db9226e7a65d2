/* quant.c — the tensor storage types of the .gg container (see quant.h and
 * docs/FORMAT.md §5).
 *
 * Owns: the type table (names, shape rules, byte sizes), the f16 / bf16
 * scalar conversions, the scalar reference quantize / dequantize of every
 * type (the definition of each layout), and the fast paths. A fast path runs
 * the SIMD block kernels of ggfmt/quant_simd.c (chosen at run time) around
 * the same scalar bookkeeping the reference uses (nf4's double quantization,
 * error messages), so its output is bit-identical to the reference; on a CPU
 * without the kernels it simply is the reference.
 *
 * Floating point: every value is computed with one IEEE f32 operation per
 * step, as written (default rounding mode). The one place where an FMA could
 * change a result, a'_b = (f32)q_b * s_g + mean, goes through nf4_aprime(),
 * which rounds the product on its own whatever the compiler's contraction
 * setting; any other implementation (e.g. a GPU dequantizer) must also
 * compute it without fusing. */
#include "ggfmt/quant.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ggfmt/quant.c assumes a little-endian host (the .gg layouts are little-endian)"
#endif

const float gg_nf4_codes[16] = GG_NF4_CODES_INIT;

/* ------------------------------------------------------------------------ */
/* Type table                                                                */

static const char *const type_names[GG_TYPE_COUNT] = {"f32", "f16", "bf16", "q8", "nf4"};

static int type_valid(gg_type t) { return (unsigned)t < GG_TYPE_COUNT; }

const char *gg_type_name(gg_type t) { return type_valid(t) ? type_names[t] : "?"; }

int gg_type_from_name(const char *name, gg_type *out) {
    if (!name) return -1;
    for (int t = 0; t < GG_TYPE_COUNT; t++)
        if (strcmp(name, type_names[t]) == 0) {
            if (out) *out = (gg_type)t;
            return 0;
        }
    return -1;
}

int gg_type_is_quantized(gg_type t) { return t == GG_TYPE_Q8 || t == GG_TYPE_NF4; }

/* Bytes per element of the float types. */
static unsigned float_size(gg_type t) { return t == GG_TYPE_F32 ? 4 : 2; }

static int mul_overflows(uint64_t a, uint64_t b, uint64_t *out) {
    if (a && b > UINT64_MAX / a) return 1;
    *out = a * b;
    return 0;
}

uint64_t gg_type_nbytes(gg_type t, uint64_t rows, uint64_t cols) {
    uint64_t n;
    if (!type_valid(t) || mul_overflows(rows, cols, &n)) return 0;
    switch (t) {
    case GG_TYPE_F32:
    case GG_TYPE_F16:
    case GG_TYPE_BF16: return n > UINT64_MAX / float_size(t) ? 0 : n * float_size(t);
    case GG_TYPE_Q8:
        if (n == 0 || cols % GG_Q8_BLOCK) return 0;
        return n + 2 * (n / GG_Q8_BLOCK); /* <= 1.04 n: cannot overflow */
    case GG_TYPE_NF4: {
        if (n == 0 || cols % GG_NF4_BLOCK) return 0;
        uint64_t nb = n / GG_NF4_BLOCK, ng = (nb + GG_NF4_GROUP - 1) / GG_NF4_GROUP;
        uint64_t head = n / 2 + nb; /* <= 0.52 n: no overflow, nor in the rest */
        return ((head + 3) & ~(uint64_t)3) + 4 * ng + 4;
    }
    default: return 0;
    }
}

int gg_type_check_shape(gg_type t, uint32_t ndim, const uint64_t *shape, gg_err *err) {
    if (!type_valid(t)) return gg_errf(err, "invalid tensor type %d", (int)t);
    const char *name = type_names[t];
    if (gg_type_is_quantized(t)) {
        if (ndim != 2) return gg_errf(err, "%s needs a 2-D tensor, got %u-D", name, ndim);
    } else if (ndim < 1 || ndim > 4) {
        return gg_errf(err, "%s needs a tensor of 1 to 4 dimensions, got %u", name, ndim);
    }
    if (!shape) return gg_errf(err, "%s: no shape given", name);
    uint64_t n = 1;
    for (uint32_t d = 0; d < ndim; d++) {
        if (shape[d] == 0) return gg_errf(err, "%s: dimension %u is 0", name, d);
        if (mul_overflows(n, shape[d], &n))
            return gg_errf(err, "%s: the element count of the shape overflows 64 bits", name);
    }
    uint64_t cols = shape[ndim - 1];
    if (gg_type_is_quantized(t) && cols % 64)
        return gg_errf(err, "%s needs the last dimension (%llu) to be a multiple of 64", name,
                       (unsigned long long)cols);
    if (gg_type_nbytes(t, n / cols, cols) == 0)
        return gg_errf(err, "%s: the byte size of the shape overflows 64 bits", name);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* f16 / bf16                                                                */

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Exact. A signalling NaN comes back quiet (as the F16C instruction does),
 * with its payload. */
float gg_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) /* zero or subnormal: m * 2^-24, exact in f32 */
        return f32_from_bits(sign | f32_bits((float)m * 0x1p-24f));
    if (e == 31) return f32_from_bits(sign | 0x7f800000u | (m ? 0x400000u | m << 13 : 0));
    return f32_from_bits(sign | (e + 112) << 23 | m << 13);
}

/* Round to nearest even; overflow gives infinity (gg_quantize turns that
 * into an error); NaN gives a quiet NaN keeping the top of the payload. */
uint16_t gg_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((a >> 13) & 0x3ff); /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00; /* >= 65520 (or inf): rounds to inf */
    if (a >= 0x38800000u) {                     /* >= 2^-14: normal f16 */
        uint32_t v = a - 0x38000000u;           /* rebias the exponent 127 -> 15 */
        return sign | (uint16_t)((v + 0xfff + ((v >> 13) & 1)) >> 13);
    }
    if (a <= 0x33000000u) return sign; /* <= 2^-25: rounds to zero (the tie to even) */
    /* Subnormal f16: the value in units of 2^-24 is m * 2^-shift. */
    uint32_t m = (a & 0x7fffff) | 0x800000, shift = 126 - (a >> 23); /* 14..24 */
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return sign | (uint16_t)r; /* r may be 0x400: the smallest normal, correctly */
}

float gg_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t gg_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/* ------------------------------------------------------------------------ */
/* Shared scalar pieces                                                      */

/* Element i of a float-typed source at any alignment, as f32. */
static float src_at(gg_type st, const uint8_t *src, size_t i) {
    if (st == GG_TYPE_F32) {
        float f;
        memcpy(&f, src + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, src + 2 * i, 2);
    return st == GG_TYPE_F16 ? gg_f16_to_f32(h) : gg_bf16_to_f32(h);
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static float rdf32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4); /* little-endian host (checked above) */
    return f;
}
static void wrf32(uint8_t *p, float f) { memcpy(p, &f, 4); }

/* The error for element i of a [., cols] tensor being NaN or infinite. */
static int not_finite_err(gg_err *err, gg_type dt, size_t i, uint64_t cols) {
    return gg_errf(err, "%s: element %llu (row %llu, col %llu) is not finite", type_names[dt],
                   (unsigned long long)i, (unsigned long long)(i / cols),
                   (unsigned long long)(i % cols));
}

/* clamp(round_half_away_from_zero(v), -127, 127) for finite v, i.e.
 * clamp(roundf(v)). Computed as trunc(min(|v|, 127) + 0.49999997) with v's
 * sign, which equals roundf for every float in [0, 127] (checked
 * exhaustively; tests/test_quant.c checks it around every tie) and, unlike
 * roundf on baseline x86-64, needs no libm call. */
static int8_t round_clamp127(float v) {
    float a = fabsf(v);
    int r = (int)((a > 127.0f ? 127.0f : a) + 0x1.fffffep-2f);
    int neg = -(v < 0); /* branch-free: the sign of v is random */
    return (int8_t)((r ^ neg) - neg);
}

/* The 15 nf4 decision midpoints, (code[i] + code[i+1]) / 2 in f32. */
static void nf4_midpoints(float mids[15]) {
    for (int i = 0; i < 15; i++)
        mids[i] = (gg_nf4_codes[i] + gg_nf4_codes[i + 1]) / 2.0f;
}

/* a'_b = (f32)q_b * s_g + mean: the product is rounded to f32 before the add
 * (volatile keeps a compiler from fusing the two into an FMA). */
static float nf4_aprime(int8_t q, float s, float mean) {
    volatile float prod = (float)q * s;
    return prod + mean;
}

/* nf4 offsets inside a tensor of n elements. */
typedef struct nf4_layout {
    size_t n, nb, ng;
    size_t qabs, scales, mean; /* byte offsets */
} nf4_layout;

static nf4_layout nf4_layout_of(size_t n) {
    nf4_layout L;
    L.n = n;
    L.nb = n / GG_NF4_BLOCK;
    L.ng = (L.nb + GG_NF4_GROUP - 1) / GG_NF4_GROUP;
    L.qabs = n / 2;
    L.scales = (L.qabs + L.nb + 3) & ~(size_t)3;
    L.mean = L.scales + 4 * L.ng;
    return L;
}

/* nf4 steps 2-4, shared by the reference and the fast path: from the exact
 * block absmax values in a[] write mean, group scales, qabsmax and the zero
 * padding into dst, and replace a[b] with a'_b. */
static void nf4_double_quantize(const nf4_layout *L, float *a, uint8_t *dst) {
    double sum = 0;
    for (size_t b = 0; b < L->nb; b++)
        sum += a[b];
    float mean = (float)(sum / (double)L->nb);
    int8_t *qabs = (int8_t *)(dst + L->qabs);
    for (size_t g = 0; g < L->ng; g++) {
        size_t b0 = g * GG_NF4_GROUP, b1 = b0 + GG_NF4_GROUP < L->nb ? b0 + GG_NF4_GROUP : L->nb;
        float cmax = 0;
        for (size_t b = b0; b < b1; b++) {
            float c = fabsf(a[b] - mean);
            if (c > cmax) cmax = c;
        }
        float s = cmax / 127.0f;
        for (size_t b = b0; b < b1; b++) {
            int8_t q = s > 0 ? round_clamp127((a[b] - mean) / s) : 0;
            qabs[b] = q;
            a[b] = nf4_aprime(q, s, mean);
        }
        wrf32(dst + L->scales + 4 * g, s);
    }
    memset(dst + L->qabs + L->nb, 0, L->scales - (L->qabs + L->nb));
    wrf32(dst + L->mean, mean);
}

/* a'_b for blocks [b0, b0 + cnt) of a stored nf4 tensor. */
static void nf4_aprimes(const nf4_layout *L, const uint8_t *src, size_t b0, size_t cnt, float *ap) {
    const int8_t *qabs = (const int8_t *)(src + L->qabs);
    float mean = rdf32(src + L->mean);
    for (size_t i = 0; i < cnt; i++) {
        size_t b = b0 + i;
        ap[i] = nf4_aprime(qabs[b], rdf32(src + L->scales + 4 * (b / GG_NF4_GROUP)), mean);
    }
}

/* The element count of a [rows, cols] tensor of type t, checking that it
 * and the tensor's byte size fit in memory, and for q8 / nf4 the shape. */
static int element_count(gg_type t, uint64_t rows, uint64_t cols, size_t *n, gg_err *err) {
    if (gg_type_is_quantized(t)) {
        uint64_t shape[2] = {rows, cols};
        if (gg_type_check_shape(t, 2, shape, err)) return -1;
    }
    uint64_t n64;
    if (mul_overflows(rows, cols, &n64) || n64 > SIZE_MAX / 4 ||
        (n64 && gg_type_nbytes(t, rows, cols) == 0))
        return gg_errf(err, "%s: a [%llu, %llu] tensor is too large", type_names[t],
                       (unsigned long long)rows, (unsigned long long)cols);
    *n = (size_t)n64;
    return 0;
}

static int check_quantize_args(gg_type dt, void *dst, gg_type st, const void *src, uint64_t rows,
                               uint64_t cols, size_t *n, gg_err *err) {
    if (!type_valid(dt)) return gg_errf(err, "invalid destination tensor type %d", (int)dt);
    if (st != GG_TYPE_F32 && st != GG_TYPE_F16 && st != GG_TYPE_BF16)
        return gg_errf(err, "cannot convert from %s: the source must be f32, f16 or bf16",
                       gg_type_name(st));
    if (element_count(dt, rows, cols, n, err)) return -1;
    if (*n && (!dst || !src)) return gg_errf(err, "%s: NULL buffer", type_names[dt]);
    return 0;
}

static int check_dequantize_args(gg_type t, const void *src, uint64_t rows, uint64_t cols,
                                 uint64_t row0, uint64_t nrows, float *dst, gg_err *err) {
    size_t n = 0;
    if (!type_valid(t)) return gg_errf(err, "invalid tensor type %d", (int)t);
    if (element_count(t, rows, cols, &n, err)) return -1;
    if (row0 > rows || nrows > rows - row0)
        return gg_errf(err, "%s: rows [%llu, %llu) are outside the tensor's %llu rows",
                       type_names[t], (unsigned long long)row0, (unsigned long long)row0 + nrows,
                       (unsigned long long)rows);
    if (n && nrows && (!src || !dst)) return gg_errf(err, "%s: NULL buffer", type_names[t]);
    return 0;
}

/* Float destination (f32, f16, bf16) from a float source: the same type is a
 * plain copy, anything else converts through f32. */
static int convert_float(gg_type dt, uint8_t *dst, gg_type st, const uint8_t *src, size_t n,
                         uint64_t cols, gg_err *err) {
    if (dt == st) {
        memcpy(dst, src, n * float_size(dt));
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        float f = src_at(st, src, i);
        if (dt == GG_TYPE_F32) {
            memcpy(dst + 4 * i, &f, 4);
        } else if (dt == GG_TYPE_BF16) {
            uint16_t h = gg_f32_to_bf16(f);
            memcpy(dst + 2 * i, &h, 2);
        } else {
            uint16_t h = gg_f32_to_f16(f);
            if ((h & 0x7fff) == 0x7c00 && isfinite(f))
                return gg_errf(err, "f16: element %llu (row %llu, col %llu) = %.9g overflows f16",
                               (unsigned long long)i, (unsigned long long)(i / cols),
                               (unsigned long long)(i % cols), (double)f);
            memcpy(dst + 2 * i, &h, 2);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Scalar references                                                         */

/* q8: one pass, block by block. */
static int q8_quantize_ref(uint8_t *dst, gg_type st, const uint8_t *src, size_t n, uint64_t cols,
                           gg_err *err) {
    int8_t *q = (int8_t *)dst;
    uint8_t *d = dst + n;
    for (size_t b = 0; b < n / GG_Q8_BLOCK; b++) {
        float x[GG_Q8_BLOCK], amax = 0;
        for (int j = 0; j < GG_Q8_BLOCK; j++) {
            size_t i = b * GG_Q8_BLOCK + j;
            x[j] = src_at(st, src, i);
            if (!isfinite(x[j])) return not_finite_err(err, GG_TYPE_Q8, i, cols);
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
        }
        uint16_t dh = gg_f32_to_f16(amax / 127.0f);
        if ((dh & 0x7fff) == 0x7c00)
            return gg_errf(err,
                           "q8: block %llu (row %llu, col %llu) has absmax %.9g, too large "
                           "for an f16 scale (absmax / 127 must round below 65520)",
                           (unsigned long long)b, (unsigned long long)(b * GG_Q8_BLOCK / cols),
                           (unsigned long long)(b * GG_Q8_BLOCK % cols), (double)amax);
        float df = gg_f16_to_f32(dh);
        for (int j = 0; j < GG_Q8_BLOCK; j++)
            q[b * GG_Q8_BLOCK + j] = df == 0 ? 0 : round_clamp127(x[j] / df);
        wr16(d + 2 * b, dh);
    }
    return 0;
}

/* nf4 step 1 (exact block absmax), checking every element is finite. */
static int nf4_absmax_ref(gg_type st, const uint8_t *src, size_t nb, uint64_t cols, float *a,
                          gg_err *err) {
    for (size_t b = 0; b < nb; b++) {
        float amax = 0;
        for (int j = 0; j < GG_NF4_BLOCK; j++) {
            size_t i = b * GG_NF4_BLOCK + j;
            float x = src_at(st, src, i);
            if (!isfinite(x)) return not_finite_err(err, GG_TYPE_NF4, i, cols);
            if (fabsf(x) > amax) amax = fabsf(x);
        }
        a[b] = amax;
    }
    return 0;
}

/* nf4 step 5: the code index of every element given a'_b. */
static void nf4_encode_ref(gg_type st, const uint8_t *src, size_t nb, const float *ap,
                           const float mids[15], uint8_t *codes) {
    for (size_t b = 0; b < nb; b++) {
        for (int j = 0; j < GG_NF4_BLOCK; j += 2) {
            unsigned idx[2];
            for (int k = 0; k < 2; k++) {
                idx[k] = 7;
                if (ap[b] != 0) {
                    float t = src_at(st, src, b * GG_NF4_BLOCK + j + k) / ap[b];
                    idx[k] = 0;
                    for (int i = 0; i < 15; i++)
                        idx[k] += t > mids[i];
                }
            }
            codes[(b * GG_NF4_BLOCK + j) / 2] = (uint8_t)(idx[0] << 4 | idx[1]);
        }
    }
}

/* The fast path's kernels, or NULL for the reference (level <= 0). */
static const gg_quant_kernels *kernels_for(int level);

/* Quantize with the kernels k (NULL: the reference). */
static int quantize_with(const gg_quant_kernels *k, gg_type dt, void *dstv, gg_type st,
                         const void *srcv, uint64_t rows, uint64_t cols, gg_err *err) {
    size_t n = 0;
    if (check_quantize_args(dt, dstv, st, srcv, rows, cols, &n, err)) return -1;
    uint8_t *dst = dstv;
    const uint8_t *src = srcv;
    if (!gg_type_is_quantized(dt)) {
        /* On an f16 overflow the reference finds the element and says so. */
        if (k && dt != st && k->convert(dt, st, src, n, dst) == 0) return 0;
        return convert_float(dt, dst, st, src, n, cols, err);
    }

    if (dt == GG_TYPE_Q8) {
        /* A kernel failure (non-finite input, scale overflow) is rare: the
         * reference then finds the element and says so. */
        if (k && k->q8_quantize(st, src, n / GG_Q8_BLOCK, (int8_t *)dst, dst + n) == 0) return 0;
        return q8_quantize_ref(dst, st, src, n, cols, err);
    }

    nf4_layout L = nf4_layout_of(n);
    float *a = malloc(L.nb * sizeof *a), mids[15];
    if (!a) return gg_errf(err, "nf4: out of memory (%zu block scales)", L.nb);
    nf4_midpoints(mids);
    if (!k || k->absmax(st, src, L.nb, a) != 0) {
        if (nf4_absmax_ref(st, src, L.nb, cols, a, err)) {
            free(a);
            return -1;
        }
    }
    nf4_double_quantize(&L, a, dst);
    if (k)
        k->nf4_encode(st, src, L.nb, a, mids, dst);
    else
        nf4_encode_ref(st, src, L.nb, a, mids, dst);
    free(a);
    return 0;
}

/* Dequantize with the kernels k (NULL: the reference). */
static int dequantize_with(const gg_quant_kernels *k, gg_type t, const void *srcv, uint64_t rows,
                           uint64_t cols, uint64_t row0, uint64_t nrows, float *dst, gg_err *err) {
    if (check_dequantize_args(t, srcv, rows, cols, row0, nrows, dst, err)) return -1;
    const uint8_t *src = srcv;
    size_t i0 = (size_t)(row0 * cols), cnt = (size_t)(nrows * cols);
    switch (t) {
    case GG_TYPE_F32:
        if (cnt) memcpy(dst, src + 4 * i0, 4 * cnt);
        return 0;
    case GG_TYPE_F16:
    case GG_TYPE_BF16:
        if (k) return k->convert(GG_TYPE_F32, t, src + 2 * i0, cnt, dst);
        for (size_t i = 0; i < cnt; i++)
            dst[i] = src_at(t, src, i0 + i);
        return 0;
    case GG_TYPE_Q8: {
        size_t n = (size_t)(rows * cols), b0 = i0 / GG_Q8_BLOCK, nblk = cnt / GG_Q8_BLOCK;
        const int8_t *q = (const int8_t *)src;
        const uint8_t *d = src + n;
        if (k) {
            k->q8_dequant(q + i0, d + 2 * b0, nblk, dst);
            return 0;
        }
        for (size_t b = 0; b < nblk; b++) {
            float df = gg_f16_to_f32(rd16(d + 2 * (b0 + b)));
            for (int j = 0; j < GG_Q8_BLOCK; j++)
                dst[b * GG_Q8_BLOCK + j] = (float)q[i0 + b * GG_Q8_BLOCK + j] * df;
        }
        return 0;
    }
    case GG_TYPE_NF4: {
        nf4_layout L = nf4_layout_of((size_t)(rows * cols));
        size_t b0 = i0 / GG_NF4_BLOCK, nblk = cnt / GG_NF4_BLOCK;
        float ap[256];
        for (size_t c0 = 0; c0 < nblk; c0 += 256) { /* a'_b a chunk at a time */
            size_t m = nblk - c0 < 256 ? nblk - c0 : 256;
            nf4_aprimes(&L, src, b0 + c0, m, ap);
            const uint8_t *codes = src + (b0 + c0) * (GG_NF4_BLOCK / 2);
            float *out = dst + c0 * GG_NF4_BLOCK;
            if (k) {
                k->nf4_decode(codes, ap, m, out);
                continue;
            }
            for (size_t b = 0; b < m; b++)
                for (int j = 0; j < GG_NF4_BLOCK; j++) {
                    uint8_t byte = codes[b * GG_NF4_BLOCK / 2 + j / 2];
                    out[b * GG_NF4_BLOCK + j] = gg_nf4_codes[j & 1 ? byte & 15 : byte >> 4] * ap[b];
                }
        }
        return 0;
    }
    default: return gg_errf(err, "invalid tensor type %d", (int)t);
    }
}

int gg_quantize_ref(gg_type dst_type, void *dst, gg_type src_type, const void *src, uint64_t rows,
                    uint64_t cols, gg_err *err) {
    return quantize_with(NULL, dst_type, dst, src_type, src, rows, cols, err);
}

int gg_dequantize_rows_ref(gg_type t, const void *src, uint64_t rows, uint64_t cols, uint64_t row0,
                           uint64_t nrows, float *dst, gg_err *err) {
    return dequantize_with(NULL, t, src, rows, cols, row0, nrows, dst, err);
}

/* ------------------------------------------------------------------------ */
/* Fast paths: the best kernels the CPU has, up to the cap                   */

static atomic_int simd_cap = GG_SIMD_AVX512;

static const gg_quant_kernels *kernels_for(int level) {
    for (; level > GG_SIMD_SCALAR; level--) {
        const gg_quant_kernels *k = gg_quant_kernels_at(level);
        if (k) return k;
    }
    return NULL;
}

int gg_quant_simd_cap(int level) {
    if (level < GG_SIMD_SCALAR || level > GG_SIMD_AVX512) level = GG_SIMD_AVX512;
    atomic_store(&simd_cap, level);
    for (; level > GG_SIMD_SCALAR; level--)
        if (gg_quant_kernels_at(level)) break;
    return level;
}

int gg_quantize(gg_type dst_type, void *dst, gg_type src_type, const void *src, uint64_t rows,
                uint64_t cols, gg_err *err) {
    return quantize_with(kernels_for(atomic_load(&simd_cap)), dst_type, dst, src_type, src, rows,
                         cols, err);
}

int gg_dequantize_rows(gg_type t, const void *src, uint64_t rows, uint64_t cols, uint64_t row0,
                       uint64_t nrows, float *dst, gg_err *err) {
    return dequantize_with(kernels_for(atomic_load(&simd_cap)), t, src, rows, cols, row0, nrows,
                           dst, err);
}

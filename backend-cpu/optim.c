/* optim.c — the CPU backend's loss, dropout, reduction and optimizer ops
 * (cpu_internal.h, "optim.c"): cross_entropy, dropout, sumsq, adamw,
 * adamw8bit. Each computes what its scalar reference in ref_optim.c
 * defines: cross_entropy and adamw up to float rounding; dropout, sumsq's
 * independence of the thread count, and adamw8bit bit for bit.
 *
 * As in ops.c, the inner loops are always-inline bodies on GCC vector
 * extensions of 8 floats, compiled three times (OPT_KERNELS): AVX-512 (VL),
 * AVX2, baseline; cpu_ctx.simd picks the copy. Outside the cross-entropy
 * bodies nothing contracts a·b + c into an FMA (GCC's -std=c11 default,
 * the clang pragma below, and fp-contract=off on the GCC copies; clang's
 * -ffp-contract=fast would override the pragma), so every copy computes
 * the same floats and adamw8bit matches the float arithmetic of its
 * reference exactly; the cross-entropy copies use FMA (20% faster). Under
 * GCC the baseline copy is slow (it splits 8-lane comparisons into scalar
 * code); it serves CPUs without AVX2, and the tests.
 *
 * cross_entropy works on slices of CE_SLICE columns: pass A takes a slice's
 * max m_k and writes exp(x − m_k) in place, summing it (float lanes within
 * blocks of 256, double across); the row's statistics are combined in
 * double (max M, S = Σ s_k·exp(m_k − M)), and pass C multiplies each slice
 * by grad_scale·exp(m_k − M)/S and subtracts grad_scale at the label. Many
 * rows: each thread takes whole rows (a slice stays in L1 between the max
 * and the exp, a row in L2 until pass C). Few rows: all threads share the
 * slices of every row (two pool runs). Both orders compute the same floats.
 *
 * sumsq adds chunks of SUMSQ_CHUNK elements (squares summed in double
 * lanes), then the chunks' sums in chunk order, so the result does not
 * depend on the thread count. adamw and dropout are elementwise and
 * adamw8bit works per block, so their results do not either. adamw8bit
 * finds a code with one read of a table indexed by the top 16 bits of the
 * normalised value (adam8_quant) rather than a binary search: 4 ns instead
 * of 20 ns a parameter. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "backend-cpu/cpu_internal.h"
#include "backend-cpu/cpu_simd.h"
#include "backend-cpu/ref.h" /* gg_ref_adam8_map: the 8-bit code maps */

#define SUM_BLOCK 256     /* elements per float partial sum (cross-entropy) */
#define CE_SLICE 8192     /* columns per cross-entropy slice (32 KiB) */
#define SUMSQ_CHUNK 4096  /* elements per sumsq partial sum */
#define DROPOUT_GOLDEN ((uint64_t)0x9E3779B97F4A7C15ull) /* gg_dropout_u's counter step */

/* ------------------------------------------------------------------------ */
/* Vector helpers (GCC vector extensions)                                    */

typedef float v4f __attribute__((vector_size(16)));
typedef double vd __attribute__((vector_size(32)));

INLINE float hmax_f(const vf *v) {
    float r = (*v)[0];
    for (int k = 1; k < VW; k++)
        if ((*v)[k] > r) r = (*v)[k];
    return r;
}

/* *x = exp(*x) lane-wise for x <= 0 (the Cephes expf scheme: x = n·ln 2 + r
 * with |r| <= ln2/2, a degree-5 polynomial for e^r, 2^n put into the
 * exponent; about 1 ulp). Below -87.3, -inf included, gives 0; NaN stays
 * NaN. */
INLINE void vexp_neg(vf *px) {
#ifdef __clang__
#pragma clang fp contract(fast) /* FMAs where the target has them (ce_exp) */
#endif
    const float round_magic = 12582912.0f; /* 1.5·2^23: t + it − it rounds t to an integer */
    vf x0 = *px;
    vi nan = x0 != x0, tiny = x0 < -87.3f;
    vf x = VSEL(tiny | nan, SPLAT(0), x0);
    vf t = x * 1.44269504088896341f + round_magic;
    vf n = t - round_magic;
    vf r = (x - n * 0.693359375f) - n * -2.12194440e-4f; /* ln 2 in two parts */
    vf p = SPLAT(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    vu e = (vu)t - (vu)SPLAT(round_magic); /* n as a two's complement integer */
    p = p * (vf)((e + 127u) << 23);
    p = VSEL(tiny, SPLAT(0), p);
    *px = VSEL(nan, x0, p);
}

/* *x = sqrt(*x) lane-wise, correctly rounded (as sqrtf). */
INLINE void vsqrt(vf *px) {
#if defined(__x86_64__)
    v4f lo = __builtin_shufflevector(*px, *px, 0, 1, 2, 3), hi = __builtin_shufflevector(*px, *px, 4, 5, 6, 7);
    lo = (v4f)_mm_sqrt_ps((__m128)lo);
    hi = (v4f)_mm_sqrt_ps((__m128)hi);
    *px = __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7);
#else
    for (int k = 0; k < VW; k++) (*px)[k] = sqrtf((*px)[k]);
#endif
}

/* ------------------------------------------------------------------------ */
/* Cross-entropy bodies                                                      */

/* Largest element, ignoring NaN (-inf if there is none). */
INLINE float max_body(const float *x, int64_t n) {
    vf m = SPLAT(-INFINITY);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf v = LOADU(x + i);
        m = VMAX(v, m);
    }
    float r = hmax_f(&m);
    for (; i < n; i++)
        if (x[i] > r) r = x[i];
    return r;
}

/* Pass A of one slice: *pm = max, x = exp(x − max) in place, *ps = Σ x. A
 * slice of -inf only becomes zeros with sum 0. */
INLINE void ce_exp_body(float *x, int64_t n, float *pm, double *ps) {
    float m = max_body(x, n);
    *pm = m;
    if (m == -INFINITY) {
        memset(x, 0, (size_t)n * sizeof *x);
        *ps = 0;
        return;
    }
    double total = 0;
    int64_t i = 0;
    while (i < n) {
        int64_t end = i + SUM_BLOCK < n ? i + SUM_BLOCK : n;
        vf a0 = {0}, a1 = {0};
        for (; i + 2 * VW <= end; i += 2 * VW) {
            vf e0 = LOADU(x + i) - m, e1 = LOADU(x + i + VW) - m;
            vexp_neg(&e0);
            vexp_neg(&e1);
            STOREU(x + i, e0);
            STOREU(x + i + VW, e1);
            a0 += e0;
            a1 += e1;
        }
        if (i < end) { /* the block's last < 16 elements: lanes past the end are -inf */
            for (; i < end; i += VW) {
                int64_t k = end - i < VW ? end - i : VW;
                vf e = SPLAT(-INFINITY);
                for (int64_t q = 0; q < k; q++) e[q] = x[i + q] - m;
                vexp_neg(&e);
                for (int64_t q = 0; q < k; q++) x[i + q] = e[q];
                a0 += e;
            }
            i = end;
        }
        a0 += a1;
        total += hsum_d(&a0);
    }
    *ps = total;
}

INLINE void scale_body(float *x, int64_t n, float c) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) STOREU(x + i, LOADU(x + i) * c);
    for (; i < n; i++) x[i] *= c;
}

/* ------------------------------------------------------------------------ */
/* Dropout and sum-of-squares bodies                                         */

/* gg_dropout_u's mix of a counter value, as the integer k of u = k·2^-24. */
#define DROPOUT_MIX(z)                                       \
    do {                                                     \
        (z) = ((z) ^ ((z) >> 30)) * 0xBF58476D1CE4E5B9ull;   \
        (z) = ((z) ^ ((z) >> 27)) * 0x94D049BB133111EBull;   \
        (z) = ((z) ^ ((z) >> 31)) >> 40;                     \
    } while (0)

/* out[i] for the elements i0 .. i0 + n − 1 (pointers at element i0).
 * u = k·2^-24 >= p exactly when k >= ceil(p·2^24) (both sides exact in
 * float), so the mask is an integer comparison; the counter
 * seed + (i + 1)·golden advances by golden per element. */
INLINE void dropout_body(float *out, const float *x, int64_t i0, int64_t n, float p, uint64_t seed) {
    typedef uint64_t vq __attribute__((vector_size(32)));
    float keep = 1.0f - p;
    uint64_t t = (uint64_t)ceilf(p * 16777216.0f);
    uint64_t zc = seed + ((uint64_t)i0 + 1) * DROPOUT_GOLDEN;
    const vq step = {0, DROPOUT_GOLDEN, 2 * DROPOUT_GOLDEN, 3 * DROPOUT_GOLDEN};
    int64_t i = 0;
    for (; i + VW <= n; i += VW, zc += VW * DROPOUT_GOLDEN) {
        vq z0 = zc + step, z1 = (uint64_t)(zc + 4 * DROPOUT_GOLDEN) + step;
        DROPOUT_MIX(z0);
        DROPOUT_MIX(z1);
        vq k0 = (vq)(z0 >= t), k1 = (vq)(z1 >= t);
        vi kept = __builtin_shufflevector((vi)k0, (vi)k1, 0, 2, 4, 6, 8, 10, 12, 14);
        STOREU(out + i, VSEL(kept, LOADU(x + i) / keep, SPLAT(0)));
    }
    for (; i < n; i++, zc += DROPOUT_GOLDEN) {
        uint64_t z = zc;
        DROPOUT_MIX(z);
        out[i] = z >= t ? x[i] / keep : 0.0f;
    }
}

/* Σ x² of one chunk: products exact in double, 8 double lanes in a fixed
 * order, the lanes added in order, then the tail. */
INLINE double sumsq_body(const float *x, int64_t n) {
    vd a0 = {0}, a1 = {0};
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf v = LOADU(x + i);
        vd lo = __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), vd);
        vd hi = __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), vd);
        a0 += lo * lo;
        a1 += hi * hi;
    }
    double s = ((a0[0] + a0[1]) + (a0[2] + a0[3])) + ((a1[0] + a1[1]) + (a1[2] + a1[3]));
    for (; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

/* ------------------------------------------------------------------------ */
/* AdamW bodies                                                              */

/* The constants of one step, rounded to float as the tensor ops see them
 * (ref_optim.c's adam8_consts: the same values). */
typedef struct adam_c {
    float gs, decay, b1, omb1, b2, omb2, eps, step_size, bc2_sqrt;
} adam_c;

static adam_c adam_consts(const gg_adamw_hp *hp) {
    double bc1 = 1.0 - pow((double)hp->beta1, (double)hp->step);
    double bc2 = 1.0 - pow((double)hp->beta2, (double)hp->step);
    adam_c c = {
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

/* One AdamW step on n elements in float (the expression order of
 * ref_optim.c's adam8_update, lane for lane). */
INLINE void adamw_body(const adam_c *c, float *p, const float *g, float *m, float *v, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf gi = LOADU(g + i) * c->gs;
        vf mi = c->b1 * LOADU(m + i) + c->omb1 * gi;
        vf vv = c->b2 * LOADU(v + i) + c->omb2 * (gi * gi);
        vf den = vv;
        vsqrt(&den);
        den = den / c->bc2_sqrt + c->eps;
        STOREU(p + i, LOADU(p + i) * c->decay - c->step_size * (mi / den));
        STOREU(m + i, mi);
        STOREU(v + i, vv);
    }
    for (; i < n; i++) {
        float gi = g[i] * c->gs;
        float mi = c->b1 * m[i] + c->omb1 * gi;
        float vv = c->b2 * v[i] + c->omb2 * (gi * gi);
        float den = sqrtf(vv) / c->bc2_sqrt + c->eps;
        p[i] = p[i] * c->decay - c->step_size * (mi / den);
        m[i] = mi;
        v[i] = vv;
    }
}

/* A code map's quantizer. The code of q is the number of midpoints
 * mid[i] = (map[i] + map[i+1])·0.5 below q (ref_optim.c's rule, as a
 * count). bucket[] holds that count at the bottom of each bucket of floats
 * that share their top 16 bits (sign, exponent, 7 mantissa bits); no
 * bucket holds more than one midpoint (checked when built: within [-1, 1]
 * the codes are further apart than a bucket is wide), so the code is
 * bucket[b] + (mid[bucket[b]] < q): one table read instead of a search. */
typedef struct adam8_quant {
    const float *map;
    float mid[256]; /* mid[255] = +inf: never below q */
    uint8_t bucket[65536];
} adam8_quant;

static adam8_quant adam8_quants[2]; /* [0] unsigned, [1] signed */
static pthread_once_t adam8_quants_once = PTHREAD_ONCE_INIT;

static float float_of_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The number of midpoints below q (q not NaN). */
static int adam8_count_below(const float *mid, float q) {
    int idx = 0;
    for (int step = 128; step; step >>= 1) idx += mid[idx + step - 1] < q ? step : 0;
    return idx;
}

static void adam8_quant_build(adam8_quant *qz, const float *map) {
    qz->map = map;
    for (int i = 0; i < 255; i++) qz->mid[i] = (map[i] + map[i + 1]) * 0.5f;
    qz->mid[255] = INFINITY;
    for (uint32_t b = 0; b < 65536; b++) {
        int neg = b >> 15, special = ((b >> 7) & 0xff) == 0xff; /* ±inf, NaN */
        if (special) {
            qz->bucket[b] = neg ? 0 : 255;
            continue;
        }
        float lo = float_of_bits(b << 16 | (neg ? 0xffff : 0)), hi = float_of_bits(b << 16 | (neg ? 0 : 0xffff));
        int clo = adam8_count_below(qz->mid, lo), chi = adam8_count_below(qz->mid, hi);
        if (chi - clo > 1) { /* the maps are constants: a bug, not an input */
            fprintf(stderr, "cpu backend: 8-bit code map too dense for its bucket table\n");
            abort();
        }
        qz->bucket[b] = (uint8_t)clo;
    }
}

static void adam8_quants_build(void) {
    adam8_quant_build(&adam8_quants[0], gg_ref_adam8_map(0));
    adam8_quant_build(&adam8_quants[1], gg_ref_adam8_map(1));
}

/* An 8-bit optimizer call: the step, the state, the two quantizers. */
typedef struct adam8_job {
    const struct opt_kernels *k;
    adam_c c;
    float *p, *m_absmax, *v_absmax;
    const float *g;
    uint8_t *m8, *v8;
    int64_t n;
    const adam8_quant *sq, *uq; /* signed (m), unsigned (v) */
} adam8_job;

/* Codes of x[n] (n <= GG_ADAM8_BLOCK); returns the absmax (0: all codes
 * 0). NaN takes code 0; with floor1, a positive value takes at least code
 * 1 (second moments: a positive v never reads back as 0). */
INLINE float adam8_quantize_body(uint8_t *codes, const float *x, int64_t n, const adam8_quant *qz, int floor1) {
    vf am = {0};
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf a = (vf)((vi)LOADU(x + i) & 0x7fffffff);
        am = VMAX(a, am);
    }
    float amax = hmax_f(&am);
    for (; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]);
    if (amax == 0.0f) {
        memset(codes, 0, (size_t)n);
        return 0.0f;
    }
    float inv = 1.0f / amax;
    for (i = 0; i < n; i++) {
        float q = x[i] * inv;
        uint32_t bits;
        memcpy(&bits, &q, sizeof bits);
        int lo = qz->bucket[bits >> 16];
        int c = lo + (qz->mid[lo] < q);
        if (floor1) c += c == 0 && q > 0.0f;
        codes[i] = (uint8_t)(q == q ? c : 0);
    }
    return amax;
}

/* One block: dequantize both moments, update, requantize. */
INLINE void adam8_block_body(const adam8_job *j, int64_t b) {
    int64_t i0 = b * GG_ADAM8_BLOCK, n = j->n - i0 < GG_ADAM8_BLOCK ? j->n - i0 : GG_ADAM8_BLOCK;
    _Alignas(64) float m[GG_ADAM8_BLOCK];
    _Alignas(64) float v[GG_ADAM8_BLOCK];
    const uint8_t *m8 = j->m8 + i0, *v8 = j->v8 + i0;
    float ma = j->m_absmax[b], va = j->v_absmax[b];
    const float *smap = j->sq->map, *umap = j->uq->map;
    for (int64_t i = 0; i < n; i++) {
        m[i] = smap[m8[i]] * ma;
        v[i] = umap[v8[i]] * va;
    }
    adamw_body(&j->c, j->p + i0, j->g + i0, m, v, n);
    j->m_absmax[b] = adam8_quantize_body(j->m8 + i0, m, n, j->sq, 0);
    j->v_absmax[b] = adam8_quantize_body(j->v8 + i0, v, n, j->uq, 1);
}

/* ------------------------------------------------------------------------ */
/* The kernels of one SIMD level                                             */

typedef struct opt_kernels {
    void (*ce_exp)(float *x, int64_t n, float *pm, double *ps);
    void (*scale)(float *x, int64_t n, float c);
    void (*dropout)(float *out, const float *x, int64_t i0, int64_t n, float p, uint64_t seed);
    double (*sumsq)(const float *x, int64_t n);
    void (*adamw)(const adam_c *c, float *p, const float *g, float *m, float *v, int64_t n);
    void (*adam8_block)(const adam8_job *j, int64_t b);
} opt_kernels;

/* Defines the copy of every body for one target: ATTR, and FAST_ATTR (FMA
 * contraction allowed) for the cross-entropy bodies. */
#define OPT_KERNELS(SFX, ATTR, FAST_ATTR)                                                             \
    FAST_ATTR static void ce_exp_##SFX(float *x, int64_t n, float *pm, double *ps) {                  \
        ce_exp_body(x, n, pm, ps);                                                                    \
    }                                                                                                 \
    FAST_ATTR static void scale_##SFX(float *x, int64_t n, float c) { scale_body(x, n, c); }          \
    ATTR static void dropout_##SFX(float *out, const float *x, int64_t i0, int64_t n, float p,         \
                                   uint64_t seed) {                                                   \
        dropout_body(out, x, i0, n, p, seed);                                                         \
    }                                                                                                 \
    ATTR static double sumsq_##SFX(const float *x, int64_t n) { return sumsq_body(x, n); }            \
    ATTR static void adamw_##SFX(const adam_c *c, float *p, const float *g, float *m, float *v,         \
                                 int64_t n) {                                                         \
        adamw_body(c, p, g, m, v, n);                                                                 \
    }                                                                                                 \
    ATTR static void adam8_block_##SFX(const adam8_job *j, int64_t b) { adam8_block_body(j, b); }     \
    static const opt_kernels kernels_##SFX = {                                                        \
        .ce_exp = ce_exp_##SFX,                                                                       \
        .scale = scale_##SFX,                                                                         \
        .dropout = dropout_##SFX,                                                                     \
        .sumsq = sumsq_##SFX,                                                                         \
        .adamw = adamw_##SFX,                                                                         \
        .adam8_block = adam8_block_##SFX,                                                             \
    };

OPT_KERNELS(base, , )

#if defined(__x86_64__) && defined(__GNUC__)
#ifdef __clang__
#define NO_CONTRACT /* the pragma at the top */
#define CONTRACT    /* the pragma in vexp_neg */
#else
#define NO_CONTRACT optimize("fp-contract=off")
#define CONTRACT optimize("fp-contract=fast")
#endif
#define TARGET_AVX2_NC __attribute__((target("avx2"), NO_CONTRACT))
#define TARGET_AVX512_NC __attribute__((target("avx512f,avx512vl,avx2"), NO_CONTRACT))
#define TARGET_AVX2_FMA __attribute__((target("avx2,fma"), CONTRACT))
#define TARGET_AVX512_FMA __attribute__((target("avx512f,avx512vl,avx2,fma"), CONTRACT))
OPT_KERNELS(avx2, TARGET_AVX2_NC, TARGET_AVX2_FMA)
OPT_KERNELS(avx512, TARGET_AVX512_NC, TARGET_AVX512_FMA)
#endif

static const opt_kernels *kernels_of(gg_backend *be) {
#if defined(__x86_64__) && defined(__GNUC__)
    /* simd is the level the CPU check allowed; FMA comes with AVX2 in
     * practice, but is checked all the same (the cross-entropy copies use it). */
    int simd = __builtin_cpu_supports("fma") ? cpu_ctx_of(be)->simd : GG_SIMD_SCALAR;
    if (simd >= GG_SIMD_AVX512) return &kernels_avx512;
    if (simd >= GG_SIMD_AVX2) return &kernels_avx2;
#endif
    return &kernels_base;
}

/* ------------------------------------------------------------------------ */
/* Cross-entropy                                                             */

typedef struct ce_job {
    const opt_kernels *k;
    float *loss, *x;
    const int32_t *labels;
    int64_t cols, nsl; /* slices per row */
    float gs;
    float *xlab;   /* [rows] the label's logit, read before pass A */
    float *smax;   /* [rows·nsl] slice maxima */
    double *ssum;  /* [rows·nsl] Σ exp(x − slice max) */
    float *sscale; /* [rows·nsl] pass C's factor */
} ce_job;

/* Slice u (row u / nsl): its first column and width. */
static float *ce_slice(const ce_job *j, int64_t u, int64_t *c0, int64_t *len) {
    int64_t r = u / j->nsl;
    *c0 = u % j->nsl * CE_SLICE;
    *len = j->cols - *c0 < CE_SLICE ? j->cols - *c0 : CE_SLICE;
    return j->x + r * j->cols + *c0;
}

static void ce_pass_a(const ce_job *j, int64_t u) {
    int64_t c0, len;
    float *x = ce_slice(j, u, &c0, &len);
    if (j->labels[u / j->nsl] < 0) memset(x, 0, (size_t)len * sizeof *x);
    else j->k->ce_exp(x, len, &j->smax[u], &j->ssum[u]);
}

/* The row's loss and its slices' factors, from the slice statistics. */
static void ce_combine(const ce_job *j, int64_t r) {
    if (j->labels[r] < 0) {
        j->loss[r] = 0.0f;
        return;
    }
    const float *mx = j->smax + r * j->nsl;
    const double *sm = j->ssum + r * j->nsl;
    float big = -INFINITY;
    for (int64_t s = 0; s < j->nsl; s++)
        if (mx[s] > big) big = mx[s];
    double total = 0;
    for (int64_t s = 0; s < j->nsl; s++) total += sm[s] * exp((double)mx[s] - big);
    j->loss[r] = (float)((double)big + log(total) - (double)j->xlab[r]);
    for (int64_t s = 0; s < j->nsl; s++)
        j->sscale[r * j->nsl + s] = (float)((double)j->gs * exp((double)mx[s] - big) / total);
}

static void ce_pass_c(const ce_job *j, int64_t u) {
    int64_t c0, len, label = j->labels[u / j->nsl];
    float *x = ce_slice(j, u, &c0, &len);
    if (label < 0) return;
    j->k->scale(x, len, j->sscale[u]);
    if (label >= c0 && label < c0 + len) x[label - c0] -= j->gs;
}

static void ce_rows(void *arg, int64_t lo, int64_t hi) {
    const ce_job *j = arg;
    for (int64_t r = lo; r < hi; r++) {
        for (int64_t s = 0; s < j->nsl; s++) ce_pass_a(j, r * j->nsl + s);
        ce_combine(j, r);
        for (int64_t s = 0; s < j->nsl; s++) ce_pass_c(j, r * j->nsl + s);
    }
}

static void ce_slices_a(void *arg, int64_t lo, int64_t hi) {
    for (int64_t u = lo; u < hi; u++) ce_pass_a(arg, u);
}

static void ce_slices_c(void *arg, int64_t lo, int64_t hi) {
    for (int64_t u = lo; u < hi; u++) ce_pass_c(arg, u);
}

void cpu_cross_entropy(gg_backend *be, float *loss, float *logits, const int32_t *labels, int64_t rows,
                       int64_t cols, float grad_scale) {
    if (rows <= 0 || cols <= 0) return;
    int64_t nsl = (cols + CE_SLICE - 1) / CE_SLICE, nu = rows * nsl;
    ce_job j = {kernels_of(be), loss, logits, labels, cols, nsl, grad_scale, NULL, NULL, NULL, NULL};
    char *mem = cpu_scratch_alloc((size_t)rows * sizeof(float) + (size_t)nu * (2 * sizeof(float) + sizeof(double)));
    j.ssum = (double *)mem;
    j.smax = (float *)(j.ssum + nu);
    j.sscale = j.smax + nu;
    j.xlab = j.sscale + nu;
    for (int64_t r = 0; r < rows; r++) j.xlab[r] = labels[r] >= 0 ? logits[r * cols + labels[r]] : 0.0f;

    int64_t nth = gg_pool_size(cpu_ctx_of(be)->pool), work = rows * cols;
    if (rows % nth == 0 || rows >= 4 * nth || work < PAR_MIN) {
        par_for(be, rows, 1, work, ce_rows, &j);
    } else { /* few rows: the threads share each row's slices */
        par_for(be, nu, 1, work, ce_slices_a, &j);
        for (int64_t r = 0; r < rows; r++) ce_combine(&j, r);
        par_for(be, nu, 1, work, ce_slices_c, &j);
    }
    free(mem);
}

/* ------------------------------------------------------------------------ */
/* Dropout, sum of squares                                                   */

typedef struct dropout_ctx {
    const opt_kernels *k;
    float *out;
    const float *x;
    float p;
    uint64_t seed;
} dropout_ctx;

static void dropout_range(void *arg, int64_t lo, int64_t hi) {
    const dropout_ctx *c = arg;
    c->k->dropout(c->out + lo, c->x + lo, lo, hi - lo, c->p, c->seed);
}

void cpu_dropout(gg_backend *be, float *out, const float *x, int64_t n, float p, uint64_t seed) {
    dropout_ctx c = {kernels_of(be), out, x, p, seed};
    par_for(be, n, SUM_BLOCK, n, dropout_range, &c);
}

typedef struct sumsq_ctx {
    const opt_kernels *k;
    const float *x;
    int64_t n;
    double *part; /* one per chunk */
} sumsq_ctx;

static void sumsq_chunks(void *arg, int64_t lo, int64_t hi) {
    const sumsq_ctx *c = arg;
    for (int64_t ch = lo; ch < hi; ch++) {
        int64_t i0 = ch * SUMSQ_CHUNK, len = c->n - i0 < SUMSQ_CHUNK ? c->n - i0 : SUMSQ_CHUNK;
        c->part[ch] = c->k->sumsq(c->x + i0, len);
    }
}

void cpu_sumsq(gg_backend *be, float *out, const float *x, int64_t n) {
    int64_t nch = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    double stackpart[256];
    sumsq_ctx c = {kernels_of(be), x, n, nch <= 256 ? stackpart : cpu_scratch_alloc((size_t)nch * sizeof(double))};
    par_for(be, nch, 1, n, sumsq_chunks, &c);
    double s = 0;
    for (int64_t ch = 0; ch < nch; ch++) s += c.part[ch];
    if (c.part != stackpart) free(c.part);
    out[0] = (float)s;
}

/* ------------------------------------------------------------------------ */
/* AdamW                                                                     */

typedef struct adamw_ctx {
    const opt_kernels *k;
    adam_c c;
    float *p, *m, *v;
    const float *g;
} adamw_ctx;

static void adamw_range(void *arg, int64_t lo, int64_t hi) {
    const adamw_ctx *a = arg;
    a->k->adamw(&a->c, a->p + lo, a->g + lo, a->m + lo, a->v + lo, hi - lo);
}

void cpu_adamw(gg_backend *be, float *p, const float *g, float *m, float *v, int64_t n, const gg_adamw_hp *hp) {
    adamw_ctx a = {kernels_of(be), adam_consts(hp), p, m, v, g};
    par_for(be, n, SUM_BLOCK, n, adamw_range, &a);
}

static void adam8_blocks(void *arg, int64_t lo, int64_t hi) {
    const adam8_job *j = arg;
    for (int64_t b = lo; b < hi; b++) j->k->adam8_block(j, b);
}

void cpu_adamw8bit(gg_backend *be, float *p, const float *g, uint8_t *m8, uint8_t *v8, float *m_absmax,
                   float *v_absmax, int64_t n, const gg_adamw_hp *hp) {
    pthread_once(&adam8_quants_once, adam8_quants_build);
    adam8_job j = {.k = kernels_of(be), .c = adam_consts(hp), .p = p, .m_absmax = m_absmax,
                   .v_absmax = v_absmax, .g = g, .m8 = m8, .v8 = v8, .n = n,
                   .sq = &adam8_quants[1], .uq = &adam8_quants[0]};
    int64_t nb = (n + GG_ADAM8_BLOCK - 1) / GG_ADAM8_BLOCK;
    par_for(be, nb, 1, n, adam8_blocks, &j);
}

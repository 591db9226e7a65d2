/* cpu_simd.h — what the CPU backend's op files share: GCC vector types and
 * helpers (8 floats a vector; the AVX2 / AVX-512 copies of each kernel are
 * the same C compiled with the TARGET_ attributes), the vectorised exp, and
 * running a range on the thread pool. Not for use outside backend-cpu/. */
#ifndef GG_CPU_SIMD_H
#define GG_CPU_SIMD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend-cpu/cpu_internal.h"

#define PAR_MIN 32768 /* elements below which an op runs on the caller */

#define VW 8 /* floats per vector */
typedef float vf __attribute__((vector_size(VW * 4)));
typedef int32_t vi __attribute__((vector_size(VW * 4)));
typedef uint32_t vu __attribute__((vector_size(VW * 4)));
typedef float vfu __attribute__((vector_size(VW * 4), aligned(4), may_alias)); /* unaligned */

#define INLINE static inline __attribute__((always_inline))
#define LOADU(p) (*(const vfu *)(p))
#define STOREU(p, x) (*(vfu *)(p) = (x))
#define SPLAT(s) ((vf){0} + (float)(s))
/* Lanes of a where mask m (a comparison result) is set, else of b. */
#define VSEL(m, a, b) ((vf)(((vi)(m) & (vi)(a)) | (~(vi)(m) & (vi)(b))))
/* max(a, b) lane-wise, b where a is NaN. */
#define VMAX(a, b) VSEL((a) > (b), (a), (b))

INLINE double hsum_d(const vf *v) {
    double s = 0;
    for (int k = 0; k < VW; k++) s += (*v)[k];
    return s;
}

/* *x = exp(*x) lane-wise (Cephes expf: range reduction by ln 2, degree-5
 * polynomial, about 1 ulp). Below -87.3 (where expf leaves the normal
 * range), -inf included, gives 0; above 88.3 gives about 2^127 (no inf);
 * NaN stays NaN. */
INLINE void vexp(vf *px) {
    const float magic = 12582912.0f; /* 1.5·2^23: adding it rounds to an integer */
    vf x0 = *px;
    vi nan = x0 != x0, under = x0 < -87.3f;
    vf x = VMAX(x0, SPLAT(-87.3f));
    x = VSEL(x > 88.3f, SPLAT(88.3f), x);
    vf t = x * 1.44269504088896341f + magic;
    vf nf = t - magic;
    vf r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
    vf y = SPLAT(1.9875691500e-4f);
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    vu e = (vu)t - (vu)SPLAT(magic); /* the integer n, two's complement */
    y = y * (vf)((e + 127u) << 23);  /* · 2^n */
    y = VSEL(under, SPLAT(0), y);
    *px = VSEL(nan, x0, y);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* fp-contract lets a·b + c become one FMA (GCC's -std=c11 turns contraction
 * off; clang contracts by default and has no optimize attribute). */
#ifdef __clang__
#define FP_CONTRACT
#else
#define FP_CONTRACT optimize("fp-contract=fast")
#endif
#define TARGET_AVX2 __attribute__((target("avx2,fma"), FP_CONTRACT))
#define TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma"), FP_CONTRACT))
#endif

typedef void (*range_fn)(void *ctx, int64_t lo, int64_t hi);

typedef struct par_job {
    range_fn fn;
    void *ctx;
    int64_t n, grain;
} par_job;

static inline void par_worker(void *arg, int ith, int nth) {
    par_job *j = arg;
    int64_t lo, hi;
    gg_pool_split(j->n, j->grain, ith, nth, &lo, &hi);
    if (lo < hi) j->fn(j->ctx, lo, hi);
}

/* fn over [0, n) in shares of multiples of grain: on the pool when the op
 * touches at least PAR_MIN elements (work) and has more than one grain. */
static inline void par_for(gg_backend *be, int64_t n, int64_t grain, int64_t work, range_fn fn, void *ctx) {
    if (work < PAR_MIN || n <= grain) {
        if (n > 0) fn(ctx, 0, n);
        return;
    }
    par_job j = {fn, ctx, n, grain};
    gg_pool_run(cpu_ctx_of(be)->pool, par_worker, &j);
}

/* Scratch inside an op that cannot fail: 64-byte aligned; out of memory
 * stops the process with a message. */
static inline void *cpu_scratch_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
        fprintf(stderr, "cpu backend: out of memory (%zu bytes)\n", bytes);
        abort();
    }
    return p;
}

#endif

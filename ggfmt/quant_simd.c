/* quant_simd.c — the AVX2 and AVX-512 block kernels behind the fast paths
 * of ggfmt/quant.c (gg_quantize, gg_dequantize_rows), and the run-time CPU
 * check that hands them out (gg_quant_kernels_at).
 *
 * The build uses generic x86-64 flags: each function here carries its own
 * target attribute and is only called after the CPU check. On other
 * architectures this file provides no kernels and the fast paths are the
 * scalar references.
 *
 * Every kernel produces exactly the bytes / floats of the scalar reference
 * in quant.c, because each step is the same single IEEE operation (or an
 * exact equivalent): f16 / bf16 -> f32 is exact (F16C, or a shift); f32 ->
 * f16 is F16C's round-to-nearest-even, f32 -> bf16 the reference's integer
 * rounding; max |x| is an exact selection; x / d and x / a'_b are one
 * correctly rounded division; rounding to an int8 is the reference's
 * trunc(min(|v|, 127) + 0.49999997) with v's sign; the nf4 index (the count
 * of midpoints below t) is found with the same f32 midpoints and the same
 * '>' comparison, by a binary search (AVX2) or a cell lookup (AVX-512, see
 * nf4_index_512); dequantization is one multiplication. No multiply feeds an add, so FMA
 * contraction cannot change a result. The a'_b of nf4 are computed by quant.c and passed in. */
#include "ggfmt/quant.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>

#define AVX2 __attribute__((target("avx2,f16c")))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,f16c")))
#define INLINE static inline __attribute__((always_inline))
/* The fixed-count loops over a block's vectors must be unrolled so that the
 * vectors stay in registers (GCC at -O2 does not always). */
#define UNROLL _Pragma("GCC unroll 8")

/* Element size in bytes of a float source type. */
#define ESIZE(st) ((st) == GG_TYPE_F32 ? 4 : 2)

/* Calls BODY(type, ...) with the source type as a compile-time constant, so
 * that each source type gets its own specialized loop. */
#define BY_SOURCE(st, BODY, ...)                                                                   \
    ((st) == GG_TYPE_F32   ? BODY(GG_TYPE_F32, __VA_ARGS__)                                        \
     : (st) == GG_TYPE_F16 ? BODY(GG_TYPE_F16, __VA_ARGS__)                                        \
                           : BODY(GG_TYPE_BF16, __VA_ARGS__))

static float f32_of_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Elements [i, n) of a float conversion, one at a time with the scalar
 * conversions; -1 if a finite value overflows f16. */
static int convert_tail(gg_type dt, gg_type st, const uint8_t *src, size_t i, size_t n,
                        uint8_t *dst) {
    for (; i < n; i++) {
        float f;
        uint16_t h;
        if (st == GG_TYPE_F32) {
            memcpy(&f, src + 4 * i, 4);
        } else {
            memcpy(&h, src + 2 * i, 2);
            f = st == GG_TYPE_F16 ? gg_f16_to_f32(h) : gg_bf16_to_f32(h);
        }
        if (dt == GG_TYPE_F32) {
            memcpy(dst + 4 * i, &f, 4);
            continue;
        }
        h = dt == GG_TYPE_F16 ? gg_f32_to_f16(f) : gg_f32_to_bf16(f);
        if (dt == GG_TYPE_F16 && (h & 0x7fff) == 0x7c00 && isfinite(f)) return -1;
        memcpy(dst + 2 * i, &h, 2);
    }
    return 0;
}

/* ======================================================================== */
/* AVX-512: 16 elements per vector, 4 vectors per block                      */

/* 16 consecutive source elements as f32. */
AVX512 INLINE __m512 ld16(gg_type st, const uint8_t *p) {
    if (st == GG_TYPE_F32) return _mm512_loadu_ps(p);
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (st == GG_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The largest of 32 unsigned 16-bit lanes. */
AVX512 INLINE uint32_t hmax_epu16_512(__m512i m) {
    __m256i y = _mm256_max_epu16(_mm512_castsi512_si256(m), _mm512_extracti64x4_epi64(m, 1));
    __m128i x = _mm_max_epu16(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
    x = _mm_minpos_epu16(_mm_xor_si128(x, _mm_set1_epi16(-1))); /* max = ~min(~x) */
    return ~(uint32_t)_mm_cvtsi128_si32(x) & 0xffff;
}

/* max |x| of a block as the bit pattern of a non-negative float: for
 * non-negative IEEE values (NaN > inf > finite) the integer order of the bit
 * patterns is the numeric order, so an integer max is an exact float max
 * that also exposes any NaN / inf (pattern > 0x7f7fffff). The four converted
 * vectors are left in x[]. */
AVX512 INLINE uint32_t amax_bits_512(gg_type st, const uint8_t *p, __m512 x[4]) {
    const __m512i absm = _mm512_set1_epi32(0x7fffffff);
    __m512i m = _mm512_setzero_si512();
    UNROLL
    for (int k = 0; k < 4; k++) {
        x[k] = ld16(st, p + 16 * k * ESIZE(st));
        m = _mm512_max_epu32(m, _mm512_and_si512(_mm512_castps_si512(x[k]), absm));
    }
    return _mm512_reduce_max_epu32(m);
}

AVX512 INLINE int absmax_512_t(gg_type st, const uint8_t *src, size_t nblk, float *amax) {
    for (size_t b = 0; b < nblk; b++) {
        const uint8_t *p = src + b * 64 * ESIZE(st);
        if (st == GG_TYPE_F32) {
            __m512 x[4];
            uint32_t m = amax_bits_512(st, p, x);
            if (m > 0x7f7fffffu) return -1;
            amax[b] = f32_of_bits(m);
        } else {
            /* Half-width types: the same integer max on the 16-bit patterns,
             * without widening; one conversion per block. */
            const __m512i absm = _mm512_set1_epi16(0x7fff);
            __m512i m = _mm512_max_epu16(_mm512_and_si512(_mm512_loadu_si512(p), absm),
                                         _mm512_and_si512(_mm512_loadu_si512(p + 64), absm));
            uint32_t h = hmax_epu16_512(m);
            if (h >= (st == GG_TYPE_F16 ? 0x7c00u : 0x7f80u)) return -1;
            amax[b] = st == GG_TYPE_F16 ? _cvtsh_ss((unsigned short)h) : f32_of_bits(h << 16);
        }
    }
    return 0;
}

/* clamp(round_half_away_from_zero(v), -127, 127) as int32: |v| clamped to
 * 127, plus 0.49999997 (the float just below 0.5), truncated, with v's sign
 * put back (truncation is symmetric). For every float in [0, 127] this
 * equals roundf (checked exhaustively; the sum can only round across an
 * integer where that integer is the right answer). */
#define JUST_BELOW_HALF 0x1.fffffep-2f

AVX512 INLINE __m512i round_away_127_512(__m512 v) {
    __m512 a = _mm512_min_ps(_mm512_abs_ps(v), _mm512_set1_ps(127.0f));
    __m512i r = _mm512_castps_si512(_mm512_add_ps(a, _mm512_set1_ps(JUST_BELOW_HALF)));
    r = _mm512_ternarylogic_epi32(r, _mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u),
                                  0xf8); /* r | (v & sign) */
    return _mm512_cvttps_epi32(_mm512_castsi512_ps(r));
}

AVX512 INLINE int q8_quantize_512_t(gg_type st, const uint8_t *src, size_t nblk, int8_t *q,
                                    uint8_t *d) {
    for (size_t b = 0; b < nblk; b++) {
        __m512 x[4];
        uint32_t m = amax_bits_512(st, src + b * 64 * ESIZE(st), x);
        if (m > 0x7f7fffffu) return -1;
        unsigned short dh = _cvtss_sh(f32_of_bits(m) / 127.0f, _MM_FROUND_TO_NEAREST_INT);
        if ((dh & 0x7fff) == 0x7c00) return -1; /* the scale overflows f16 */
        memcpy(d + 2 * b, &dh, 2);
        float df = _cvtsh_ss(dh);
        int8_t *out = q + 64 * b;
        if (df == 0) {
            memset(out, 0, 64);
            continue;
        }
        __m512 vd = _mm512_set1_ps(df);
        UNROLL
        for (int k = 0; k < 4; k++) {
            __m512i i = round_away_127_512(_mm512_div_ps(x[k], vd));
            _mm_storeu_si128((__m128i *)(out + 16 * k), _mm512_cvtepi32_epi8(i));
        }
    }
    return 0;
}

/* nf4 code indices of 16 values t: the number of midpoints below t. A cell
 * c = floor(clamp(t, -1, 1) * 15.9) in [-16, 15] (its low 5 bits index
 * 32-entry tables) gives base[c], the number of midpoints below the cell,
 * and thr[c], the one midpoint inside it (+inf if none); the index is
 * base[c] + (t > thr[c]), t itself (not the cell) deciding the comparison.
 * That is exact however the cell value rounds: cells are 1/15.9 = 0.063
 * wide, adjacent midpoints at least 0.085 apart, and each table entry is
 * built for its cell widened by 1e-4 on both sides, far more than the
 * rounding of clamp(t) * 15.9 can move a cell boundary. */
#define NF4_CELLS 15.9f

typedef struct nf4_cells512 {
    __m512 thr_lo, thr_hi; /* cells 0..15, -16..-1 */
    __m512i base_lo, base_hi;
} nf4_cells512;

AVX512 INLINE void nf4_cells512_init(nf4_cells512 *T, const float *m) {
    float thr[32];
    int32_t base[32];
    for (int e = 0; e < 32; e++) {
        int c = e < 16 ? e : e - 32;
        double lo = c == -16 ? -INFINITY : c / (double)NF4_CELLS - 1e-4;
        double hi = c == 15 ? INFINITY : (c + 1) / (double)NF4_CELLS + 1e-4;
        base[e] = 0;
        thr[e] = INFINITY;
        for (int i = 0; i < 15; i++) {
            if (m[i] < lo)
                base[e]++;
            else if (m[i] <= hi)
                thr[e] = m[i];
        }
    }
    T->thr_lo = _mm512_loadu_ps(thr);
    T->thr_hi = _mm512_loadu_ps(thr + 16);
    T->base_lo = _mm512_loadu_si512(base);
    T->base_hi = _mm512_loadu_si512(base + 16);
}

AVX512 INLINE __m512i nf4_index_512(__m512 t, const nf4_cells512 *T) {
    __m512 tc = _mm512_min_ps(_mm512_max_ps(t, _mm512_set1_ps(-1.0f)), _mm512_set1_ps(1.0f));
    __m512i c = _mm512_cvt_roundps_epi32(_mm512_mul_ps(tc, _mm512_set1_ps(NF4_CELLS)),
                                         _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 thr = _mm512_permutex2var_ps(T->thr_lo, c, T->thr_hi);
    __m512i base = _mm512_permutex2var_epi32(T->base_lo, c, T->base_hi);
    __mmask16 gt = _mm512_cmp_ps_mask(t, thr, _CMP_GT_OQ);
    return _mm512_mask_add_epi32(base, gt, base, _mm512_set1_epi32(1));
}

AVX512 INLINE void nf4_encode_512_t(gg_type st, const uint8_t *src, size_t nblk, const float *ap,
                                    const float *m, uint8_t *codes) {
    nf4_cells512 T;
    nf4_cells512_init(&T, m);
    const __m512i evens =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (size_t b = 0; b < nblk; b++) {
        uint8_t *out = codes + 32 * b;
        if (ap[b] == 0) { /* every element takes index 7 (code 0.0) */
            memset(out, 0x77, 32);
            continue;
        }
        const uint8_t *p = src + b * 64 * ESIZE(st);
        __m512 va = _mm512_set1_ps(ap[b]);
        __m512i pair[4];
        UNROLL
        for (int k = 0; k < 4; k++) {
            __m512i j = nf4_index_512(_mm512_div_ps(ld16(st, p + 16 * k * ESIZE(st)), va), &T);
            /* even 32-bit lanes: (index of element 2i) << 4 | index of element 2i+1 */
            pair[k] = _mm512_or_si512(_mm512_slli_epi32(j, 4), _mm512_srli_epi64(j, 32));
        }
        __m512i p01 = _mm512_permutex2var_epi32(pair[0], evens, pair[1]);
        __m512i p23 = _mm512_permutex2var_epi32(pair[2], evens, pair[3]);
        _mm_storeu_si128((__m128i *)out, _mm512_cvtepi32_epi8(p01));
        _mm_storeu_si128((__m128i *)(out + 16), _mm512_cvtepi32_epi8(p23));
    }
}

AVX512 static void q8_dequant_512(const int8_t *q, const uint8_t *d, size_t nblk, float *dst) {
    for (size_t b = 0; b < nblk; b++) {
        unsigned short dh;
        memcpy(&dh, d + 2 * b, 2);
        __m512 vd = _mm512_set1_ps(_cvtsh_ss(dh));
        UNROLL
        for (int k = 0; k < 4; k++) {
            __m512i i =
                _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + 64 * b + 16 * k)));
            _mm512_storeu_ps(dst + 64 * b + 16 * k, _mm512_mul_ps(_mm512_cvtepi32_ps(i), vd));
        }
    }
}

AVX512 static void nf4_decode_512(const uint8_t *codes, const float *ap, size_t nblk, float *dst) {
    const __m512 cv = _mm512_loadu_ps(gg_nf4_codes);
    const __m512i shift = _mm512_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    const __m512i low4 = _mm512_set1_epi32(15);
    for (size_t b = 0; b < nblk; b++) {
        __m512 va = _mm512_set1_ps(ap[b]);
        UNROLL
        for (int k = 0; k < 4; k++) {
            /* 8 bytes -> 16 lanes: lane 2i = byte i >> 4, lane 2i+1 = byte i & 15 */
            __m128i by = _mm_loadl_epi64((const __m128i *)(codes + 32 * b + 8 * k));
            __m512i idx = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(by, by));
            idx = _mm512_and_si512(_mm512_srlv_epi32(idx, shift), low4);
            _mm512_storeu_ps(dst + 64 * b + 16 * k,
                             _mm512_mul_ps(_mm512_permutexvar_ps(idx, cv), va));
        }
    }
}

/* 16 f32 values stored as dt; returns the lanes that overflow f16. */
AVX512 INLINE __mmask16 st16(gg_type dt, uint8_t *p, __m512 v) {
    if (dt == GG_TYPE_F32) {
        _mm512_storeu_ps(p, v);
        return 0;
    }
    if (dt == GG_TYPE_F16) {
        _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
        __m512 a = _mm512_abs_ps(v); /* finite and rounding to inf: [65520, inf) */
        return _mm512_cmp_ps_mask(a, _mm512_set1_ps(65520.0f), _CMP_GE_OQ) &
               _mm512_cmp_ps_mask(a, _mm512_set1_ps(INFINITY), _CMP_LT_OQ);
    }
    /* bf16: (u + 0x7fff + (u >> 16 & 1)) >> 16, a NaN as (u >> 16) | 0x40 */
    __m512i u = _mm512_castps_si512(v), hi = _mm512_srli_epi32(u, 16);
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)),
                                 _mm512_and_si512(hi, _mm512_set1_epi32(1)));
    r = _mm512_srli_epi32(r, 16);
    r = _mm512_mask_or_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), hi,
                             _mm512_set1_epi32(0x40));
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(r));
    return 0;
}

AVX512 INLINE int convert_512_t(gg_type dt, gg_type st, const uint8_t *src, size_t n,
                                uint8_t *dst) {
    __mmask16 over = 0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        over |= st16(dt, dst + i * ESIZE(dt), ld16(st, src + i * ESIZE(st)));
    return over ? -1 : convert_tail(dt, st, src, i, n, dst);
}

#define ABSMAX512(ST, s, n, a) absmax_512_t(ST, s, n, a)
#define CONV512_F32(ST, d, s, n, o) convert_512_t(GG_TYPE_F32, ST, s, n, o)
#define CONV512_F16(ST, d, s, n, o) convert_512_t(GG_TYPE_F16, ST, s, n, o)
#define CONV512_BF16(ST, d, s, n, o) convert_512_t(GG_TYPE_BF16, ST, s, n, o)
#define Q8Q512(ST, s, n, q, d) q8_quantize_512_t(ST, s, n, q, d)
#define NF4E512(ST, s, n, a, m, c) (nf4_encode_512_t(ST, s, n, a, m, c), 0)

AVX512 static int absmax_512(gg_type st, const void *src, size_t nblk, float *amax) {
    return BY_SOURCE(st, ABSMAX512, src, nblk, amax);
}
AVX512 static int q8_quantize_512(gg_type st, const void *src, size_t nblk, int8_t *q, uint8_t *d) {
    return BY_SOURCE(st, Q8Q512, src, nblk, q, d);
}
AVX512 static void nf4_encode_512(gg_type st, const void *src, size_t nblk, const float *ap,
                                  const float mids[15], uint8_t *codes) {
    (void)BY_SOURCE(st, NF4E512, src, nblk, ap, mids, codes);
}
AVX512 static int convert_512(gg_type dt, gg_type st, const void *src, size_t n, void *dst) {
    if (dt == GG_TYPE_F32) return BY_SOURCE(st, CONV512_F32, dt, src, n, dst);
    if (dt == GG_TYPE_F16) return BY_SOURCE(st, CONV512_F16, dt, src, n, dst);
    return BY_SOURCE(st, CONV512_BF16, dt, src, n, dst);
}

/* ======================================================================== */
/* AVX2: 8 elements per vector, 8 vectors per block                          */

/* 8 consecutive source elements as f32. */
AVX2 INLINE __m256 ld8(gg_type st, const uint8_t *p) {
    if (st == GG_TYPE_F32) return _mm256_loadu_ps((const float *)p);
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (st == GG_TYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AVX2 INLINE uint32_t hmax_epu32_256(__m256i m) {
    __m128i x = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    x = _mm_max_epu32(x, _mm_shuffle_epi32(x, 0x4e));
    x = _mm_max_epu32(x, _mm_shuffle_epi32(x, 0xb1));
    return (uint32_t)_mm_cvtsi128_si32(x);
}

AVX2 INLINE uint32_t hmax_epu16_256(__m256i m) {
    __m128i x = _mm_max_epu16(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    x = _mm_minpos_epu16(_mm_xor_si128(x, _mm_set1_epi16(-1)));
    return ~(uint32_t)_mm_cvtsi128_si32(x) & 0xffff;
}

/* As amax_bits_512: the exact max |x| of a block as float bits, 8 vectors. */
AVX2 INLINE uint32_t amax_bits_256(gg_type st, const uint8_t *p, __m256 x[8]) {
    const __m256i absm = _mm256_set1_epi32(0x7fffffff);
    __m256i m = _mm256_setzero_si256();
    UNROLL
    for (int k = 0; k < 8; k++) {
        x[k] = ld8(st, p + 8 * k * ESIZE(st));
        m = _mm256_max_epu32(m, _mm256_and_si256(_mm256_castps_si256(x[k]), absm));
    }
    return hmax_epu32_256(m);
}

AVX2 INLINE int absmax_256_t(gg_type st, const uint8_t *src, size_t nblk, float *amax) {
    for (size_t b = 0; b < nblk; b++) {
        const uint8_t *p = src + b * 64 * ESIZE(st);
        if (st == GG_TYPE_F32) {
            __m256 x[8];
            uint32_t m = amax_bits_256(st, p, x);
            if (m > 0x7f7fffffu) return -1;
            amax[b] = f32_of_bits(m);
        } else {
            const __m256i absm = _mm256_set1_epi16(0x7fff);
            __m256i m = _mm256_setzero_si256();
            UNROLL
            for (int k = 0; k < 4; k++)
                m = _mm256_max_epu16(
                    m, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + 32 * k)), absm));
            uint32_t h = hmax_epu16_256(m);
            if (h >= (st == GG_TYPE_F16 ? 0x7c00u : 0x7f80u)) return -1;
            amax[b] = st == GG_TYPE_F16 ? _cvtsh_ss((unsigned short)h) : f32_of_bits(h << 16);
        }
    }
    return 0;
}

/* As round_away_127_512. */
AVX2 INLINE __m256i round_away_127_256(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_min_ps(_mm256_andnot_ps(sign, v), _mm256_set1_ps(127.0f));
    a = _mm256_add_ps(a, _mm256_set1_ps(JUST_BELOW_HALF));
    return _mm256_cvttps_epi32(_mm256_or_ps(a, _mm256_and_ps(v, sign)));
}

/* 32 int32 lanes (values within int8) of a[0..3] -> 32 int8 in order. */
AVX2 INLINE __m256i pack_i32x32_to_i8(__m256i a0, __m256i a1, __m256i a2, __m256i a3) {
    __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(a0, a1), _mm256_packs_epi32(a2, a3));
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

AVX2 INLINE int q8_quantize_256_t(gg_type st, const uint8_t *src, size_t nblk, int8_t *q,
                                  uint8_t *d) {
    for (size_t b = 0; b < nblk; b++) {
        __m256 x[8];
        uint32_t m = amax_bits_256(st, src + b * 64 * ESIZE(st), x);
        if (m > 0x7f7fffffu) return -1;
        unsigned short dh = _cvtss_sh(f32_of_bits(m) / 127.0f, _MM_FROUND_TO_NEAREST_INT);
        if ((dh & 0x7fff) == 0x7c00) return -1;
        memcpy(d + 2 * b, &dh, 2);
        float df = _cvtsh_ss(dh);
        int8_t *out = q + 64 * b;
        if (df == 0) {
            memset(out, 0, 64);
            continue;
        }
        __m256 vd = _mm256_set1_ps(df);
        __m256i i[8];
        UNROLL
        for (int k = 0; k < 8; k++) {
            i[k] = round_away_127_256(_mm256_div_ps(x[k], vd));
        }
        _mm256_storeu_si256((__m256i *)out, pack_i32x32_to_i8(i[0], i[1], i[2], i[3]));
        _mm256_storeu_si256((__m256i *)(out + 32), pack_i32x32_to_i8(i[4], i[5], i[6], i[7]));
    }
    return 0;
}

/* As nf4_index_512, 8 lanes; the tables have 8 entries. */
typedef struct nf4_tabs256 {
    __m256 m7, t2, t1, t0;
} nf4_tabs256;

AVX2 INLINE __m256i nf4_step_256(__m256i j, __m256 t, __m256 table) {
    /* a true comparison is -1 as an integer: j = 2j - mask = 2j + (t > thr) */
    __m256 gt = _mm256_cmp_ps(t, _mm256_permutevar8x32_ps(table, j), _CMP_GT_OQ);
    return _mm256_sub_epi32(_mm256_add_epi32(j, j), _mm256_castps_si256(gt));
}

AVX2 INLINE __m256i nf4_index_256(__m256 t, const nf4_tabs256 *T) {
    __m256i j = _mm256_srli_epi32(_mm256_castps_si256(_mm256_cmp_ps(t, T->m7, _CMP_GT_OQ)), 31);
    j = nf4_step_256(j, t, T->t2);
    j = nf4_step_256(j, t, T->t1);
    return nf4_step_256(j, t, T->t0);
}

/* 32 code indices (bytes, in element order) -> 16 words, word i =
 * idx[2i] << 4 | idx[2i+1] (the even element in the high nibble). */
AVX2 INLINE __m256i nf4_pairs_256(__m256i idx8) {
    __m256i hi = _mm256_and_si256(_mm256_slli_epi16(idx8, 4), _mm256_set1_epi16(0xf0));
    return _mm256_or_si256(hi, _mm256_srli_epi16(idx8, 8));
}

AVX2 INLINE void nf4_encode_256_t(gg_type st, const uint8_t *src, size_t nblk, const float *ap,
                                  const float *m, uint8_t *codes) {
    nf4_tabs256 T;
    T.m7 = _mm256_set1_ps(m[7]);
    T.t2 = _mm256_setr_ps(m[3], m[11], 0, 0, 0, 0, 0, 0);
    T.t1 = _mm256_setr_ps(m[1], m[5], m[9], m[13], 0, 0, 0, 0);
    T.t0 = _mm256_setr_ps(m[0], m[2], m[4], m[6], m[8], m[10], m[12], m[14]);
    for (size_t b = 0; b < nblk; b++) {
        uint8_t *out = codes + 32 * b;
        if (ap[b] == 0) {
            memset(out, 0x77, 32);
            continue;
        }
        const uint8_t *p = src + b * 64 * ESIZE(st);
        __m256 va = _mm256_set1_ps(ap[b]);
        __m256i j[8];
        UNROLL
        for (int k = 0; k < 8; k++)
            j[k] = nf4_index_256(_mm256_div_ps(ld8(st, p + 8 * k * ESIZE(st)), va), &T);
        __m256i w0 = nf4_pairs_256(pack_i32x32_to_i8(j[0], j[1], j[2], j[3])); /* elems 0..31 */
        __m256i w1 = nf4_pairs_256(pack_i32x32_to_i8(j[4], j[5], j[6], j[7])); /* 32..63 */
        __m256i bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(w0, w1), 0xd8);
        _mm256_storeu_si256((__m256i *)out, bytes);
    }
}

AVX2 static void q8_dequant_256(const int8_t *q, const uint8_t *d, size_t nblk, float *dst) {
    for (size_t b = 0; b < nblk; b++) {
        unsigned short dh;
        memcpy(&dh, d + 2 * b, 2);
        __m256 vd = _mm256_set1_ps(_cvtsh_ss(dh));
        UNROLL
        for (int k = 0; k < 8; k++) {
            __m256i i =
                _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + 64 * b + 8 * k)));
            _mm256_storeu_ps(dst + 64 * b + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(i), vd));
        }
    }
}

AVX2 static void nf4_decode_256(const uint8_t *codes, const float *ap, size_t nblk, float *dst) {
    const __m256 clo = _mm256_loadu_ps(gg_nf4_codes), chi = _mm256_loadu_ps(gg_nf4_codes + 8);
    const __m256i shift = _mm256_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0);
    const __m256i low4 = _mm256_set1_epi32(15);
    for (size_t b = 0; b < nblk; b++) {
        __m256 va = _mm256_set1_ps(ap[b]);
        UNROLL
        for (int k = 0; k < 2; k++) {
            __m128i by = _mm_loadu_si128((const __m128i *)(codes + 32 * b + 16 * k));
            __m128i dup[2] = {_mm_unpacklo_epi8(by, by), _mm_unpackhi_epi8(by, by)};
            UNROLL
            for (int h = 0; h < 4; h++) { /* 8 elements from 4 bytes */
                __m128i src8 = h & 1 ? _mm_srli_si128(dup[h >> 1], 8) : dup[h >> 1];
                __m256i idx = _mm256_cvtepu8_epi32(src8);
                idx = _mm256_and_si256(_mm256_srlv_epi32(idx, shift), low4);
                /* 16-entry lookup: two 8-entry permutes, chosen by bit 3 */
                __m256 c = _mm256_blendv_ps(_mm256_permutevar8x32_ps(clo, idx),
                                            _mm256_permutevar8x32_ps(chi, idx),
                                            _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
                _mm256_storeu_ps(dst + 64 * b + 32 * k + 8 * h, _mm256_mul_ps(c, va));
            }
        }
    }
}

/* As st16: 8 values. */
AVX2 INLINE int st8(gg_type dt, uint8_t *p, __m256 v) {
    if (dt == GG_TYPE_F32) {
        _mm256_storeu_ps((float *)p, v);
        return 0;
    }
    if (dt == GG_TYPE_F16) {
        _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
        __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
        __m256 over = _mm256_and_ps(_mm256_cmp_ps(a, _mm256_set1_ps(65520.0f), _CMP_GE_OQ),
                                    _mm256_cmp_ps(a, _mm256_set1_ps(INFINITY), _CMP_LT_OQ));
        return _mm256_movemask_ps(over);
    }
    __m256i u = _mm256_castps_si256(v), hi = _mm256_srli_epi32(u, 16);
    __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)),
                                 _mm256_and_si256(hi, _mm256_set1_epi32(1)));
    r = _mm256_srli_epi32(r, 16);
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
    /* 8 x u32 (each <= 0xffff) -> 8 x u16 */
    __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storeu_si128((__m128i *)p, w);
    return 0;
}

AVX2 INLINE int convert_256_t(gg_type dt, gg_type st, const uint8_t *src, size_t n, uint8_t *dst) {
    int over = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        over |= st8(dt, dst + i * ESIZE(dt), ld8(st, src + i * ESIZE(st)));
    return over ? -1 : convert_tail(dt, st, src, i, n, dst);
}

#define ABSMAX256(ST, s, n, a) absmax_256_t(ST, s, n, a)
#define CONV256_F32(ST, d, s, n, o) convert_256_t(GG_TYPE_F32, ST, s, n, o)
#define CONV256_F16(ST, d, s, n, o) convert_256_t(GG_TYPE_F16, ST, s, n, o)
#define CONV256_BF16(ST, d, s, n, o) convert_256_t(GG_TYPE_BF16, ST, s, n, o)
#define Q8Q256(ST, s, n, q, d) q8_quantize_256_t(ST, s, n, q, d)
#define NF4E256(ST, s, n, a, m, c) (nf4_encode_256_t(ST, s, n, a, m, c), 0)

AVX2 static int absmax_256(gg_type st, const void *src, size_t nblk, float *amax) {
    return BY_SOURCE(st, ABSMAX256, src, nblk, amax);
}
AVX2 static int q8_quantize_256(gg_type st, const void *src, size_t nblk, int8_t *q, uint8_t *d) {
    return BY_SOURCE(st, Q8Q256, src, nblk, q, d);
}
AVX2 static void nf4_encode_256(gg_type st, const void *src, size_t nblk, const float *ap,
                                const float mids[15], uint8_t *codes) {
    (void)BY_SOURCE(st, NF4E256, src, nblk, ap, mids, codes);
}
AVX2 static int convert_256(gg_type dt, gg_type st, const void *src, size_t n, void *dst) {
    if (dt == GG_TYPE_F32) return BY_SOURCE(st, CONV256_F32, dt, src, n, dst);
    if (dt == GG_TYPE_F16) return BY_SOURCE(st, CONV256_F16, dt, src, n, dst);
    return BY_SOURCE(st, CONV256_BF16, dt, src, n, dst);
}

/* ======================================================================== */
/* Run-time selection                                                        */

static const gg_quant_kernels kernels_avx512 = {
    .name = "avx512",
    .absmax = absmax_512,
    .q8_quantize = q8_quantize_512,
    .nf4_encode = nf4_encode_512,
    .q8_dequant = q8_dequant_512,
    .nf4_decode = nf4_decode_512,
    .convert = convert_512,
};
static const gg_quant_kernels kernels_avx2 = {
    .name = "avx2",
    .absmax = absmax_256,
    .q8_quantize = q8_quantize_256,
    .nf4_encode = nf4_encode_256,
    .q8_dequant = q8_dequant_256,
    .nf4_decode = nf4_decode_256,
    .convert = convert_256,
};

/* F16C, from CPUID leaf 1 (not every compiler's __builtin_cpu_supports
 * knows the name). */
static int have_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

/* The levels this CPU supports, as bits (1 << level), found once: CPUID is
 * slow (it traps to the hypervisor in a VM) and gg_dequantize_rows may be
 * called per row. Threads racing on the first call store the same value. */
static int cpu_levels(void) {
    static atomic_int cached = -1;
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        /* libgcc / compiler-rt initialize the feature data in a constructor */
        int avx2 = __builtin_cpu_supports("avx2") && have_f16c();
        int avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                     __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
        v = avx2 << GG_SIMD_AVX2 | avx512 << GG_SIMD_AVX512;
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}

const gg_quant_kernels *gg_quant_kernels_at(int level) {
    if (level != GG_SIMD_AVX2 && level != GG_SIMD_AVX512) return NULL;
    if (!(cpu_levels() >> level & 1)) return NULL;
    return level == GG_SIMD_AVX512 ? &kernels_avx512 : &kernels_avx2;
}

#else /* not x86-64: no kernels, the fast paths are the scalar references */

const gg_quant_kernels *gg_quant_kernels_at(int level) {
    (void)level;
    return NULL;
}

#endif

/* nf4_simd.h — the nf4 pieces the AVX-512 kernels share (matmul.c's GEMV,
 * matmul_int8.c, gemv_int8.c): a'_b of up to 16 blocks at a time, exactly
 * as quant.c computes it, and the int8 code table of the int8 matmul.
 * x86-64 with GCC or Clang only; include after <immintrin.h>. */
#ifndef GG_CPU_NF4_SIMD_H
#define GG_CPU_NF4_SIMD_H

#include "backend-cpu/wview.h"

#define NF4_SIMD_FN static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl")))

/* a'_b of the m blocks from gb into ap[0..m), 16 at a time (as nf4_ap: the
 * product is rounded on its own). 16 consecutive blocks span at most two
 * groups. */
NF4_SIMD_FN void nf4_aps512(const wview *v, int64_t gb, int64_t m, float *ap) {
    for (int64_t i = 0; i < m; i += 16) {
        int64_t g = gb + i, cnt = m - i < 16 ? m - i : 16;
        __m128i q8 = _mm_maskz_loadu_epi8((__mmask16)((1u << cnt) - 1), v->qabs + g);
        __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q8));
        int64_t grp = g / GG_NF4_GROUP, next = (grp + 1) * GG_NF4_GROUP;
        __m512 s = _mm512_set1_ps(rdf32(v->gscale + 4 * grp));
        if (g + cnt > next) /* lanes from next on are in the next group */
            s = _mm512_mask_mov_ps(s, (__mmask16)(0xffffu << (next - g)),
                                   _mm512_set1_ps(rdf32(v->gscale + 4 * (grp + 1))));
        __m512 prod = _mm512_mul_ps(q, s);
        __asm__("" : "+v"(prod)); /* no FMA contraction */
        _mm512_storeu_ps(ap + i, _mm512_add_ps(prod, _mm512_set1_ps(v->mean)));
    }
}


/* rne(127·code) of the 16 nf4 codes: the int8 matmul's weights
 * (gg_ref_matmul_int8 computes the same from gg_nf4_codes; the tests check
 * they agree through it). */
NF4_SIMD_FN __m128i nf4_i8_table(void) {
    return _mm_setr_epi8(-127, -88, -67, -50, -36, -23, -12, 0, 10, 20, 31, 43, 56, 71, 92, 127);
}

#endif

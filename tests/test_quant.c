/* test_quant.c — unit tests of ggfmt/quant.c and ggfmt/quant_simd.c: the
 * f16 / bf16 conversions, the q8 and nf4 layouts (sizes, shape rules, hand
 * cases, edge cases, errors), the fast paths against the scalar references
 * (bit-identical, at every SIMD level this CPU has), and the quantization
 * error on N(0, 1) weights (printed as "# " lines). */
#include "ggfmt/quant.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check.h"
#include "tests/rng.h"

/* A failed CHECK that also counts into a local limit. */
#define FAIL_COUNT(n, ...)                                                                         \
    do {                                                                                           \
        (n)++;                                                                                     \
        CHECK(0, __VA_ARGS__);                                                                     \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Deterministic random numbers                                              */

static float f32_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ------------------------------------------------------------------------ */
/* Source tensors                                                            */

static size_t esize(gg_type st) { return st == GG_TYPE_F32 ? 4 : 2; }

/* x[] stored as st at an odd address (so every load is unaligned); the
 * values actually stored, as f32, go back into x[]. Free with free(*base). */
static const uint8_t *make_src(gg_type st, float *x, size_t n, void **base) {
    uint8_t *b = malloc(n * esize(st) + 1), *p = b + 1;
    for (size_t i = 0; i < n; i++) {
        if (st == GG_TYPE_F32) {
            memcpy(p + 4 * i, &x[i], 4);
        } else {
            uint16_t h = st == GG_TYPE_F16 ? gg_f32_to_f16(x[i]) : gg_f32_to_bf16(x[i]);
            memcpy(p + 2 * i, &h, 2);
            x[i] = st == GG_TYPE_F16 ? gg_f16_to_f32(h) : gg_bf16_to_f32(h);
        }
    }
    *base = b;
    return p;
}

/* rows x cols Gaussian weights, each row with its own scale, with special
 * blocks mixed in: all zeros, one huge value, negative only, (sub)denormal
 * values of the source type. */
static float *make_weights(gg_type st, uint64_t rows, uint64_t cols) {
    size_t n = rows * cols;
    float *x = malloc(n * sizeof *x);
    for (uint64_t r = 0; r < rows; r++) {
        double scale = exp(6.0 * rng_unit() - 3.0);
        for (uint64_t c = 0; c < cols; c++)
            x[r * cols + c] = (float)(rng_gauss() * scale);
    }
    size_t nb = n / 64;
    for (size_t b = 1; b < nb; b += 7) {
        float *blk = x + 64 * b;
        switch ((b / 7) % 4) {
        case 0: memset(blk, 0, 64 * sizeof *blk); break;
        case 1: blk[rng_u64() % 64] = 3000.0f; break;
        case 2:
            for (int j = 0; j < 64; j++)
                blk[j] = -fabsf(blk[j]);
            break;
        default:
            for (int j = 0; j < 64; j++)
                blk[j] = (float)(rng_gauss() * (st == GG_TYPE_F16 ? 1e-6 : 1e-40));
        }
    }
    return x;
}

/* The SIMD levels this CPU has (always the scalar one). */
static int levels[3], nlevels;

static void find_levels(void) {
    nlevels = 0;
    for (int l = GG_SIMD_SCALAR; l <= GG_SIMD_AVX512; l++)
        if (gg_quant_simd_cap(l) == l) levels[nlevels++] = l;
    gg_quant_simd_cap(GG_SIMD_AVX512);
    printf("# SIMD levels tested:");
    for (int i = 0; i < nlevels; i++)
        printf(" %s", levels[i] == 0 ? "scalar" : levels[i] == 1 ? "avx2" : "avx512");
    printf("\n");
}

/* ------------------------------------------------------------------------ */
/* Type table, sizes, shapes                                                 */

static void test_type_names(void) {
    static const char *names[] = {"f32", "f16", "bf16", "q8", "nf4"};
    for (int t = 0; t < GG_TYPE_COUNT; t++) {
        gg_type back = GG_TYPE_COUNT;
        CHECK(strcmp(gg_type_name((gg_type)t), names[t]) == 0, "type %d: %s", t,
              gg_type_name((gg_type)t));
        CHECK(gg_type_from_name(names[t], &back) == 0 && back == (gg_type)t, "%s", names[t]);
        CHECK(gg_type_is_quantized((gg_type)t) == (t >= GG_TYPE_Q8), "%s", names[t]);
    }
    gg_type t;
    CHECK(gg_type_from_name("q4", &t) == -1, "q4");
    CHECK(gg_type_from_name("F32", &t) == -1, "F32");
    CHECK(gg_type_from_name(NULL, &t) == -1, "NULL");
    CHECK(strcmp(gg_type_name((gg_type)99), "?") == 0, "99");
}

static void test_nbytes(void) {
    CHECK(gg_type_nbytes(GG_TYPE_Q8, 64, 64) == 4096 + 128, "%llu",
          (unsigned long long)gg_type_nbytes(GG_TYPE_Q8, 64, 64));
    CHECK(gg_type_nbytes(GG_TYPE_NF4, 1, 64) == 44, "%llu",
          (unsigned long long)gg_type_nbytes(GG_TYPE_NF4, 1, 64));
    /* 3x128: 192 code bytes + 6 qabsmax = 198 -> 200, + 1 scale + mean */
    CHECK(gg_type_nbytes(GG_TYPE_NF4, 3, 128) == 208, "%llu",
          (unsigned long long)gg_type_nbytes(GG_TYPE_NF4, 3, 128));
    /* 301x4096: 19264 blocks, 76 groups */
    CHECK(gg_type_nbytes(GG_TYPE_NF4, 301, 4096) == 616448 + 19264 + 4 * 76 + 4, "%llu",
          (unsigned long long)gg_type_nbytes(GG_TYPE_NF4, 301, 4096));
    CHECK(gg_type_nbytes(GG_TYPE_F32, 3, 5) == 60, "f32");
    CHECK(gg_type_nbytes(GG_TYPE_F16, 3, 5) == 30, "f16");
    CHECK(gg_type_nbytes(GG_TYPE_BF16, 1, 7) == 14, "bf16");
    CHECK(gg_type_nbytes(GG_TYPE_F32, 1ull << 62, 4) == 0, "overflow");
    CHECK(gg_type_nbytes(GG_TYPE_Q8, 1ull << 40, 1ull << 40) == 0, "overflow");
    CHECK(gg_type_nbytes(GG_TYPE_NF4, 10, 100) == 0, "cols 100");
    CHECK(gg_type_nbytes(GG_TYPE_NF4, 0, 64) == 0 && gg_type_nbytes(GG_TYPE_Q8, 5, 0) == 0,
          "empty");
    CHECK(gg_type_nbytes((gg_type)9, 10, 64) == 0, "bad type");

    double n = 4096.0 * 4096.0;
    double nf4_bpw = (double)gg_type_nbytes(GG_TYPE_NF4, 4096, 4096) * 8 / n;
    double q8_bpw = (double)gg_type_nbytes(GG_TYPE_Q8, 4096, 4096) * 8 / n;
    printf("# bits/weight 4096x4096: nf4 %.5f, q8 %.5f\n", nf4_bpw, q8_bpw);
    CHECK(nf4_bpw > 4.12 && nf4_bpw < 4.13, "nf4 %.5f", nf4_bpw);
    CHECK(q8_bpw == 8.25, "q8 %.5f", q8_bpw);
}

static void test_shapes(void) {
    gg_err e;
    uint64_t s172[2] = {10, 172}, s3[3] = {2, 4, 64}, ok[2] = {4, 128}, zero[2] = {0, 64};
    uint64_t huge[2] = {1ull << 40, 1ull << 40}, f4[4] = {2, 3, 4, 5}, f5[5] = {1, 1, 1, 1, 1};
    uint64_t c32[2] = {4, 32};
    CHECK(gg_type_check_shape(GG_TYPE_NF4, 2, s172, &e) == -1 && strstr(e.msg, "multiple of 64") &&
              strstr(e.msg, "172") && strstr(e.msg, "nf4"),
          "%s", e.msg);
    CHECK(gg_type_check_shape(GG_TYPE_Q8, 2, s172, &e) == -1 && strstr(e.msg, "multiple of 64"),
          "%s", e.msg);
    CHECK(gg_type_check_shape(GG_TYPE_Q8, 2, c32, &e) == -1 && strstr(e.msg, "(32)"), "%s", e.msg);
    CHECK(gg_type_check_shape(GG_TYPE_Q8, 3, s3, &e) == -1 && strstr(e.msg, "2-D") &&
              strstr(e.msg, "3-D"),
          "%s", e.msg);
    CHECK(gg_type_check_shape(GG_TYPE_NF4, 1, ok, &e) == -1 && strstr(e.msg, "1-D"), "%s", e.msg);
    CHECK(gg_type_check_shape(GG_TYPE_Q8, 2, zero, &e) == -1 && strstr(e.msg, "is 0"), "%s", e.msg);
    CHECK(gg_type_check_shape(GG_TYPE_Q8, 2, huge, &e) == -1 && strstr(e.msg, "overflow"), "%s",
          e.msg);
    CHECK(gg_type_check_shape(GG_TYPE_F32, 2, huge, &e) == -1 && strstr(e.msg, "overflow"), "%s",
          e.msg);
    CHECK(gg_type_check_shape((gg_type)7, 2, ok, &e) == -1 && strstr(e.msg, "type"), "%s", e.msg);
    CHECK(gg_type_check_shape(GG_TYPE_F16, 5, f5, &e) == -1 && strstr(e.msg, "1 to 4"), "%s",
          e.msg);
    CHECK(gg_type_check_shape(GG_TYPE_F16, 0, f5, &e) == -1, "ndim 0");
    CHECK(gg_type_check_shape(GG_TYPE_Q8, 2, ok, &e) == 0, "%s", e.msg);
    CHECK(gg_type_check_shape(GG_TYPE_NF4, 2, ok, &e) == 0, "%s", e.msg);
    CHECK(gg_type_check_shape(GG_TYPE_BF16, 4, f4, &e) == 0, "%s", e.msg);
    CHECK(gg_type_check_shape(GG_TYPE_F32, 2, s172, &e) == 0, "%s", e.msg);
    CHECK(gg_type_check_shape(GG_TYPE_F32, 2, zero, &e) == -1 && strstr(e.msg, "dimension 0"), "%s",
          e.msg);

    /* The quantizers and dequantizers check the same. */
    float x[172 * 2] = {1};
    uint8_t out[1024];
    float deq[64];
    CHECK(gg_quantize(GG_TYPE_NF4, out, GG_TYPE_F32, x, 2, 172, &e) == -1 &&
              strstr(e.msg, "multiple of 64"),
          "%s", e.msg);
    CHECK(gg_quantize_ref(GG_TYPE_Q8, out, GG_TYPE_F32, x, 2, 172, &e) == -1 &&
              strstr(e.msg, "multiple of 64"),
          "%s", e.msg);
    CHECK(gg_quantize(GG_TYPE_Q8, out, GG_TYPE_Q8, x, 1, 64, &e) == -1 && strstr(e.msg, "source"),
          "%s", e.msg);
    CHECK(gg_quantize((gg_type)5, out, GG_TYPE_F32, x, 1, 64, &e) == -1, "bad type");
    CHECK(gg_dequantize_rows(GG_TYPE_Q8, out, 2, 172, 0, 1, deq, &e) == -1 &&
              strstr(e.msg, "multiple of 64"),
          "%s", e.msg);
    CHECK(gg_quantize(GG_TYPE_Q8, out, GG_TYPE_F32, x, 2, 64, &e) == 0, "%s", e.msg);
    CHECK(gg_dequantize_rows(GG_TYPE_Q8, out, 2, 64, 2, 1, deq, &e) == -1 &&
              strstr(e.msg, "outside"),
          "%s", e.msg);
    CHECK(gg_dequantize_rows_ref(GG_TYPE_Q8, out, 2, 64, 1, 2, deq, &e) == -1, "rows 1..3 of 2");
    CHECK(gg_dequantize_rows(GG_TYPE_Q8, out, 2, 64, 1, 1, deq, &e) == 0, "%s", e.msg);
    CHECK(gg_dequantize_rows(GG_TYPE_Q8, out, 2, 64, 2, 0, deq, &e) == 0, "empty range: %s", e.msg);
}

/* ------------------------------------------------------------------------ */
/* f16 / bf16                                                                */

/* The value of an f16 pattern computed independently, in double. */
static double f16_value(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return h & 0x8000 ? -v : v;
}

static void test_f16_exhaustive(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = gg_f16_to_f32((uint16_t)h);
        uint16_t back = gg_f32_to_f16(f);
        int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan) {
            if (!isnan(f) || !((back & 0x7c00) == 0x7c00 && (back & 0x3ff)) ||
                (back & 0x8000) != (h & 0x8000) || !(bits_of(f) & 0x400000))
                FAIL_COUNT(bad, "NaN %04x -> %08x -> %04x", h, bits_of(f), back);
        } else if ((h & 0x7c00) == 0x7c00) {
            if (!isinf(f) || back != h) FAIL_COUNT(bad, "inf %04x -> %g -> %04x", h, f, back);
        } else if ((double)f != f16_value((uint16_t)h) || back != h ||
                   !!signbit(f) != !!(h & 0x8000)) {
            FAIL_COUNT(bad, "%04x -> %.9g (want %.9g) -> %04x", h, f, f16_value((uint16_t)h), back);
        }
        if (bad > 10) return;
    }
}

static void test_bf16_exhaustive(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536 && bad < 10; h++) {
        float f = gg_bf16_to_f32((uint16_t)h);
        uint16_t back = gg_f32_to_bf16(f);
        int is_nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (bits_of(f) != h << 16) FAIL_COUNT(bad, "%04x -> %08x", h, bits_of(f));
        if (is_nan ? !(isnan(f) && (back & 0x7f80) == 0x7f80 && (back & 0x7f)) : back != h)
            FAIL_COUNT(bad, "%04x -> %08x -> %04x", h, bits_of(f), back);
    }
}

static void test_f16_rounding(void) {
    struct {
        float f;
        uint16_t h;
    } c[] = {
        {1.0f, 0x3c00},
        {1.0f + 0x1p-11f, 0x3c00},            /* tie -> even (down) */
        {1.0f + 3 * 0x1p-11f, 0x3c02},        /* tie -> even (up) */
        {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01}, /* just above the tie */
        {-1.0f - 0x1p-11f, 0xbc00},
        {65504.0f, 0x7bff},
        {65519.99f, 0x7bff},
        {65520.0f, 0x7c00}, /* the tie between 65504 and 2^16 rounds up: overflow */
        {0x1p-24f, 0x0001}, /* smallest subnormal */
        {0x1p-25f, 0x0000}, /* tie -> even: zero */
        {0x1.000002p-25f, 0x0001},
        {3 * 0x1p-25f, 0x0002},        /* tie between 1 and 2 ulp -> 2 */
        {5 * 0x1p-25f, 0x0002},        /* tie between 2 and 3 ulp -> 2 */
        {0x1p-14f - 0x1p-25f, 0x0400}, /* tie between 0x3ff and 0x400 -> 0x400 */
        {0x1p-14f - 0x1p-24f, 0x03ff}, /* largest subnormal */
        {0x1p-14f, 0x0400},            /* smallest normal */
        {1e-30f, 0x0000},
        {-1e-30f, 0x8000},
        {-0.0f, 0x8000},
        {INFINITY, 0x7c00},
        {-INFINITY, 0xfc00},
        {1e10f, 0x7c00},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        CHECK(gg_f32_to_f16(c[i].f) == c[i].h, "%a -> %04x, want %04x", c[i].f,
              gg_f32_to_f16(c[i].f), c[i].h);
    uint16_t n = gg_f32_to_f16(NAN);
    CHECK((n & 0x7c00) == 0x7c00 && (n & 0x200), "NaN -> %04x", n);
    n = gg_f32_to_f16(f32_of(0xff800001u)); /* signalling NaN, payload in the low bits only */
    CHECK((n & 0x7c00) == 0x7c00 && (n & 0x3ff) && (n & 0x8000), "sNaN -> %04x", n);

    struct {
        float f;
        uint16_t h;
    } b[] = {
        {1.0f, 0x3f80},
        {1.0f + 0x1p-8f, 0x3f80},     /* tie -> even */
        {1.0f + 3 * 0x1p-8f, 0x3f82}, /* tie -> even (up) */
        {1.0f + 0x1p-8f + 0x1p-20f, 0x3f81},
        {-2.0f, 0xc000},
        {f32_of(0x7f7fffffu), 0x7f80}, /* FLT_MAX rounds to inf */
        {f32_of(0x00000001u), 0x0000}, /* smallest f32 denormal */
        {f32_of(0x00018000u), 0x0002}, /* denormal tie -> even */
    };
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        CHECK(gg_f32_to_bf16(b[i].f) == b[i].h, "%a -> %04x, want %04x", b[i].f,
              gg_f32_to_bf16(b[i].f), b[i].h);
    n = gg_f32_to_bf16(f32_of(0x7f800001u)); /* sNaN whose payload would truncate to inf */
    CHECK((n & 0x7f80) == 0x7f80 && (n & 0x7f), "sNaN -> %04x", n);
}

/* f32 -> f16 against an independent exact rounding in double, over a
 * sweep of 2^32 / 509 bit patterns. */
static uint16_t f16_by_double(float f) {
    if (isnan(f)) return 0x7e00;
    double a = fabs((double)f);
    uint16_t s = signbit(f) ? 0x8000 : 0;
    if (a >= 65520.0) return s | 0x7c00;
    int e;
    frexp(a, &e);                                   /* a = m * 2^e, m in [0.5, 1) */
    int ulp_exp = (e - 1 < -14 ? -14 : e - 1) - 10; /* ulp of the f16 binade */
    double k = a / ldexp(1, ulp_exp);               /* exact: a power-of-2 scale */
    double r = nearbyint(k);                        /* round to nearest even */
    double v = r * ldexp(1, ulp_exp);
    if (v == 0) return s;
    int e2;
    frexp(v, &e2);
    if (e2 - 1 < -14) return s | (uint16_t)r; /* subnormal */
    return s | (uint16_t)((e2 - 1 + 15) << 10 | ((uint32_t)ldexp(v, 10 - (e2 - 1)) & 0x3ff));
}

static void test_f16_sweep(void) {
    int bad = 0;
    for (uint64_t u = 0; u < (1ull << 32) && bad < 10; u += 509) {
        float f = f32_of((uint32_t)u);
        uint16_t got = gg_f32_to_f16(f), want = f16_by_double(f);
        if (isnan(f) ? !((got & 0x7c00) == 0x7c00 && (got & 0x3ff)) : got != want)
            FAIL_COUNT(bad, "%08x (%a) -> %04x, want %04x", (uint32_t)u, f, got, want);
    }
}

static void test_float_conversions(void) {
    gg_err e;
    /* f16 overflow is an error naming the element. */
    float x[6] = {1, 2, 3, 4, 5, 70000.0f};
    uint16_t h[6];
    CHECK(gg_quantize(GG_TYPE_F16, h, GG_TYPE_F32, x, 2, 3, &e) == -1 &&
              strstr(e.msg, "element 5 (row 1, col 2)") && strstr(e.msg, "overflows f16") &&
              strstr(e.msg, "70000"),
          "%s", e.msg);
    x[5] = 65519.0f; /* rounds to 65504: fine */
    CHECK(gg_quantize(GG_TYPE_F16, h, GG_TYPE_F32, x, 2, 3, &e) == 0 && h[5] == 0x7bff, "%s",
          e.msg);
    x[5] = INFINITY; /* not an overflow: infinities and NaN carry over */
    x[4] = NAN;
    CHECK(gg_quantize(GG_TYPE_F16, h, GG_TYPE_F32, x, 2, 3, &e) == 0 && h[5] == 0x7c00 &&
              (h[4] & 0x7c00) == 0x7c00 && (h[4] & 0x3ff),
          "%s", e.msg);
    uint16_t bf[2] = {gg_f32_to_bf16(1e6f), gg_f32_to_bf16(-1.5f)};
    CHECK(gg_quantize(GG_TYPE_F16, h, GG_TYPE_BF16, bf, 1, 2, &e) == -1 &&
              strstr(e.msg, "element 0 (row 0, col 0)") && strstr(e.msg, "overflows f16"),
          "%s", e.msg);

    /* Conversions between the float types of random values (Gaussian, any
     * bit pattern, f16 and bf16 rounding ties), at every SIMD level: fast ==
     * ref, values as specified, the same type copied bit for bit. Finite
     * values that would overflow f16 are scaled down for an f16 target. */
    enum { N = 4099 }; /* not a multiple of the vector width: tails too */
    for (int st = 0; st < 3; st++) {
        for (int dt = 0; dt < 3; dt++) {
            float *xs = malloc(N * sizeof *xs);
            for (int i = 0; i < N; i++) {
                uint32_t r = (uint32_t)rng_u64();
                switch (i % 4) {
                case 0: xs[i] = (float)(rng_gauss() * 100); break;
                case 1: xs[i] = f32_of(r); break;
                case 2:
                    xs[i] = f32_of(bits_of(gg_f16_to_f32((uint16_t)r)) | (r >> 16 & 0x1fff));
                    break;
                default: xs[i] = f32_of((r & 0xffff0000u) | 0x8000); /* bf16 tie */
                }
                if (dt == GG_TYPE_F16 && isfinite(xs[i]) && fabsf(xs[i]) >= 65520.0f)
                    xs[i] *= 0x1p-120f;
            }
            void *base;
            const uint8_t *src = make_src((gg_type)st, xs, N, &base);
            size_t nbytes = N * esize((gg_type)dt);
            uint8_t *a = malloc(nbytes), *b = malloc(nbytes);
            float *back = malloc(N * sizeof *back), *back_ref = malloc(N * sizeof *back);
            CHECK(gg_quantize_ref((gg_type)dt, b, (gg_type)st, src, 1, N, &e) == 0, "%s", e.msg);
            if (st == dt) CHECK(memcmp(b, src, nbytes) == 0, "%d: not a copy", st);
            CHECK(gg_dequantize_rows_ref(dt, b, N, 1, 3, N - 3, back_ref, &e) == 0, "%s", e.msg);
            for (int lv = 0; lv < nlevels; lv++) {
                gg_quant_simd_cap(levels[lv]);
                CHECK(gg_quantize((gg_type)dt, a, (gg_type)st, src, 1, N, &e) == 0, "%s", e.msg);
                CHECK(memcmp(a, b, nbytes) == 0, "%s -> %s level %d: fast != ref",
                      gg_type_name((gg_type)st), gg_type_name((gg_type)dt), levels[lv]);
                CHECK(gg_dequantize_rows(dt, a, N, 1, 3, N - 3, back, &e) == 0, "%s", e.msg);
                CHECK(memcmp(back, back_ref, (N - 3) * sizeof *back) == 0, "deq %s level %d",
                      gg_type_name((gg_type)dt), levels[lv]);
            }
            gg_quant_simd_cap(GG_SIMD_AVX512);
            int bad = 0;
            for (int i = 3; i < N && bad < 5; i++) {
                float want = dt == GG_TYPE_F32   ? xs[i]
                             : dt == GG_TYPE_F16 ? gg_f16_to_f32(gg_f32_to_f16(xs[i]))
                                                 : gg_bf16_to_f32(gg_f32_to_bf16(xs[i]));
                float got = back_ref[i - 3];
                if (isnan(want) ? !isnan(got) : bits_of(got) != bits_of(want))
                    FAIL_COUNT(bad, "%d -> %d: element %d: %a, want %a", st, dt, i, got, want);
            }
            if (dt == GG_TYPE_F16 && st != GG_TYPE_F16) { /* overflow in a vector, in the tail */
                static const struct {
                    int at;
                    float v;
                } over[] = {{20, 65520.0f}, {37, -65520.0f}, {N - 2, -70000.0f}, {N - 1, 65520.0f}};
                for (int k = 0; k < 4; k++) {
                    float *big = malloc(N * sizeof *big);
                    memcpy(big, xs, N * sizeof *big);
                    big[over[k].at] = over[k].v;
                    void *base2;
                    const uint8_t *src2 = make_src((gg_type)st, big, N, &base2);
                    gg_err e2;
                    CHECK(gg_quantize_ref(GG_TYPE_F16, b, (gg_type)st, src2, 1, N, &e2) == -1 &&
                              strstr(e2.msg, "overflows f16"),
                          "%s", e2.msg);
                    for (int lv = 0; lv < nlevels; lv++) {
                        gg_quant_simd_cap(levels[lv]);
                        CHECK(gg_quantize(GG_TYPE_F16, a, (gg_type)st, src2, 1, N, &e) == -1 &&
                                  strcmp(e.msg, e2.msg) == 0,
                              "level %d: %s", levels[lv], e.msg);
                    }
                    gg_quant_simd_cap(GG_SIMD_AVX512);
                    free(base2), free(big);
                }
            }
            free(a), free(b), free(back), free(back_ref), free(base), free(xs);
        }
    }

    /* Every f16 and bf16 pattern dequantized, and converted to the other
     * types (bf16 -> f16 only where it does not overflow): fast == ref. */
    uint16_t *all = malloc(65536 * 2);
    float *d1 = malloc(65536 * 4), *d2 = malloc(65536 * 4);
    for (uint32_t i = 0; i < 65536; i++)
        all[i] = (uint16_t)i;
    for (int lv = 0; lv < nlevels; lv++) {
        gg_quant_simd_cap(levels[lv]);
        for (gg_type st = GG_TYPE_F16; st <= GG_TYPE_BF16; st++) {
            CHECK(gg_dequantize_rows(st, all, 1024, 64, 0, 1024, d1, &e) == 0, "%s", e.msg);
            CHECK(gg_dequantize_rows_ref(st, all, 1024, 64, 0, 1024, d2, &e) == 0, "%s", e.msg);
            CHECK(memcmp(d1, d2, 65536 * 4) == 0, "%s patterns, level %d", gg_type_name(st),
                  levels[lv]);
            gg_type dt = st == GG_TYPE_F16 ? GG_TYPE_BF16 : GG_TYPE_F16;
            uint64_t n = st == GG_TYPE_F16 ? 65536 : 0x4780; /* bf16 below 65536 */
            CHECK(gg_quantize(dt, d1, st, all, 1, n, &e) == 0, "%s", e.msg);
            CHECK(gg_quantize_ref(dt, d2, st, all, 1, n, &e) == 0, "%s", e.msg);
            CHECK(memcmp(d1, d2, n * 2) == 0, "%s patterns to %s, level %d", gg_type_name(st),
                  gg_type_name(dt), levels[lv]);
        }
    }
    gg_quant_simd_cap(GG_SIMD_AVX512);
    free(all), free(d1), free(d2);
}

/* ------------------------------------------------------------------------ */
/* q8 and nf4                                                                */

/* a'_b of an nf4 tensor, computed here from the stored bytes. */
static float nf4_aprime_of(const uint8_t *t, uint64_t rows, uint64_t cols, size_t b) {
    size_t n = rows * cols, nb = n / 64, ng = (nb + 255) / 256;
    size_t P = (n / 2 + nb + 3) & ~(size_t)3;
    float s, mean;
    memcpy(&s, t + P + 4 * (b / 256), 4);
    memcpy(&mean, t + P + 4 * ng, 4);
    volatile float prod = (float)(int8_t)t[n / 2 + b] * s;
    return prod + mean;
}

static unsigned nf4_index_of(const uint8_t *t, size_t i) {
    return i & 1 ? t[i / 2] & 15 : t[i / 2] >> 4;
}

/* Every element of a reference nf4 tensor decodes to code[idx] * a'_b,
 * with idx the code nearest to x / a'_b (brute force, ties to the lower);
 * the one tolerated exception is a t within 2 ulp of a midpoint, where the
 * f32-rounded midpoint decides. Returns the number of violations. */
static int nf4_check_nearest(const uint8_t *t, const float *deq, const float *x, uint64_t rows,
                             uint64_t cols) {
    size_t n = rows * cols;
    float mids[15];
    for (int i = 0; i < 15; i++)
        mids[i] = (gg_nf4_codes[i] + gg_nf4_codes[i + 1]) / 2.0f;
    int bad = 0;
    for (size_t i = 0; i < n && bad < 5; i++) {
        float ap = nf4_aprime_of(t, rows, cols, i / 64);
        unsigned idx = nf4_index_of(t, i), want = 7;
        if (ap != 0) {
            float tq = x[i] / ap;
            double best = INFINITY;
            for (unsigned k = 0; k < 16; k++) {
                double dist = fabs((double)tq - gg_nf4_codes[k]);
                if (dist < best) best = dist, want = k;
            }
            if (idx != want) {
                int near_mid = 0;
                for (int k = 0; k < 15; k++)
                    if (fabsf(tq - mids[k]) <=
                        2 * (nextafterf(fabsf(mids[k]), INFINITY) - fabsf(mids[k])))
                        near_mid = 1;
                if (near_mid) want = idx;
            }
        }
        if (idx != want || deq[i] != gg_nf4_codes[idx] * ap)
            FAIL_COUNT(bad, "element %zu: x %.9g a' %.9g: index %u (want %u), decoded %.9g", i,
                       x[i], ap, idx, want, deq[i]);
    }
    return bad;
}

/* Fast == reference (bytes, and floats back, whole tensor and a row range),
 * at every SIMD level, for both quantized types, three source types and
 * several shapes; plus the nf4 nearest-code property. */
static void test_fast_equals_ref(void) {
    static const uint64_t shapes[][2] = {{1, 64}, {3, 128}, {37, 192}, {301, 4096}, {2, 4160}};
    gg_err e;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        uint64_t rows = shapes[si][0], cols = shapes[si][1];
        size_t n = rows * cols;
        for (int st = 0; st < 3; st++) {
            float *x = make_weights((gg_type)st, rows, cols);
            void *base;
            const uint8_t *src = make_src((gg_type)st, x, n, &base);
            for (gg_type dt = GG_TYPE_Q8; dt <= GG_TYPE_NF4; dt++) {
                size_t nbytes = gg_type_nbytes(dt, rows, cols);
                uint8_t *ref = malloc(nbytes + 1), *fast = malloc(nbytes + 1);
                float *dref = malloc(n * sizeof *dref), *dfast = malloc(n * sizeof *dfast);
                REQUIRE(gg_quantize_ref(dt, ref, (gg_type)st, src, rows, cols, &e) == 0, "%s",
                        e.msg);
                REQUIRE(gg_dequantize_rows_ref(dt, ref, rows, cols, 0, rows, dref, &e) == 0, "%s",
                        e.msg);
                uint64_t r0 = rows / 3, nr = rows - r0 > 2 ? rows - r0 - 1 : rows - r0;
                for (int lv = 0; lv < nlevels; lv++) {
                    gg_quant_simd_cap(levels[lv]);
                    /* at an odd address, to exercise unaligned stores */
                    REQUIRE(gg_quantize(dt, fast + 1, (gg_type)st, src, rows, cols, &e) == 0, "%s",
                            e.msg);
                    CHECK(memcmp(ref, fast + 1, nbytes) == 0, "%s from %s, %llux%llu, level %d",
                          gg_type_name(dt), gg_type_name((gg_type)st), (unsigned long long)rows,
                          (unsigned long long)cols, levels[lv]);
                    memset(dfast, 0xff, n * sizeof *dfast);
                    REQUIRE(gg_dequantize_rows(dt, fast + 1, rows, cols, 0, rows, dfast, &e) == 0,
                            "%s", e.msg);
                    CHECK(memcmp(dref, dfast, n * sizeof *dref) == 0, "deq %s %llux%llu level %d",
                          gg_type_name(dt), (unsigned long long)rows, (unsigned long long)cols,
                          levels[lv]);
                    REQUIRE(gg_dequantize_rows(dt, fast + 1, rows, cols, r0, nr, dfast, &e) == 0,
                            "%s", e.msg);
                    CHECK(memcmp(dref + r0 * cols, dfast, nr * cols * sizeof *dref) == 0,
                          "deq %s rows [%llu, +%llu) level %d", gg_type_name(dt),
                          (unsigned long long)r0, (unsigned long long)nr, levels[lv]);
                }
                gg_quant_simd_cap(GG_SIMD_AVX512);
                if (dt == GG_TYPE_NF4) {
                    CHECK(nf4_check_nearest(ref, dref, x, rows, cols) == 0, "nearest");
                    size_t P = (n / 2 + n / 64 + 3) & ~(size_t)3;
                    for (size_t p = n / 2 + n / 64; p < P; p++)
                        CHECK(ref[p] == 0, "padding %zu", p);
                } else {
                    /* q8: |error| <= d/2 (the value is inside +-127 d) */
                    int bad = 0;
                    for (size_t i = 0; i < n && bad < 5; i++) {
                        uint16_t dh;
                        memcpy(&dh, ref + n + 2 * (i / 64), 2);
                        float d = gg_f16_to_f32(dh);
                        if (fabsf(x[i]) <= 127 * d && !(fabsf(dref[i] - x[i]) <= d / 2 * 1.0001f))
                            FAIL_COUNT(bad, "q8 element %zu: %.9g -> %.9g (d %g)", i, x[i], dref[i],
                                       d);
                    }
                }
                free(ref), free(fast), free(dref), free(dfast);
            }
            free(base);
            free(x);
        }
    }
}

/* q8 hand block: d = f16(127 / 127) = 1, so q = round_half_away(x). */
static void test_q8_hand(void) {
    float x[64] = {127, 0.5f, -0.5f, 2.5f, -2.5f, 1.4999999f, 126.5f, -126.5f, 3.5f, 0.49999997f};
    int8_t want[64] = {127, 1, -1, 3, -3, 1, 127, -127, 4, 0};
    uint8_t out[66], out2[66];
    gg_err e;
    for (int lv = 0; lv < nlevels; lv++) {
        gg_quant_simd_cap(levels[lv]);
        CHECK(gg_quantize(GG_TYPE_Q8, out, GG_TYPE_F32, x, 1, 64, &e) == 0, "%s", e.msg);
        CHECK(memcmp(out, want, 64) == 0 && out[64] == 0x00 && out[65] == 0x3c,
              "level %d: %d %d %d %d", levels[lv], (int8_t)out[1], (int8_t)out[2], (int8_t)out[3],
              (int8_t)out[6]);
    }
    gg_quant_simd_cap(GG_SIMD_AVX512);
    CHECK(gg_quantize_ref(GG_TYPE_Q8, out2, GG_TYPE_F32, x, 1, 64, &e) == 0 &&
              memcmp(out, out2, 66) == 0,
          "ref");
    /* A scale that overflows f16 is an error. */
    x[0] = 1e7f;
    CHECK(gg_quantize(GG_TYPE_Q8, out, GG_TYPE_F32, x, 1, 64, &e) == -1 &&
              strstr(e.msg, "too large"),
          "%s", e.msg);
}

/* q8 rounding near every half-integer and integer: blocks whose absmax is
 * 127 (so d = 1 and q = round_half_away(x)) holding the 64 floats around
 * k + 0.5 and around k, for k = 0..126, both signs; fast == reference and
 * q == roundf(x). */
static void test_q8_rounding_sweep(void) {
    enum { PER = 63 };
    size_t cap = 127 * 2 * 2 * 64, cnt = 0;
    float *v = malloc(cap * sizeof *v);
    for (int k = 0; k < 127; k++)
        for (int half = 0; half < 2; half++) {
            uint32_t c = bits_of((float)k + (half ? 0.5f : 0.0f));
            for (int64_t o = -32; o < 32; o++) {
                int64_t u = (int64_t)c + o;
                if (u < 0) continue;
                float f = f32_of((uint32_t)u);
                if (f > 127) continue;
                v[cnt++] = f;
                v[cnt++] = -f;
            }
        }
    size_t rows = (cnt + PER - 1) / PER, n = rows * 64;
    float *x = calloc(n, sizeof *x);
    for (size_t i = 0; i < cnt; i++)
        x[(i / PER) * 64 + 1 + i % PER] = v[i];
    for (size_t r = 0; r < rows; r++)
        x[r * 64] = 127.0f;
    uint8_t *ref = malloc(gg_type_nbytes(GG_TYPE_Q8, rows, 64)),
            *fast = malloc(gg_type_nbytes(GG_TYPE_Q8, rows, 64));
    gg_err e;
    REQUIRE(gg_quantize_ref(GG_TYPE_Q8, ref, GG_TYPE_F32, x, rows, 64, &e) == 0, "%s", e.msg);
    int bad = 0;
    for (size_t i = 0; i < n && bad < 5; i++)
        if ((int8_t)ref[i] != (int)roundf(x[i])) FAIL_COUNT(bad, "%a -> %d", x[i], (int8_t)ref[i]);
    for (int lv = 0; lv < nlevels; lv++) {
        gg_quant_simd_cap(levels[lv]);
        REQUIRE(gg_quantize(GG_TYPE_Q8, fast, GG_TYPE_F32, x, rows, 64, &e) == 0, "%s", e.msg);
        CHECK(memcmp(ref, fast, gg_type_nbytes(GG_TYPE_Q8, rows, 64)) == 0, "level %d", levels[lv]);
    }
    gg_quant_simd_cap(GG_SIMD_AVX512);
    free(v), free(x), free(ref), free(fast);
}

/* nf4 hand block: every block has absmax 1, so mean 1, s = 0, a' = 1 and
 * t = x: values exactly on an f32 midpoint take the lower code, the next
 * float up the upper one. */
static void test_nf4_midpoints(void) {
    float x[128], mids[15];
    for (int i = 0; i < 15; i++)
        mids[i] = (gg_nf4_codes[i] + gg_nf4_codes[i + 1]) / 2.0f;
    x[0] = 1.0f, x[1] = -1.0f, x[64] = -1.0f, x[65] = 0.0f;
    for (int i = 0; i < 15; i++) {
        x[2 + i] = mids[i];
        x[17 + i] = nextafterf(mids[i], INFINITY);
        x[32 + i] = nextafterf(mids[i], -INFINITY);
        x[66 + i] = gg_nf4_codes[i];
    }
    for (int i = 47; i < 64; i++)
        x[i] = 0.25f;
    for (int i = 81; i < 128; i++)
        x[i] = -0.0f;
    uint8_t out[128];
    float deq[128];
    gg_err e;
    for (int lv = 0; lv < nlevels; lv++) {
        gg_quant_simd_cap(levels[lv]);
        REQUIRE(gg_quantize(GG_TYPE_NF4, out, GG_TYPE_F32, x, 2, 64, &e) == 0, "%s", e.msg);
        REQUIRE(gg_type_nbytes(GG_TYPE_NF4, 2, 64) == 76, "size");
        float s, mean;
        memcpy(&s, out + 68, 4), memcpy(&mean, out + 72, 4);
        CHECK(s == 0 && mean == 1 && out[64] == 0 && out[65] == 0, "s %g mean %g q %d %d", s, mean,
              (int8_t)out[64], (int8_t)out[65]);
        CHECK(nf4_index_of(out, 0) == 15 && nf4_index_of(out, 1) == 0, "ends");
        for (int i = 0; i < 15; i++) {
            CHECK(nf4_index_of(out, 2 + i) == (unsigned)i, "on midpoint %d: %u", i,
                  nf4_index_of(out, 2 + i));
            CHECK(nf4_index_of(out, 17 + i) == (unsigned)i + 1, "above midpoint %d", i);
            CHECK(nf4_index_of(out, 32 + i) == (unsigned)i, "below midpoint %d", i);
            CHECK(nf4_index_of(out, 66 + i) == (unsigned)i, "code %d", i);
        }
        CHECK(nf4_index_of(out, 65) == 7 && nf4_index_of(out, 100) == 7, "zero");
        REQUIRE(gg_dequantize_rows(GG_TYPE_NF4, out, 2, 64, 0, 2, deq, &e) == 0, "%s", e.msg);
        for (int i = 0; i < 15; i++)
            CHECK(deq[66 + i] == gg_nf4_codes[i], "code %d back", i);
    }
    gg_quant_simd_cap(GG_SIMD_AVX512);
}

/* The nf4 index of t = x (every block has absmax 1, so a' = 1) for 2^20
 * evenly spaced x in [-1, 1] and the 128 floats around every midpoint and
 * around every multiple of 1/15.9 (the AVX-512 kernel's cell boundaries):
 * fast == reference at every level. */
static void test_nf4_index_sweep(void) {
    enum { PER = 63 };
    float mids[15];
    for (int i = 0; i < 15; i++)
        mids[i] = (gg_nf4_codes[i] + gg_nf4_codes[i + 1]) / 2.0f;
    size_t cap = (1u << 20) + 1 + (15 + 33) * 128, cnt = 0;
    float *v = malloc(cap * sizeof *v);
    for (uint32_t k = 0; k <= 1u << 20; k++)
        v[cnt++] = -1.0f + (float)k * 0x1p-19f;
    for (int c = 0; c < 15 + 33; c++) {
        float center = c < 15 ? mids[c] : (float)(c - 15 - 16) / 15.9f;
        for (int o = -64; o < 64; o++) {
            float f = f32_of((uint32_t)((int64_t)bits_of(center) + o));
            if (center == 0) f = o < 0 ? -f32_of((uint32_t)-o) : f32_of((uint32_t)o);
            if (fabsf(f) <= 1) v[cnt++] = f;
        }
    }
    size_t rows = (cnt + PER - 1) / PER, n = rows * 64;
    float *x = calloc(n, sizeof *x);
    for (size_t i = 0; i < cnt; i++)
        x[(i / PER) * 64 + 1 + i % PER] = v[i];
    for (size_t r = 0; r < rows; r++)
        x[r * 64] = 1.0f;
    size_t nbytes = gg_type_nbytes(GG_TYPE_NF4, rows, 64);
    uint8_t *ref = malloc(nbytes), *fast = malloc(nbytes);
    gg_err e;
    REQUIRE(gg_quantize_ref(GG_TYPE_NF4, ref, GG_TYPE_F32, x, rows, 64, &e) == 0, "%s", e.msg);
    int bad = 0;
    for (size_t i = 0; i < n && bad < 5; i++) {
        unsigned want = 0;
        for (int k = 0; k < 15; k++)
            want += x[i] > mids[k];
        if (nf4_index_of(ref, i) != want)
            FAIL_COUNT(bad, "%a: index %u, want %u", x[i], nf4_index_of(ref, i), want);
    }
    for (int lv = 0; lv < nlevels; lv++) {
        gg_quant_simd_cap(levels[lv]);
        REQUIRE(gg_quantize(GG_TYPE_NF4, fast, GG_TYPE_F32, x, rows, 64, &e) == 0, "%s", e.msg);
        CHECK(memcmp(ref, fast, nbytes) == 0, "level %d", levels[lv]);
    }
    gg_quant_simd_cap(GG_SIMD_AVX512);
    free(v), free(x), free(ref), free(fast);
}

/* Edge blocks: all zeros, one huge value, negative only, denormals; and
 * tensors of denormals only and zeros only. The huge value goes in its own
 * variant: in nf4 it widens its group's absmax scale s_g, which coarsens
 * a'_b of every other block in the group (by design of the linear double
 * quantization), so the accuracy checks on the other blocks skip it. */
static void test_edge_blocks(void) {
    enum { R = 4, C = 256, N = R * C };
    float *x = malloc(N * sizeof *x), *deq = malloc(N * sizeof *deq);
    uint8_t *q = malloc(gg_type_nbytes(GG_TYPE_NF4, R, C) + gg_type_nbytes(GG_TYPE_Q8, R, C));
    gg_err e;
    for (int huge = 0; huge < 2; huge++) {
        for (int i = 0; i < N; i++)
            x[i] = (float)rng_gauss();
        memset(x + 64, 0, 64 * sizeof *x); /* block 1: zeros */
        if (huge) x[128 + 5] = 1e4f;       /* block 2: one huge value */
        for (int j = 0; j < 64; j++)
            x[192 + j] = -fabsf(x[192 + j]) - 0.01f; /* block 3 */
        for (int j = 0; j < 64; j++)
            x[256 + j] = (float)(rng_gauss() * 1e-40); /* block 4 */
        float amin = 0;
        for (int j = 0; j < 64; j++)
            amin = fminf(amin, x[192 + j]);
        for (gg_type dt = GG_TYPE_Q8; dt <= GG_TYPE_NF4; dt++) {
            const char *tn = gg_type_name(dt);
            REQUIRE(gg_quantize(dt, q, GG_TYPE_F32, x, R, C, &e) == 0, "%s", e.msg);
            REQUIRE(gg_dequantize_rows(dt, q, R, C, 0, R, deq, &e) == 0, "%s", e.msg);
            for (int j = 0; j < 64; j++)
                CHECK(deq[64 + j] == 0, "%s zero block %d: %g", tn, j, deq[64 + j]);
            if (huge) CHECK(fabsf(deq[133] - 1e4f) < 1e4f * 0.005f, "%s huge: %g", tn, deq[133]);
            for (int j = 0; j < 64; j++) {
                CHECK(deq[192 + j] <= 0, "%s negative block %d: %g", tn, j, deq[192 + j]);
                if (x[192 + j] == amin && (dt == GG_TYPE_Q8 || !huge))
                    CHECK(fabsf(deq[192 + j] - amin) < 0.02f * -amin, "%s min %g -> %g", tn, amin,
                          deq[192 + j]);
                CHECK(fabsf(deq[256 + j]) < 1e-30f, "%s denormal %g -> %g", tn, x[256 + j],
                      deq[256 + j]);
            }
            if (dt == GG_TYPE_NF4) CHECK(nf4_check_nearest(q, deq, x, R, C) == 0, "nearest");
        }
    }
    for (int i = 0; i < N; i++)
        x[i] = (float)(rng_gauss() * 1e-39);
    for (int pass = 0; pass < 2; pass++) { /* denormals only, then zeros only */
        for (gg_type dt = GG_TYPE_Q8; dt <= GG_TYPE_NF4; dt++) {
            uint8_t *r = malloc(gg_type_nbytes(dt, R, C));
            REQUIRE(gg_quantize(dt, q, GG_TYPE_F32, x, R, C, &e) == 0, "%s", e.msg);
            REQUIRE(gg_quantize_ref(dt, r, GG_TYPE_F32, x, R, C, &e) == 0, "%s", e.msg);
            CHECK(memcmp(q, r, gg_type_nbytes(dt, R, C)) == 0, "%s pass %d", gg_type_name(dt),
                  pass);
            REQUIRE(gg_dequantize_rows(dt, q, R, C, 0, R, deq, &e) == 0, "%s", e.msg);
            if (dt == GG_TYPE_NF4) CHECK(nf4_check_nearest(q, deq, x, R, C) == 0, "nearest");
            for (int i = 0; i < N; i++)
                if (pass == 1) CHECK(deq[i] == 0, "zeros: %g", deq[i]);
            free(r);
        }
        memset(x, 0, N * sizeof *x);
    }
    free(x), free(deq), free(q);
}

/* NaN and infinities are rejected by q8 and nf4, naming the element; the
 * fast path gives the reference's message. */
static void test_not_finite(void) {
    enum { R = 4, C = 128, N = R * C };
    static const uint32_t bad_bits[] = {0x7fc00000u, 0x7f800000u, 0xff800000u, 0x7f800001u};
    gg_err e, e2;
    float *x = malloc(N * sizeof *x);
    uint8_t *q = malloc(gg_type_nbytes(GG_TYPE_Q8, R, C));
    for (size_t k = 0; k < 2 * sizeof bad_bits / sizeof bad_bits[0]; k++) {
        for (int st = 0; st < 3; st++) {
            for (int i = 0; i < N; i++)
                x[i] = (float)rng_gauss();
            x[2 * C + 70] = f32_of(bad_bits[k / 2]);
            if (k & 1) x[3 * C + 5] = NAN; /* a later one, in another block, is not reported */
            void *base;
            const uint8_t *src = make_src((gg_type)st, x, N, &base);
            for (gg_type dt = GG_TYPE_Q8; dt <= GG_TYPE_NF4; dt++) {
                for (int lv = 0; lv < nlevels; lv++) {
                    gg_quant_simd_cap(levels[lv]);
                    CHECK(gg_quantize(dt, q, (gg_type)st, src, R, C, &e) == -1 &&
                              strstr(e.msg, "not finite") &&
                              strstr(e.msg, "element 326 (row 2, col 70)"),
                          "%s from %s, %08x, level %d: %s", gg_type_name(dt),
                          gg_type_name((gg_type)st), bad_bits[k / 2], levels[lv], e.msg);
                }
                gg_quant_simd_cap(GG_SIMD_AVX512);
                CHECK(gg_quantize_ref(dt, q, (gg_type)st, src, R, C, &e2) == -1 &&
                          strcmp(e.msg, e2.msg) == 0,
                      "%s vs %s", e.msg, e2.msg);
            }
            free(base);
        }
    }
    free(x), free(q);
}

/* Relative RMS error on N(0, 1) weights. */
static double rel_rms(const float *x, const float *y, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - x[i];
        num += d * d, den += (double)x[i] * x[i];
    }
    return sqrt(num / den);
}

/* Measured with seed 12345 (the same on every SIMD level, the outputs being
 * bit-identical); asserted within +-10%. */
#define Q8_ERR 0.005922  /* ~ d/sqrt(12) with d = absmax/127, absmax ~ 2.4 sigma */
#define NF4_ERR 0.091950 /* nf4 with exact absmax: 0.091951 */
static void test_error_gaussian(void) {
    enum { R = 256, C = 4096 };
    size_t n = (size_t)R * C;
    rng_seed(12345);
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_gauss();
    uint8_t *q = malloc(gg_type_nbytes(GG_TYPE_NF4, R, C) + gg_type_nbytes(GG_TYPE_Q8, R, C));
    gg_err e;

    REQUIRE(gg_quantize(GG_TYPE_Q8, q, GG_TYPE_F32, x, R, C, &e) == 0, "%s", e.msg);
    REQUIRE(gg_dequantize_rows(GG_TYPE_Q8, q, R, C, 0, R, y, &e) == 0, "%s", e.msg);
    double q8 = rel_rms(x, y, n);

    REQUIRE(gg_quantize(GG_TYPE_NF4, q, GG_TYPE_F32, x, R, C, &e) == 0, "%s", e.msg);
    REQUIRE(gg_dequantize_rows(GG_TYPE_NF4, q, R, C, 0, R, y, &e) == 0, "%s", e.msg);
    double nf4 = rel_rms(x, y, n);

    /* nf4 with the exact block absmax (no double quantization). */
    float mids[15];
    for (int i = 0; i < 15; i++)
        mids[i] = (gg_nf4_codes[i] + gg_nf4_codes[i + 1]) / 2.0f;
    for (size_t b = 0; b < n / 64; b++) {
        float a = 0;
        for (int j = 0; j < 64; j++)
            a = fmaxf(a, fabsf(x[64 * b + j]));
        for (int j = 0; j < 64; j++) {
            float t = x[64 * b + j] / a;
            int idx = 0;
            for (int k = 0; k < 15; k++)
                idx += t > mids[k];
            y[64 * b + j] = gg_nf4_codes[idx] * a;
        }
    }
    double nf4_exact = rel_rms(x, y, n);

    printf("# relative RMS error on N(0,1) %dx%d: q8 %.6f, nf4 %.6f, nf4 with exact absmax %.6f "
           "(double quantization costs %+.3f%%)\n",
           R, C, q8, nf4, nf4_exact, 100 * (nf4 / nf4_exact - 1));
    CHECK(q8 > 0.9 * Q8_ERR && q8 < 1.1 * Q8_ERR, "q8 %.6f", q8);
    CHECK(nf4 > 0.9 * NF4_ERR && nf4 < 1.1 * NF4_ERR, "nf4 %.6f", nf4);
    CHECK(fabs(nf4 / nf4_exact - 1) < 0.01, "nf4 %.6f vs exact %.6f", nf4, nf4_exact);
    free(x), free(y), free(q);
}

int main(void) {
    find_levels();
    RUN(test_type_names);
    RUN(test_nbytes);
    RUN(test_shapes);
    RUN(test_f16_exhaustive);
    RUN(test_bf16_exhaustive);
    RUN(test_f16_rounding);
    RUN(test_f16_sweep);
    RUN(test_float_conversions);
    RUN(test_q8_hand);
    RUN(test_q8_rounding_sweep);
    RUN(test_nf4_midpoints);
    RUN(test_nf4_index_sweep);
    RUN(test_edge_blocks);
    RUN(test_not_finite);
    RUN(test_fast_equals_ref);
    RUN(test_error_gaussian);
    return check_done();
}

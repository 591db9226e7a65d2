/* bench/matmul.c — micro-benchmark of the CPU backend's matmul
 * (backend-cpu/matmul.c) on Llama-3.2-1B-like shapes, for every weight type:
 *
 * - the machine's read bandwidth: a SIMD sum over a 1 GiB buffer on the
 *   backend's threads (bytes READ per second, best of several runs) — the
 *   bound a GEMV streaming weights can reach; memcpy of 1 GiB is shown for
 *   reference (bytes copied per second: as many bytes are also written);
 * - GEMV (n = 1, decode): time per call, weight bytes streamed per second and
 *   % of the read bandwidth. The weight is cycled through copies filling
 *   1 GiB so that it comes from memory, not from the L3;
 * - GEMM (n = 512, prefill) and matmul_dx (n = 512, training): GFLOP/s per
 *   type, and plain f32 cblas_sgemm (OpenBLAS's own 2 threads) on the same
 *   shape for comparison;
 * - the int8 matmul (be->int8_matmul, q8 / nf4, AVX-512 VNNI: its GEMV for
 *   n <= 4, its GEMM above) against the float path for n from 1 to 512,
 *   weights in cache (`int8` as the second argument runs only this part).
 *
 * Build and run (from the repository root; 2 threads = this machine's cores):
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -I. -pthread bench/matmul.c \
 *       backend-cpu/matmul.c backend-cpu/ops.c backend-cpu/pool.c \
 *       backend-cpu/cpu_backend.c ggfmt/quant.c ggfmt/quant_simd.c ggfmt/err.c \
 *       -lopenblas -lm -o /tmp/bench_matmul && /tmp/bench_matmul [threads]
 * or, after `make`, link build/rel/libgg.a in place of the .c files:
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -I. -pthread bench/matmul.c build/rel/libgg.a \
 *       -ljansson -lpcre2-8 -lutf8proc -lopenblas -lm -o /tmp/bench_matmul */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend-cpu/cpu_backend.h"
#include "backend-cpu/cpu_internal.h"

#define GiB ((size_t)1 << 30)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rng_s = 0x9e3779b97f4a7c15ull;
static double rng_gauss(void) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng_s ^= rng_s >> 12, rng_s ^= rng_s << 25, rng_s ^= rng_s >> 27;
        u[i] = (double)((rng_s * 0x2545f4914f6cdd1dull) >> 11) * 0x1p-53;
    }
    return sqrt(-2.0 * log(1.0 - u[0])) * cos(6.283185307179586 * u[1]);
}

static float *rand_vec(size_t n) {
    float *v = malloc(n * sizeof *v);
    if (!v) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (float)rng_gauss();
    return v;
}

/* ------------------------------------------------------------------------ */
/* Read bandwidth: each thread sums its half of a big buffer                 */

typedef struct sum_job {
    const float *buf;
    size_t n;
    float out[64];
} sum_job;

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx512f"))) static float sum512(const float *p, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(p + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(p + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(p + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
__attribute__((target("avx2"))) static float sum256(const float *p, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(p + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(p + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(p + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(p + i + 24));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    float f[8];
    _mm256_storeu_ps(f, s);
    return f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
}
#endif

static float sum_any(const float *p, size_t n) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) return sum512(p, n);
    if (__builtin_cpu_supports("avx2")) return sum256(p, n);
#endif
    float s[8] = {0};
    for (size_t i = 0; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += p[i + j];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

static void sum_worker(void *arg, int ith, int nth) {
    sum_job *S = arg;
    int64_t lo, hi;
    gg_pool_split((int64_t)S->n, 1024, ith, nth, &lo, &hi);
    S->out[ith & 63] = sum_any(S->buf + lo, (size_t)(hi - lo));
}

/* Bytes read per second by the SIMD sum over 1 GiB on the backend's
 * threads, best of 10. */
static double read_bandwidth(gg_backend *be) {
    float *big = NULL;
    if (posix_memalign((void **)&big, 64, GiB)) return 0;
    memset(big, 0, GiB);
    sum_job S = {.buf = big, .n = GiB / sizeof(float)};
    double best = 0;
    for (int rep = 0; rep < 10; rep++) {
        double t = now();
        gg_pool_run(cpu_ctx_of(be)->pool, sum_worker, &S);
        t = now() - t;
        if (GiB / t > best) best = GiB / t;
    }
    free(big);
    return best;
}

/* Bytes copied per second by memcpy of 1 GiB (one thread), best of 5. */
static double memcpy_bandwidth(void) {
    char *a = malloc(GiB), *b = malloc(GiB);
    double best = 0;
    if (a && b) {
        memset(a, 1, GiB);
        memset(b, 0, GiB);
        for (int rep = 0; rep < 5; rep++) {
            double t = now();
            memcpy(b, a, GiB);
            t = now() - t;
            if (GiB / t > best) best = GiB / t;
        }
    }
    free(a);
    free(b);
    return best;
}

/* ------------------------------------------------------------------------ */

static double gflops(double n, double rows, double cols, double sec) {
    return 2 * n * rows * cols / sec * 1e-9;
}

/* The int8 matmul against the float path, per n (ms per call, best of 3,
 * and the float / int8 speed-up). */
static void bench_int8(gg_backend *be) {
    static const int64_t shapes[][2] = {{8192, 2048}, {2048, 8192}};
    static const gg_type types[] = {GG_TYPE_Q8, GG_TYPE_NF4};
    static const int64_t ns[] = {1, 2, 4, 5, 8, 16, 32, 64, 512};
    if (!cpu_int8_supported()) {
        printf("\nint8 matmul: this CPU has no AVX-512 VNNI\n");
        return;
    }
    printf("\nint8 matmul vs float path: ms per call (best of 3), speed-up\n");
    printf("%-11s %-5s %6s %10s %10s %8s %9s\n", "shape", "type", "n", "float ms", "int8 ms", "x", "GOP/s");
    gg_err err = {{0}};
    for (int s = 0; s < 2; s++) {
        int64_t rows = shapes[s][0], cols = shapes[s][1];
        float *src = rand_vec((size_t)(rows * cols)), *x = rand_vec((size_t)(512 * cols));
        float *y = malloc((size_t)(512 * rows) * sizeof *y);
        for (int ti = 0; ti < 2; ti++) {
            size_t nb = gg_type_nbytes(types[ti], (uint64_t)rows, (uint64_t)cols);
            void *mem = malloc(nb);
            gg_weight w;
            if (!mem || gg_quantize(types[ti], mem, GG_TYPE_F32, src, (uint64_t)rows, (uint64_t)cols, &err) ||
                be->weight_init(be, &w, types[ti], rows, cols, mem, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                exit(1);
            }
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
                int64_t n = ns[ni];
                double tf = 1e30, ti8 = 1e30;
                for (int rep = 0; rep < 4; rep++) {
                    double t = now();
                    be->matmul(be, y, x, n, &w, NULL, 0.0f);
                    t = now() - t;
                    if (rep && t < tf) tf = t;
                    t = now();
                    if (n <= 4) cpu_gemv_int8(be, y, x, n, &w, NULL, 0.0f);
                    else cpu_matmul_int8(be, y, x, n, &w, NULL, 0.0f);
                    t = now() - t;
                    if (rep && t < ti8) ti8 = t;
                }
                printf("%5lldx%-5lld %-5s %6lld %10.3f %10.3f %7.2fx %9.1f\n", (long long)rows, (long long)cols,
                       gg_type_name(types[ti]), (long long)n, tf * 1e3, ti8 * 1e3, tf / ti8,
                       gflops((double)n, (double)rows, (double)cols, ti8));
            }
            be->weight_free(be, &w);
            free(mem);
        }
        free(src), free(x), free(y);
    }
}

int main(int argc, char **argv) {
    int nthreads = argc > 1 ? atoi(argv[1]) : 2;
    gg_err err = {{0}};
    gg_backend *be = gg_backend_cpu_new(nthreads, &err);
    if (!be) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    /* GG_INT8=1: the GEMV rows below with be->int8_matmul (the int8 GEMV) */
    be->int8_matmul = getenv("GG_INT8") && atoi(getenv("GG_INT8")) == 1;
    static const char *const lv[] = {"scalar", "avx2", "avx512"};
    printf("threads %d, SIMD %s, OpenBLAS core %s (OPENBLAS_CORETYPE overrides)\n\n",
           be->n_threads, lv[cpu_ctx_of(be)->simd], openblas_get_corename());
    if (argc > 2 && strcmp(argv[2], "int8") == 0) {
        bench_int8(be);
        gg_backend_free(be);
        return 0;
    }

    /* ---- GEMV, between two bandwidth measurements (the bound is the better
     * one: on a shared machine the bandwidth varies from second to second) ---- */
    static const int64_t shapes[][2] = {{8192, 2048}, {2048, 8192}};
    static const gg_type types[] = {GG_TYPE_F32, GG_TYPE_F16, GG_TYPE_BF16, GG_TYPE_Q8, GG_TYPE_NF4};
    enum { NT = sizeof types / sizeof *types };
    double rd0 = read_bandwidth(be), cp = memcpy_bandwidth();
    double gemv_t[2][NT];
    size_t gemv_bytes[2][NT];
    for (int s = 0; s < 2; s++) {
        int64_t rows = shapes[s][0], cols = shapes[s][1];
        float *src = rand_vec((size_t)(rows * cols)), *x = rand_vec((size_t)cols);
        float *y = malloc((size_t)rows * sizeof *y);
        for (int ti = 0; ti < NT; ti++) {
            size_t nb = gg_type_nbytes(types[ti], (uint64_t)rows, (uint64_t)cols);
            size_t stride = (nb + 4095) & ~(size_t)4095, ncopy = GiB / stride;
            uint8_t *mem = NULL;
            if (ncopy < 2) ncopy = 2;
            if (posix_memalign((void **)&mem, 4096, stride * ncopy)) return 1;
            if (gg_quantize(types[ti], mem, GG_TYPE_F32, src, (uint64_t)rows, (uint64_t)cols, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            for (size_t c = 1; c < ncopy; c++)
                memcpy(mem + c * stride, mem, nb);
            gg_weight *w = calloc(ncopy, sizeof *w);
            for (size_t c = 0; c < ncopy; c++)
                be->weight_init(be, &w[c], types[ti], rows, cols, mem + c * stride, &err);
            double best = 1e30;
            for (int rep = 0; rep < 16; rep++) {
                double t = now();
                for (size_t c = 0; c < ncopy; c++)
                    be->matmul(be, y, x, 1, &w[c], NULL, 0.0f);
                t = (now() - t) / (double)ncopy;
                if (rep > 0 && t < best) best = t; /* the first sweep warms up */
            }
            gemv_t[s][ti] = best;
            gemv_bytes[s][ti] = nb;
            free(w);
            free(mem);
        }
        free(src), free(x), free(y);
    }
    double rd1 = read_bandwidth(be), rd = rd0 > rd1 ? rd0 : rd1;
    printf("read bandwidth (SIMD sum over 1 GiB, %d threads, best of 10): %.1f GB/s before "
           "the GEMVs, %.1f GB/s after\n", be->n_threads, rd0 * 1e-9, rd1 * 1e-9);
    printf("memcpy 1 GiB (1 thread, best of 5): %.1f GB/s copied (read; as much written)\n\n",
           cp * 1e-9);
    printf("GEMV n=1: weight [rows, cols], cycled through 1 GiB of copies; best of 15 sweeps;\n"
           "%%read = GB/s over the better read bandwidth\n");
    printf("%-11s %-5s %10s %10s %9s %7s\n", "shape", "type", "MB/weight", "us/call", "GB/s",
           "%read");
    for (int s = 0; s < 2; s++)
        for (int ti = 0; ti < NT; ti++) {
            double nb = (double)gemv_bytes[s][ti], t = gemv_t[s][ti];
            printf("%5lldx%-5lld %-5s %10.2f %10.1f %9.1f %6.0f%%\n", (long long)shapes[s][0],
                   (long long)shapes[s][1], gg_type_name(types[ti]), nb * 1e-6, t * 1e6,
                   nb / t * 1e-9, 100.0 * nb / t / rd);
        }

    /* ---- GEMM and matmul_dx ---- */
    const int64_t n = 512;
    printf("\nGEMM n=%lld: y = x·Wᵀ (matmul) and dx = dy·W (matmul_dx), best of 3\n", (long long)n);
    printf("%-11s %-19s %10s %9s %8s %10s %9s\n", "shape", "type", "matmul ms", "GFLOP/s",
           "%sgemm", "dx ms", "GFLOP/s");
    for (int s = 0; s < 2; s++) {
        int64_t rows = shapes[s][0], cols = shapes[s][1];
        float *src = rand_vec((size_t)(rows * cols)), *x = rand_vec((size_t)(n * cols));
        float *dy = rand_vec((size_t)(n * rows));
        float *y = malloc((size_t)(n * rows) * sizeof *y), *dx = malloc((size_t)(n * cols) * sizeof *dx);
        /* baseline: one cblas_sgemm call with OpenBLAS's own threading */
        openblas_set_num_threads(be->n_threads);
        double base = 1e30, base_dx = 1e30;
        for (int rep = 0; rep < 3; rep++) {
            double t = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)cols, 1.0f, x,
                        (int)cols, src, (int)cols, 0.0f, y, (int)rows);
            t = now() - t;
            if (t < base) base = t;
            t = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)cols, (int)rows, 1.0f,
                        dy, (int)rows, src, (int)cols, 0.0f, dx, (int)cols);
            t = now() - t;
            if (t < base_dx) base_dx = t;
        }
        openblas_set_num_threads(1);
        printf("%5lldx%-5lld %-19s %10.2f %9.1f %7.0f%% %10.2f %9.1f\n", (long long)rows,
               (long long)cols, "sgemm (OpenBLAS)", base * 1e3, gflops((double)n, (double)rows,
               (double)cols, base), 100.0, base_dx * 1e3,
               gflops((double)n, (double)rows, (double)cols, base_dx));
        for (int ti = 0; ti < NT; ti++) {
            size_t nb = gg_type_nbytes(types[ti], (uint64_t)rows, (uint64_t)cols);
            void *mem = malloc(nb);
            gg_weight w;
            if (!mem ||
                gg_quantize(types[ti], mem, GG_TYPE_F32, src, (uint64_t)rows, (uint64_t)cols, &err) ||
                be->weight_init(be, &w, types[ti], rows, cols, mem, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            double tm = 1e30, td = 1e30;
            for (int rep = 0; rep < 3; rep++) {
                double t = now();
                be->matmul(be, y, x, n, &w, NULL, 0.0f);
                t = now() - t;
                if (t < tm) tm = t;
                t = now();
                be->matmul_dx(be, dx, dy, n, &w, 0.0f);
                t = now() - t;
                if (t < td) td = t;
            }
            printf("%5lldx%-5lld %-19s %10.2f %9.1f %7.0f%% %10.2f %9.1f\n", (long long)rows,
                   (long long)cols, gg_type_name(types[ti]), tm * 1e3,
                   gflops((double)n, (double)rows, (double)cols, tm), 100.0 * base / tm, td * 1e3,
                   gflops((double)n, (double)rows, (double)cols, td));
            be->weight_free(be, &w);
            free(mem);
        }
        free(src), free(x), free(dy), free(y), free(dx);
    }
    bench_int8(be);
    gg_backend_free(be);
    return 0;
}

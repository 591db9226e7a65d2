/* bench/sgemm.c — OpenBLAS cblas_sgemm throughput on the shapes a training
 * step multiplies (tokens × hidden × ffn and back), the yardstick
 * bench/train_cpu.sh reports training FLOP/s against.
 *
 *   sgemm M N K [threads]   → "sgemm_gflops=X" (best of 5, after a warm-up)
 * Build: cc -O2 -D_GNU_SOURCE bench/sgemm.c -lopenblas -o build/bench/sgemm */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void openblas_set_num_threads(int num_threads);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: sgemm M N K [threads]\n");
        return 2;
    }
    int M = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]);
    if (argc > 4) openblas_set_num_threads(atoi(argv[4]));
    float *a = malloc(sizeof(float) * (size_t)M * K), *b = malloc(sizeof(float) * (size_t)K * N),
          *c = malloc(sizeof(float) * (size_t)M * N);
    if (!a || !b || !c) return 1;
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 17) * 0.01f - 0.08f;
    for (size_t i = 0; i < (size_t)K * N; i++) b[i] = (float)(i % 13) * 0.01f - 0.06f;
    double best = 0;
    for (int r = 0; r < 6; r++) {
        double t0 = now();
        /* C = A Bᵀ with B [N, K] row-major: the layout of x Wᵀ */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        double g = 2.0 * M * N * K / (now() - t0) / 1e9;
        if (r > 0 && g > best) best = g;
    }
    printf("sgemm_gflops=%.1f\n", best);
    free(a);
    free(b);
    free(c);
    return 0;
}

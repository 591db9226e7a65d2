/* membw.c — the machine's memory read bandwidth, the denominator of the
 * decode "bandwidth bound" in bench/infer.sh: T threads each sum their share
 * of a buffer much larger than the caches; best of 10 passes (vectorised: built with -O3 -march=native -ffast-math so the sum is not the limit), GB/s of bytes
 * read. Also memcpy GB/s (bytes copied) for reference.
 *   cc -O3 -march=native -ffast-math -pthread bench/membw.c -o build/bench/membw && build/bench/membw [MiB] [threads]
 * Prints: "read_gbps=… memcpy_gbps=…" */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct job {
    const double *p;
    size_t n;
    double sum;
} job;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *sum_part(void *a) {
    job *j = a;
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (size_t i = 0; i + 8 <= j->n; i += 8) {
        s0 += j->p[i], s1 += j->p[i + 1], s2 += j->p[i + 2], s3 += j->p[i + 3];
        s4 += j->p[i + 4], s5 += j->p[i + 5], s6 += j->p[i + 6], s7 += j->p[i + 7];
    }
    j->sum = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
    return NULL;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1024;
    int nt = argc > 2 ? atoi(argv[2]) : 2;
    if (nt < 1 || nt > 256 || mib < 64) return fprintf(stderr, "usage: membw [MiB >= 64] [threads]\n"), 1;
    size_t bytes = mib << 20, n = bytes / sizeof(double);
    double *a = malloc(bytes), *b = malloc(bytes);
    if (!a || !b) return fprintf(stderr, "membw: out of memory\n"), 1;
    for (size_t i = 0; i < n; i++) a[i] = (double)(i & 1023), b[i] = 0;
    double best_r = 1e30, best_c = 1e30, total = 0;
    for (int r = 0; r < 10; r++) {
        pthread_t th[256];
        job jobs[256];
        double t0 = now();
        for (int t = 0; t < nt; t++) {
            jobs[t] = (job){a + n / nt * t, n / nt, 0};
            pthread_create(&th[t], NULL, sum_part, &jobs[t]);
        }
        for (int t = 0; t < nt; t++) pthread_join(th[t], NULL), total += jobs[t].sum;
        double t1 = now();
        memcpy(b, a, bytes);
        double t2 = now();
        if (t1 - t0 < best_r) best_r = t1 - t0;
        if (t2 - t1 < best_c) best_c = t2 - t1;
    }
    printf("read_gbps=%.2f memcpy_gbps=%.2f checksum=%.0f\n", bytes / best_r / 1e9, bytes / best_c / 1e9, total + b[7]);
    return 0;
}

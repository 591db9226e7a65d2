/* dist.h — data-parallel training across processes with MPI (header-only,
 * for ggtrain): start-up under mpirun, the rank and world size, sums over
 * all ranks, and the failure policy. Built with -DGG_MPI (the Makefile sets
 * it when mpicc is found, MPI=0 turns it off); without it a single process
 * is the only rank, and a launch under mpirun with more than one rank is
 * refused.
 *
 * Failure policy: a rank that stops on an error (gg_die → exit) takes the
 * whole job down with MPI_Abort from an atexit handler, so the others do not
 * wait in a collective forever; a rank that hangs or dies without a word is
 * caught by a watchdog thread: a collective that has not finished after
 * timeout seconds aborts the job with a message naming the rank. */
#ifndef GG_TOOLS_DIST_H
#define GG_TOOLS_DIST_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#ifdef GG_MPI
#include <mpi.h>
#endif

typedef struct gg_dist {
    int rank, size; /* 0 and 1 when alone */
    int active;     /* MPI initialised (size > 1 or launched by mpirun) */
} gg_dist;

static gg_dist gg_dist_g;
#ifdef GG_MPI
static volatile double gg_dist_coll_start; /* 0 = not in a collective */
static double gg_dist_timeout = 600;
static int gg_dist_done;
#endif

static inline double gg_dist_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The world size mpirun (OpenMPI, MPICH, Slurm's PMI) announces, or 1. */
static inline int gg_dist_env_size(void) {
    const char *v[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        const char *s = getenv(v[i]);
        if (s && atoi(s) > 0) return atoi(s);
    }
    return 1;
}

#ifdef GG_MPI
static void gg_dist_atexit(void) {
    if (gg_dist_g.active && !gg_dist_done) MPI_Abort(MPI_COMM_WORLD, 1);
}

static void *gg_dist_watchdog(void *arg) {
    (void)arg;
    for (;;) {
        sleep(1);
        double t0 = gg_dist_coll_start;
        if (t0 > 0 && gg_dist_now() - t0 > gg_dist_timeout) {
            fprintf(stderr,
                    "ggtrain: rank %d: no answer from the other ranks for %.0f s (a rank died or hangs); "
                    "aborting the job\n",
                    gg_dist_g.rank, gg_dist_timeout);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
    }
    return NULL;
}
#endif

/* Initialise (before anything else parses argv). Returns 0, or -1 with a
 * message on stderr. */
static inline int gg_dist_init(int *argc, char ***argv) {
    gg_dist_g.rank = 0;
    gg_dist_g.size = 1;
    int env_size = gg_dist_env_size();
#ifdef GG_MPI
    if (env_size > 1 || getenv("OMPI_COMM_WORLD_RANK")) {
        if (MPI_Init(argc, argv) != MPI_SUCCESS) {
            fprintf(stderr, "ggtrain: MPI_Init failed\n");
            return -1;
        }
        MPI_Comm_rank(MPI_COMM_WORLD, &gg_dist_g.rank);
        MPI_Comm_size(MPI_COMM_WORLD, &gg_dist_g.size);
        gg_dist_g.active = 1;
        atexit(gg_dist_atexit);
        pthread_t th;
        if (pthread_create(&th, NULL, gg_dist_watchdog, NULL) == 0) pthread_detach(th);
    }
#else
    (void)argc;
    (void)argv;
    if (env_size > 1) {
        fprintf(stderr, "ggtrain: launched as one of %d ranks, but this build has no MPI (install libopenmpi-dev "
                        "and rebuild, or run one process)\n", env_size);
        return -1;
    }
#endif
    return 0;
}

static inline void gg_dist_set_timeout(double seconds) {
#ifdef GG_MPI
    gg_dist_timeout = seconds;
#else
    (void)seconds;
#endif
}

/* In-place sums over all ranks (identical on every rank afterwards; the
 * order of the sum is MPI's and the same in every step for a given size). */
static inline void gg_dist_sum_f32(float *buf, size_t n) {
#ifdef GG_MPI
    if (!gg_dist_g.active || gg_dist_g.size == 1) return;
    gg_dist_coll_start = gg_dist_now();
    for (size_t off = 0; off < n;) { /* counts are int */
        size_t k = n - off < (size_t)1 << 30 ? n - off : (size_t)1 << 30;
        MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        off += k;
    }
    gg_dist_coll_start = 0;
#else
    (void)buf;
    (void)n;
#endif
}

static inline void gg_dist_sum_f64(double *buf, size_t n) {
#ifdef GG_MPI
    if (!gg_dist_g.active || gg_dist_g.size == 1) return;
    gg_dist_coll_start = gg_dist_now();
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    gg_dist_coll_start = 0;
#else
    (void)buf;
    (void)n;
#endif
}

/* Normal end: every rank calls it (a barrier, then MPI_Finalize). */
static inline void gg_dist_finalize(void) {
#ifdef GG_MPI
    if (!gg_dist_g.active) return;
    gg_dist_coll_start = gg_dist_now();
    MPI_Barrier(MPI_COMM_WORLD);
    gg_dist_coll_start = 0;
    gg_dist_done = 1;
    MPI_Finalize();
#endif
}

#endif

/* pool.h — the CPU backend's thread pool: a fixed set of worker threads
 * that run one function together, fork-join style.
 *
 * gg_pool_run(p, fn, arg) calls fn(arg, ith, nth) once for each ith in
 * [0, nth) — the caller runs ith = 0 — and returns when all have returned.
 * fn divides the work itself (gg_pool_split). Workers spin briefly between
 * jobs, then sleep, so back-to-back small ops (decode) pay microseconds.
 * One gg_pool_run at a time per pool (the backend is single-stream). */
#ifndef GG_POOL_H
#define GG_POOL_H

#include <stdint.h>

typedef struct gg_pool gg_pool;

/* n_threads >= 1 (1 = no workers; everything runs on the caller). NULL on
 * failure to allocate or start threads. */
gg_pool *gg_pool_new(int n_threads);
void gg_pool_free(gg_pool *p);
int gg_pool_size(const gg_pool *p);

void gg_pool_run(gg_pool *p, void (*fn)(void *arg, int ith, int nth), void *arg);

/* The share [*lo, *hi) of [0, n) that thread ith of nth takes, in multiples
 * of grain (the last share takes the remainder). */
static inline void gg_pool_split(int64_t n, int64_t grain, int ith, int nth, int64_t *lo, int64_t *hi) {
    if (grain < 1) grain = 1;
    int64_t units = (n + grain - 1) / grain;
    int64_t per = units / nth, rem = units % nth;
    int64_t u0 = ith * per + (ith < rem ? ith : rem);
    int64_t u1 = u0 + per + (ith < rem ? 1 : 0);
    *lo = u0 * grain < n ? u0 * grain : n;
    *hi = u1 * grain < n ? u1 * grain : n;
}

#endif

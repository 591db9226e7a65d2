/* rng.h — the tests' deterministic random numbers (xorshift64*): the same
 * sequence on every machine, so a failing case can be replayed. */
#ifndef GG_TEST_RNG_H
#define GG_TEST_RNG_H

#include <math.h>
#include <stdint.h>

static uint64_t rng_s = 0x9e3779b97f4a7c15ull;

static inline void rng_seed(uint64_t s) { rng_s = s ? s : 1; }

static inline uint64_t rng_u64(void) {
    rng_s ^= rng_s >> 12;
    rng_s ^= rng_s << 25;
    rng_s ^= rng_s >> 27;
    return rng_s * 0x2545f4914f6cdd1dull;
}

static inline double rng_unit(void) { return (double)(rng_u64() >> 11) * 0x1p-53; } /* [0, 1) */

static inline double rng_gauss(void) { /* Box-Muller */
    double u1 = 1.0 - rng_unit(), u2 = rng_unit();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif

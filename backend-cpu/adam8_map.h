/* adam8_map.h — the construction of the 8-bit optimizer's "dynamic" code
 * maps (bitsandbytes' signed and unsigned maps: 7 decades of linearly
 * spaced magnitudes, plus 0 and 1, ascending; the signed map's lowest code
 * is -1). Header-only so that the scalar reference (ref_optim.c) and the
 * CUDA plugin, which does not link libgg, build the very same floats. */
#ifndef GG_ADAM8_MAP_H
#define GG_ADAM8_MAP_H

#include <math.h>

/* The 256 codes of the signed (is_signed) or unsigned map into map[]. */
static inline void gg_adam8_build(float *map, int is_signed) {
    int n = 0;
    for (int e = 0; e < 7; e++) {
        int k = is_signed ? 1 << e : 2 << e; /* codes in this decade */
        double decade = pow(10.0, (double)(e - 6));
        for (int j = 0; j < k; j++) {
            double mid = 0.1 + 0.9 * ((double)j + 0.5) / (double)k;
            map[n++] = (float)(decade * mid);
            if (is_signed) map[n++] = (float)(-decade * mid);
        }
    }
    map[n++] = 0.0f;
    map[n++] = 1.0f;
    for (int i = 1; i < n; i++) { /* insertion sort, ascending */
        float t = map[i];
        int j = i;
        for (; j > 0 && map[j - 1] > t; j--) map[j] = map[j - 1];
        map[j] = t;
    }
    if (is_signed) map[0] = -1.0f;
}

#endif

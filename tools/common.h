/* common.h — small helpers shared by the tools' main()s (header-only):
 * the version string, human-readable sizes, wall-clock time, and the
 * one-line fatal error convention ("TOOL: message" on stderr, exit 1). */
#ifndef GG_TOOLS_COMMON_H
#define GG_TOOLS_COMMON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ggfmt/ggfmt.h" /* GG_VERSION_STRING */

static inline double gg_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "1.23 GB" style (decimal units, as MB/s figures are). buf >= 32. */
static inline const char *gg_human_bytes(uint64_t n, char *buf) {
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    double v = (double)n;
    int i = 0;
    while (v >= 1000.0 && i < 4) {
        v /= 1000.0;
        i++;
    }
    snprintf(buf, 32, i ? "%.2f %s" : "%.0f %s", v, u[i]);
    return buf;
}

static inline void gg_die(const char *tool, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
static inline void gg_die(const char *tool, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", tool);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* All of stream f into a malloc'd, NUL-terminated buffer (*len bytes, NUL
 * not counted); NULL on out-of-memory or a read error (errno says which). */
static inline char *gg_read_stream(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t k = fread(b + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) break;
        if (cap - n < 2) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
        }
    }
    if (b && ferror(f)) {
        free(b);
        return NULL;
    }
    if (!b) return NULL;
    b[n] = 0;
    if (len) *len = n;
    return b;
}

/* Parse a whole decimal integer in [lo, hi]; 0 on success. */
static inline int gg_parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

#endif

/* json_util.h — small helpers shared by the JSON readers of convert/
 * (config.json, adapter_config.json): reading a small file whole, and how to
 * name a value's kind in an error message. Header-only. */
#ifndef GG_JSON_UTIL_H
#define GG_JSON_UTIL_H

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggfmt/err.h"

/* Read a file of at most max bytes into *out (malloc'd, NUL-terminated);
 * what names the expected file in the too-large message ("a config.json"). */
static inline int gg_read_small_file(const char *path, size_t max, const char *what, char **out, size_t *len,
                                     gg_err *err) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return gg_errf(err, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(max + 1);
    if (!buf) {
        fclose(f);
        return gg_errf(err, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, max + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > max) {
        free(buf);
        return bad ? gg_errf(err, "%s: read error", path)
                   : gg_errf(err, "%s: larger than %zu bytes; not %s", path, max, what);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* "an object", "a string", ... for "'key' is %s, expected ..." messages. */
static inline const char *gg_json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

#endif

/* fuzz_config.c — libFuzzer harness for the recipe reader
 * (gg_config_parse, convert/config.h): any input is refused with one line
 * "fuzz.yml:LINE: ..." or parsed without a crash, leak or undefined
 * behaviour; and what parses survives a round trip: the entries rendered
 * as a JSON object (one entry per line) parse back to the same keys,
 * values and lines. Works in memory (writes no files). Run with
 * `make fuzz`; seeds in tests/fuzz/corpus/fuzz_config. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct out {
    char *p;
    size_t len, cap;
} out;

static void put(out *o, const char *s, size_t n) {
    if (o->len + n + 1 > o->cap) {
        size_t c = o->cap ? o->cap : 256;
        while (c < o->len + n + 1) c *= 2;
        o->p = realloc(o->p, c);
        if (!o->p) __builtin_trap();
        o->cap = c;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = 0;
}

static void put_str(out *o, const char *s, size_t n) {
    put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"' || c == '\\') {
            e[0] = '\\', e[1] = (char)c;
            put(o, e, 2);
        } else if (c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            put(o, e, 6);
        } else {
            put(o, (const char *)&s[i], 1);
        }
    }
    put(o, "\"", 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gg_config *c = NULL;
    gg_err err;
    err.msg[0] = 0;
    if (gg_config_parse(&c, (const char *)data, size, "fuzz.yml", &err)) {
        /* every rejection says where and why, on one line */
        if (c || strncmp(err.msg, "fuzz.yml:", 9) != 0 || strchr(err.msg, '\n')) __builtin_trap();
        return 0;
    }
    size_t n = gg_config_count(c);
    int nlines = 1;
    for (size_t i = 0; i < size; i++) nlines += data[i] == '\n';
    out o = {0};
    put(&o, "{\n", 2);
    for (size_t i = 0; i < n; i++) {
        const char *k = gg_config_key(c, i), *v = gg_config_value(c, i);
        int line = gg_config_line(c, i);
        if (!k || !v || !k[0] || strchr(k, '_') || line < 1 || line > nlines) __builtin_trap();
        if (i && line < gg_config_line(c, i - 1)) __builtin_trap();
        if (gg_config_find(c, k) != (long)i) __builtin_trap();
        if (i) put(&o, ",\n", 2);
        put_str(&o, k, strlen(k));
        put(&o, ": ", 2);
        switch (gg_config_kind_of(c, i)) {
        case GG_CFG_NULL:
            if (v[0]) __builtin_trap();
            put(&o, "null", 4);
            break;
        case GG_CFG_BOOL:
            if (strcmp(v, "true") && strcmp(v, "false")) __builtin_trap();
            put(&o, v, strlen(v));
            break;
        case GG_CFG_LIST: {
            put(&o, "[", 1);
            const char *s = v;
            while (*s) {
                const char *e = strchr(s, ',');
                size_t len = e ? (size_t)(e - s) : strlen(s);
                if (len == 0) __builtin_trap(); /* no empty items */
                put_str(&o, s, len);
                if (!e) break;
                put(&o, ",", 1);
                s = e + 1;
            }
            put(&o, "]", 1);
            break;
        }
        default: put_str(&o, v, strlen(v)); break;
        }
    }
    put(&o, "\n}\n", 3);
    gg_config *d = NULL;
    if (gg_config_parse(&d, o.p, o.len, "fuzz.json", &err)) __builtin_trap();
    if (gg_config_count(d) != n) __builtin_trap();
    for (size_t i = 0; i < n; i++) {
        if (strcmp(gg_config_key(c, i), gg_config_key(d, i)) || strcmp(gg_config_value(c, i), gg_config_value(d, i)))
            __builtin_trap();
        if (gg_config_line(d, i) != (int)i + 2) __builtin_trap();
        gg_config_kind kc = gg_config_kind_of(c, i), kd = gg_config_kind_of(d, i);
        if (kc != kd && !(kc == GG_CFG_NUM && kd == GG_CFG_STR)) __builtin_trap();
    }
    gg_config_free(d);
    gg_config_free(c);
    free(o.p);
    return 0;
}

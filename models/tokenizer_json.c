/* tokenizer_json.c — the tokenizer's arena allocator and a small, fast JSON
 * parser (strict RFC 8259; strings decoded to UTF-8, \u0000 allowed; lone
 * surrogates become U+FFFD). Values form a DOM in the arena, except the
 * containers under the keys "vocab" and "merges": those are validated and
 * left in the source text (TJ_LAZY_*), read once by the tj_iter functions,
 * so loading a 9 MB tokenizer.json touches little fresh memory. */
#include <stdlib.h>
#include <string.h>

#include "ggfmt/utf8.h"
#include "models/tok_internal.h"

struct tk_arena_blk {
    tk_arena_blk *next;
    size_t used, cap, bytes;
    max_align_t data[];
};

void *tk_arena_alloc(tk_arena *a, size_t n) {
    n = (n + 7) & ~(size_t)7;
    tk_arena_blk *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > (1u << 20) ? n : (1u << 20);
        b = tk_big_calloc(sizeof *b + cap);
        if (!b) return NULL;
        b->bytes = sizeof *b + cap;
        b->cap = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

char *tk_arena_strndup(tk_arena *a, const char *s, size_t n) {
    char *p = tk_arena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void tk_arena_free(tk_arena *a) {
    for (tk_arena_blk *b = a->head, *nx; b; b = nx) {
        nx = b->next;
        tk_big_free(b, b->bytes);
    }
    a->head = NULL;
}

typedef struct jp {
    const char *s, *end, *start;
    tk_arena *a;
    tj_val *stk; /* values of open containers */
    size_t sn, scap;
    gg_err *err;
    int depth;
} jp;

static int jfail(jp *p, const char *what) {
    return gg_errf(p->err, "JSON: %s at byte %zu", what, (size_t)(p->s - p->start));
}

static void jws(jp *p) {
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\n' || *p->s == '\r' || *p->s == '\t')) p->s++;
}

static int jpush(jp *p, const tj_val *v) {
    if (p->sn == p->scap) {
        size_t nc = p->scap ? p->scap * 2 : 1024;
        tj_val *ns = realloc(p->stk, nc * sizeof *ns);
        if (!ns) return jfail(p, "out of memory");
        p->stk = ns;
        p->scap = nc;
    }
    p->stk[p->sn++] = *v;
    return 0;
}

static int hexv(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int hex4(const char *q, const char *end, uint32_t *out) {
    if (end - q < 4) return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexv((unsigned char)q[i]);
        if (h < 0) return -1;
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return 0;
}

static int jvalue(jp *p, tj_val *v);

/* Decodes the escapes of q[0..r) into o (which may be NULL: validate
 * only); returns the decoded length, or -1 with *bad at the fault. */
static long decode_str(const char *q, const char *r, char *o, const char **bad) {
    size_t n = 0;
    while (q < r) {
        const char *e = memchr(q, '\\', (size_t)(r - q));
        size_t run = (size_t)((e ? e : r) - q);
        if (o) memcpy(o + n, q, run);
        n += run;
        q += run;
        if (!e) break;
        q++;
        char c = q < r ? *q++ : 0, x;
        switch (c) {
        case '"': x = '"'; break;
        case '\\': x = '\\'; break;
        case '/': x = '/'; break;
        case 'b': x = '\b'; break;
        case 'f': x = '\f'; break;
        case 'n': x = '\n'; break;
        case 'r': x = '\r'; break;
        case 't': x = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (hex4(q, r, &cp)) {
                *bad = q;
                return -1;
            }
            q += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                uint32_t lo;
                if (r - q >= 6 && q[0] == '\\' && q[1] == 'u' && !hex4(q + 2, r, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    q += 6;
                } else {
                    cp = 0xFFFD;
                }
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                cp = 0xFFFD;
            }
            char tmp[4];
            size_t k = tk_utf8_put(tmp, cp); /* never longer than the escape */
            if (o) memcpy(o + n, tmp, k);
            n += k;
            continue;
        }
        default: *bad = q - 1; return -1;
        }
        if (o) o[n] = x;
        n++;
    }
    return (long)n;
}

/* Finds the end of the string starting at p->s (a quote): content q..r. */
static int jstr_scan(jp *p, const char **q, const char **r, int *esc) {
    const char *a = p->s + 1, *b = a;
    *esc = 0;
    for (;;) {
        while (b < p->end && *b != '"' && *b != '\\' && (unsigned char)*b >= 0x20) b++;
        if (b >= p->end) {
            p->s = b;
            return jfail(p, "unterminated string");
        }
        if (*b == '"') break;
        if (*b == '\\') {
            *esc = 1;
            b += 2;
            continue;
        }
        p->s = b;
        return jfail(p, "control character in string");
    }
    *q = a;
    *r = b;
    return 0;
}

static int jstring(jp *p, tj_val *v) {
    const char *q = NULL, *r = NULL, *bad = NULL;
    int esc;
    if (jstr_scan(p, &q, &r, &esc)) return -1;
    char *o = tk_arena_alloc(p->a, (size_t)(r - q) + 1);
    if (!o) return jfail(p, "out of memory");
    long n = esc ? decode_str(q, r, o, &bad) : (memcpy(o, q, (size_t)(r - q)), (long)(r - q));
    if (n < 0) {
        p->s = bad;
        return jfail(p, "bad escape");
    }
    o[n] = 0;
    if (gg_utf8_invalid_at(o, (size_t)n) != (size_t)-1) return jfail(p, "invalid UTF-8 in string");
    v->type = TJ_STR;
    v->n = (uint32_t)n;
    v->u.s = o;
    p->s = r + 1;
    return 0;
}

/* Skips the container at p->s (its content is validated later, by the
 * tj_iter functions that read it): strings and bracket depth only. */
/* 8 bytes at a time: a mask with the high bit of each byte of w equal to
 * c (the lowest set byte is exact; higher ones may be false positives). */
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
static inline uint64_t bytes_eq(uint64_t w, unsigned char c) {
    uint64_t v = w ^ (ONES * c);
    return (v - ONES) & ~v & HIGHS;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SWAR 1
#else
#define SWAR 0
#endif

static int jskip_lazy(jp *p, uint32_t *nstrings) {
    const char *q = p->s, *end = p->end;
    long depth = 0;
    size_t ns = 0;
    while (q < end) {
#if SWAR
        /* jump to the next quote or bracket ([ | 0x20 = {, ] | 0x20 = }) */
        while (end - q >= 8) {
            uint64_t w;
            memcpy(&w, q, 8);
            uint64_t m = bytes_eq(w, '"') | bytes_eq(w | (ONES * 0x20), '{') | bytes_eq(w | (ONES * 0x20), '}');
            if (m) {
                q += __builtin_ctzll(m) >> 3;
                break;
            }
            q += 8;
        }
        if (q >= end) break;
#endif
        char c = *q++;
        if (c == '"') {
            for (;;) {
#if SWAR
                while (end - q >= 8) {
                    uint64_t w;
                    memcpy(&w, q, 8);
                    uint64_t m = bytes_eq(w, '"') | bytes_eq(w, '\\');
                    if (m) {
                        q += __builtin_ctzll(m) >> 3;
                        break;
                    }
                    q += 8;
                }
#endif
                if (q >= end) {
                    p->s = end;
                    return jfail(p, "unterminated string");
                }
                if (*q == '"') break;
                q += *q == '\\' ? 2 : 1;
            }
            q++;
            ns++;
        } else if (c == '[' || c == '{') {
            depth++;
        } else if ((c == ']' || c == '}') && --depth == 0) {
            p->s = q;
            *nstrings = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
            return 0;
        }
    }
    p->s = end;
    return jfail(p, "unexpected end");
}

static int jnumber(jp *p, tj_val *v) {
    const char *q = p->s;
    if (q < p->end && *q == '-') q++;
    if (q >= p->end || *q < '0' || *q > '9') return jfail(p, "bad value");
    while (q < p->end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' || *q == '+' ||
                          *q == '-'))
        q++;
    char tmp[64];
    size_t n = (size_t)(q - p->s);
    if (n >= sizeof tmp) {
        /* huge number (e.g. model_max_length): parse with a heap copy */
        char *h = malloc(n + 1);
        if (!h) return jfail(p, "out of memory");
        memcpy(h, p->s, n);
        h[n] = 0;
        v->u.num = strtod(h, NULL);
        free(h);
    } else {
        memcpy(tmp, p->s, n);
        tmp[n] = 0;
        v->u.num = strtod(tmp, NULL);
    }
    v->type = TJ_NUM;
    v->n = 0;
    p->s = q;
    return 0;
}


static int is_lazy_key(const tj_val *k) {
    return (k->n == 5 && !memcmp(k->u.s, "vocab", 5)) || (k->n == 6 && !memcmp(k->u.s, "merges", 6));
}

static int jcontainer(jp *p, tj_val *v, int obj) {
    if (++p->depth > 512) return jfail(p, "nesting too deep");
    p->s++;
    size_t base = p->sn, count = 0;
    jws(p);
    char close = obj ? '}' : ']';
    if (p->s < p->end && *p->s == close) {
        p->s++;
    } else {
        for (;;) {
            tj_val x;
            jws(p);
            if (obj) {
                if (p->s >= p->end || *p->s != '"') return jfail(p, "expected a key");
                if (jstring(p, &x) || jpush(p, &x)) return -1;
                jws(p);
                if (p->s >= p->end || *p->s != ':') return jfail(p, "expected ':'");
                p->s++;
                jws(p);
                if (p->s < p->end && (*p->s == '[' || *p->s == '{') && is_lazy_key(&p->stk[p->sn - 1])) {
                    /* the big tables: validated now, read later with tj_iter */
                    x.type = *p->s == '[' ? TJ_LAZY_ARR : TJ_LAZY_OBJ;
                    x.u.raw.b = p->s;
                    if (jskip_lazy(p, &x.n)) return -1;
                    x.u.raw.e = p->s;
                    if (jpush(p, &x)) return -1;
                    count++;
                    goto next;
                }
            }
            if (jvalue(p, &x) || jpush(p, &x)) return -1;
            count++;
        next:
            jws(p);
            if (p->s < p->end && *p->s == ',') {
                p->s++;
                continue;
            }
            if (p->s < p->end && *p->s == close) {
                p->s++;
                break;
            }
            return jfail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    size_t nv = p->sn - base;
    v->type = obj ? TJ_OBJ : TJ_ARR;
    v->n = (uint32_t)count;
    v->u.items = NULL;
    if (nv) {
        v->u.items = tk_arena_alloc(p->a, nv * sizeof(tj_val));
        if (!v->u.items) return jfail(p, "out of memory");
        memcpy(v->u.items, p->stk + base, nv * sizeof(tj_val));
    }
    p->sn = base;
    p->depth--;
    return 0;
}

static int jlit(jp *p, const char *w, size_t n, tj_val *v, uint32_t type) {
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, w, n)) return jfail(p, "bad value");
    p->s += n;
    v->type = type;
    v->n = 0;
    v->u.s = NULL;
    return 0;
}

static int jvalue(jp *p, tj_val *v) {
    jws(p);
    if (p->s >= p->end) return jfail(p, "unexpected end");
    switch (*p->s) {
    case '"': return jstring(p, v);
    case '{': return jcontainer(p, v, 1);
    case '[': return jcontainer(p, v, 0);
    case 't': return jlit(p, "true", 4, v, TJ_TRUE);
    case 'f': return jlit(p, "false", 5, v, TJ_FALSE);
    case 'n': return jlit(p, "null", 4, v, TJ_NULL);
    default: return jnumber(p, v);
    }
}

int tj_parse(tk_arena *a, const char *json, size_t len, tj_val **out, gg_err *err) {
    jp p = {.s = json, .end = json + len, .start = json, .a = a, .err = err};
    tj_val *v = tk_arena_alloc(a, sizeof *v);
    if (!v) return gg_errf(err, "JSON: out of memory");
    int rc = jvalue(&p, v);
    if (!rc) {
        jws(&p);
        if (p.s != p.end) rc = jfail(&p, "trailing characters");
    }
    free(p.stk);
    if (rc) return -1;
    *out = v;
    return 0;
}

const tj_val *tj_get(const tj_val *obj, const char *key) {
    if (!obj || obj->type != TJ_OBJ) return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < obj->n; i++) {
        const tj_val *k = &obj->u.items[2 * i];
        if (k->n == kl && !memcmp(k->u.s, key, kl)) return &obj->u.items[2 * i + 1];
    }
    return NULL;
}

const char *tj_str(const tj_val *v) { return v && v->type == TJ_STR ? v->u.s : NULL; }

int tj_bool(const tj_val *v, int dflt) {
    if (v && v->type == TJ_TRUE) return 1;
    if (v && v->type == TJ_FALSE) return 0;
    return dflt;
}

int tj_is_null(const tj_val *v) { return !v || v->type == TJ_NULL; }

/* ---- iteration over the lazy tables ---- */

void tj_iter_init(tj_iter *it, const tj_val *v) {
    memset(it, 0, sizeof *it);
    it->s = v->u.raw.b + 1; /* after [ or { */
    it->close = *v->u.raw.b == '[' ? ']' : '}';
    it->e = v->u.raw.e;
    it->first = 1;
}

void tj_iter_free(tj_iter *it) {
    tk_buf_free(&it->k);
    tk_buf_free(&it->b);
}

static void iws(tj_iter *it) {
    while (it->s < it->e && (*it->s == ' ' || *it->s == '\n' || *it->s == '\r' || *it->s == '\t')) it->s++;
}

/* Positions on the next element: 1, or 0 at the end (input already validated). */
/* Positions on the next element: 1, 0 at the end, -1 on a syntax error. */
static int inext(tj_iter *it) {
    iws(it);
    if (it->s >= it->e) return -1;
    char c = *it->s;
    if (c == ']' || c == '}') return it->s + 1 == it->e && c == it->close ? 0 : -1;
    if (!it->first) {
        if (c != ',') return -1;
        it->s++;
        iws(it);
        if (it->s >= it->e || *it->s == ']' || *it->s == '}') return -1;
    }
    it->first = 0;
    return 1;
}

static int istring(tj_iter *it, tk_buf *buf, const char **s, size_t *n) {
    if (it->s >= it->e || *it->s != '"') return -1;
    const char *q = it->s + 1, *r = q;
    int esc = 0;
    while (r < it->e && *r != '"') {
        if ((unsigned char)*r < 0x20) return -1;
        if (*r == '\\') {
            esc = 1;
            r++;
        }
        r++;
    }
    if (r >= it->e) return -1;
    it->s = r + 1;
    if (!esc) {
        *s = q;
        *n = (size_t)(r - q);
        return 0;
    }
    const char *bad;
    buf->n = 0;
    if (tk_buf_reserve(buf, (size_t)(r - q) + 1)) return -1;
    long k = decode_str(q, r, buf->p, &bad);
    if (k < 0) return -1;
    *s = buf->p;
    *n = (size_t)k;
    return 0;
}

int tj_iter_entry(tj_iter *it, const char **key, size_t *klen, int64_t *num) {
    *key = "";
    *klen = 0;
    int r = inext(it);
    if (r <= 0) return r;
    if (istring(it, &it->k, key, klen)) return -1;
    iws(it);
    if (it->s >= it->e || *it->s != ':') return -1;
    it->s++;
    iws(it);
    const char *q = it->s;
    int64_t v = 0;
    while (q < it->e && *q >= '0' && *q <= '9' && v < ((int64_t)1 << 40)) v = v * 10 + (*q++ - '0');
    if (q == it->s || (q < it->e && (*q == '.' || *q == 'e' || *q == 'E' || (*q >= '0' && *q <= '9')))) return -1;
    it->s = q;
    *num = v;
    return 1;
}

int tj_iter_pair(tj_iter *it, const char **a, size_t *an, const char **b, size_t *bn, int *joined) {
    int r = inext(it);
    if (r <= 0) return r;
    if (*it->s == '"') {
        *joined = 1;
        *b = NULL;
        *bn = 0;
        return istring(it, &it->k, a, an) ? -1 : 1;
    }
    if (*it->s != '[') return -1;
    it->s++;
    iws(it);
    *joined = 0;
    if (istring(it, &it->k, a, an)) return -1;
    iws(it);
    if (it->s >= it->e || *it->s != ',') return -1;
    it->s++;
    iws(it);
    if (istring(it, &it->b, b, bn)) return -1;
    iws(it);
    if (it->s >= it->e || *it->s != ']') return -1;
    it->s++;
    return 1;
}

/* tokenizer_text.c — byte buffers, piece lists, UTF-8 (decode, encode, Rust's
 * lossy conversion), the character classes Rust's char methods use, and
 * the string → id hash map of the vocabulary. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <utf8proc.h>

#include "models/tok_internal.h"

/* Large tables come from mmap with MAP_POPULATE: the pages are mapped in
 * one call instead of one fault each (3x faster on a small VM). */
#define TK_BIG ((size_t)256 << 10)

void *tk_big_calloc(size_t n) {
#ifdef MAP_POPULATE
    if (n >= TK_BIG) {
        void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
#endif
    return calloc(1, n ? n : 1);
}

void tk_big_free(void *p, size_t n) {
    if (!p) return;
#ifdef MAP_POPULATE
    if (n >= TK_BIG) {
        munmap(p, n);
        return;
    }
#endif
    free(p);
}

int tk_buf_reserve(tk_buf *b, size_t extra) {
    if (b->cap - b->n >= extra) return 0;
    size_t nc = b->cap ? b->cap : 256;
    while (nc - b->n < extra) {
        if (nc > ((size_t)-1) / 4) return -1;
        nc *= 2;
    }
    char *np = realloc(b->p, nc);
    if (!np) return -1;
    b->p = np;
    b->cap = nc;
    return 0;
}

int tk_buf_add(tk_buf *b, const void *s, size_t n) {
    if (tk_buf_reserve(b, n + 1)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

void tk_buf_free(tk_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

static int list_grow(tk_list *l) {
    if (l->n < l->cap) return 0;
    size_t nc = l->cap ? l->cap * 2 : 64;
    tk_piece *nv = realloc(l->v, nc * sizeof *nv);
    if (!nv) return -1;
    l->v = nv;
    l->cap = nc;
    return 0;
}

int tk_list_add(tk_list *l, const char *s, size_t n, uint32_t flags) {
    if (list_grow(l)) return -1;
    size_t off = l->buf.n;
    if (tk_buf_add(&l->buf, s, n)) return -1;
    l->v[l->n++] = (tk_piece){off, n, flags};
    return 0;
}

int tk_list_begin(tk_list *l, uint32_t flags) {
    if (list_grow(l) || tk_buf_reserve(&l->buf, 1)) return -1;
    l->v[l->n] = (tk_piece){l->buf.n, 0, flags};
    return 0;
}

void tk_list_end(tk_list *l) {
    l->v[l->n].len = l->buf.n - l->v[l->n].off;
    l->n++;
}

void tk_list_clear(tk_list *l) {
    l->n = 0;
    l->buf.n = 0;
}

void tk_list_free(tk_list *l) {
    tk_buf_free(&l->buf);
    free(l->v);
    memset(l, 0, sizeof *l);
}

uint32_t tk_utf8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s + *i;
    size_t left = n - *i;
    uint32_t c = u[0];
    if (c < 0x80 || left < 2) {
        *i += 1;
        return c;
    }
    if (c < 0xE0) {
        *i += 2;
        return (c & 0x1F) << 6 | (u[1] & 0x3F);
    }
    if (c < 0xF0 || left < 4) {
        if (left < 3) {
            *i += 1;
            return c;
        }
        *i += 3;
        return (c & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    }
    *i += 4;
    return (c & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 | (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
}

size_t tk_utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid sequence at s (1..4), or 0 and *bad = length of the
 * maximal invalid subpart (Unicode §3.9 / Rust Utf8Error::error_len). */
static size_t utf8_valid_at(const unsigned char *s, size_t n, size_t *bad) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c == 0xE0) need = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) need = 3;
    else if (c == 0xED) need = 3, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) need = 3;
    else if (c == 0xF0) need = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) need = 4;
    else if (c == 0xF4) need = 4, hi = 0x8F;
    else {
        *bad = 1;
        return 0;
    }
    size_t i = 1;
    for (; i < need; i++) {
        if (i >= n) break;
        unsigned d = s[i];
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (d < l || d > h) break;
    }
    if (i == need) return need;
    *bad = i;
    return 0;
}

int tk_utf8_lossy(const char *s, size_t n, tk_buf *out) {
    out->n = 0;
    if (tk_buf_reserve(out, n + 1)) return -1;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t bad = 0, k = utf8_valid_at(u + i, n - i, &bad);
        if (k) {
            i += k;
            continue;
        }
        if (tk_buf_add(out, s + run, i - run) || tk_buf_add(out, "\xEF\xBF\xBD", 3)) return -1;
        i += bad;
        run = i;
    }
    if (tk_buf_add(out, s + run, n - run)) return -1;
    out->p[out->n] = 0;
    return 0;
}

int tk_is_whitespace(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int tk_is_numeric(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

int tk_is_alnum(uint32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) || tk_is_numeric(c);
}

int tk_is_punct(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* ---- hash map ---- */
int tk_strmap_init(tk_strmap *m, size_t expect, const char *const *keys, const uint32_t *lens) {
    size_t cap = 16;
    while (cap < expect * 2) cap *= 2;
    m->slot = tk_big_calloc(cap * sizeof *m->slot);
    if (!m->slot) return -1;
    m->mask = cap - 1;
    m->keys = keys;
    m->lens = lens;
    return 0;
}

void tk_strmap_put(tk_strmap *m, uint32_t id) { tk_strmap_put_h(m, id, tk_hash(m->keys[id], m->lens[id])); }

void tk_strmap_put_h(tk_strmap *m, uint32_t id, uint64_t h) {
    const char *k = m->keys[id];
    size_t n = m->lens[id];
    uint64_t tag = h >> 32 << 32;
    size_t i = h & m->mask;
    for (;; i = (i + 1) & m->mask) {
        uint64_t s = m->slot[i];
        uint32_t sid = (uint32_t)s;
        if (!s || ((s & ~0xFFFFFFFFull) == tag && m->lens[sid - 1] == n && !memcmp(m->keys[sid - 1], k, n))) {
            m->slot[i] = tag | (id + 1);
            return;
        }
    }
}

int32_t tk_strmap_get(const tk_strmap *m, const char *k, size_t n) {
    if (!m->slot) return -1;
    return tk_strmap_get_h(m, k, n, tk_hash(k, n));
}

int32_t tk_strmap_get_h(const tk_strmap *m, const char *k, size_t n, uint64_t h) {
    uint64_t tag = h >> 32 << 32;
    size_t i = h & m->mask;
    for (;; i = (i + 1) & m->mask) {
        uint64_t s = m->slot[i];
        if (!s) return -1;
        uint32_t sid = (uint32_t)s;
        if ((s & ~0xFFFFFFFFull) == tag && m->lens[sid - 1] == n && !memcmp(m->keys[sid - 1], k, n))
            return (int32_t)(sid - 1);
    }
}

void tk_strmap_free(tk_strmap *m) {
    if (m->slot) tk_big_free(m->slot, (m->mask + 1) * sizeof *m->slot);
    m->slot = NULL;
}

/* util.c — see util.h. */
#include "serve/util.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- gg_sbuf ---- */

static int sbuf_reserve(gg_sbuf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int gg_sbuf_add(gg_sbuf *b, const void *s, size_t n) {
    if (sbuf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int gg_sbuf_adds(gg_sbuf *b, const char *s) { return gg_sbuf_add(b, s, strlen(s)); }

int gg_sbuf_printf(gg_sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0 || sbuf_reserve(b, (size_t)k)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
    return 0;
}

void gg_sbuf_consume(gg_sbuf *b, size_t n) {
    if (n >= b->n) {
        b->n = 0;
        if (b->p) b->p[0] = 0;
        return;
    }
    memmove(b->p, b->p + n, b->n - n);
    b->n -= n;
    b->p[b->n] = 0;
}

void gg_sbuf_free(gg_sbuf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---- keys ---- */

int gg_srv_key_equal(const char *given, size_t given_len, const char *want) {
    size_t wl = strlen(want);
    /* Every byte of want is compared, whatever given is; the length
     * difference is folded into the result. */
    unsigned diff = (unsigned)(given_len != wl);
    for (size_t i = 0; i < wl; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= (unsigned)(g ^ (unsigned char)want[i]);
    }
    return diff == 0;
}

const char *gg_srv_bearer(const char *h, size_t *len) {
    if (!h) return NULL;
    while (*h == ' ' || *h == '\t') h++;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) return NULL;
    h += 6;
    while (*h == ' ' || *h == '\t') h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t')) n--;
    if (!n) return NULL;
    *len = n;
    return h;
}

/* ---- names and paths ---- */

int gg_srv_name_ok(const char *name) {
    size_t n = strlen(name);
    if (n < 1 || n > 64 || name[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

int gg_srv_confine(const char *dir, const char *rel, char **out, gg_err *err) {
    *out = NULL;
    if (!dir || !*dir) return gg_errf(err, "loading adapters at run time needs --adapter-dir");
    if (!rel || !*rel) return gg_errf(err, "empty adapter path");
    if (rel[0] == '/') return gg_errf(err, "adapter path '%s': must be relative to the adapter directory", rel);
    if (strlen(rel) > 1024) return gg_errf(err, "adapter path too long");
    /* No ".." component, before any resolution. */
    for (const char *p = rel; *p;) {
        const char *e = strchr(p, '/');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == 2 && p[0] == '.' && p[1] == '.')
            return gg_errf(err, "adapter path '%s': '..' is not allowed", rel);
        p += k;
        while (*p == '/') p++;
    }
    char base[PATH_MAX], full[PATH_MAX];
    if (!realpath(dir, base)) return gg_errf(err, "adapter directory '%s': %s", dir, strerror(errno));
    char *joined = NULL;
    if (asprintf(&joined, "%s/%s", base, rel) < 0) return gg_errf(err, "out of memory");
    if (!realpath(joined, full)) {
        int e = errno;
        free(joined);
        return gg_errf(err, "adapter '%s': %s", rel, e == ENOENT ? "no such file or folder" : strerror(e));
    }
    free(joined);
    size_t bl = strlen(base);
    if (strncmp(full, base, bl) != 0 || (full[bl] != '/' && !(bl == 1 && base[0] == '/')) || !full[bl + (bl > 1)])
        return gg_errf(err, "adapter '%s': resolves outside the adapter directory", rel);
    *out = strdup(full);
    return *out ? 0 : gg_errf(err, "out of memory");
}

/* ---- UTF-8 ---- */

static int utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 0; /* continuation or invalid lead */
}

size_t gg_utf8_complete(const char *s, size_t n) {
    /* Look back at most 3 bytes for the lead byte of the last sequence. */
    size_t i = n;
    for (int back = 0; back < 4 && i > 0; back++) {
        unsigned char c = (unsigned char)s[i - 1];
        if ((c & 0xC0) != 0x80) { /* a lead (or ASCII, or invalid) byte */
            int need = utf8_len(c);
            if (need == 0) return n; /* invalid: nothing to wait for */
            return (size_t)need > n - (i - 1) ? i - 1 : n;
        }
        i--;
    }
    return n;
}

int gg_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        int k = utf8_len(p[i]);
        if (!k || i + (size_t)k > n) return 0;
        uint32_t cp = k == 1 ? p[i] : (uint32_t)(p[i] & (0x7F >> k));
        for (int j = 1; j < k; j++) {
            if ((p[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += (size_t)k;
    }
    return 1;
}

/* ---- detokenisation ---- */

static int ends_replacement(const char *s, size_t n) {
    return n >= 3 && (unsigned char)s[n - 3] == 0xEF && (unsigned char)s[n - 2] == 0xBF &&
           (unsigned char)s[n - 1] == 0xBD;
}

int gg_detok_init(gg_detok *d, const gg_tokenizer *tok, const int32_t *start, size_t n_start) {
    memset(d, 0, sizeof *d);
    d->tok = tok;
    d->cap = n_start + 64;
    d->ids = malloc(d->cap * sizeof *d->ids);
    if (!d->ids) return -1;
    if (n_start) memcpy(d->ids, start, n_start * sizeof *start);
    d->n = d->read = n_start;
    d->prefix = n_start > 4 ? n_start - 4 : 0;
    return 0;
}

int gg_detok_push(gg_detok *d, int32_t id, char **add, size_t *alen, gg_err *err) {
    *add = NULL;
    *alen = 0;
    if (d->n == d->cap) {
        int32_t *p = realloc(d->ids, 2 * d->cap * sizeof *p);
        if (!p) return gg_errf(err, "out of memory");
        d->ids = p;
        d->cap *= 2;
    }
    d->ids[d->n++] = id;
    char *prev, *now;
    size_t plen, nlen;
    if (gg_tokenizer_decode(d->tok, d->ids + d->prefix, d->read - d->prefix, 0, &prev, &plen, err)) return -1;
    if (gg_tokenizer_decode(d->tok, d->ids + d->prefix, d->n - d->prefix, 0, &now, &nlen, err)) {
        free(prev);
        return -1;
    }
    /* (Were the window's earlier text to change — a decoder that looks
     * ahead — the new text is still taken as what the window gained.) */
    if (nlen > plen && !ends_replacement(now, nlen)) {
        *alen = nlen - plen;
        memmove(now, now + plen, *alen);
        now[*alen] = 0;
        *add = now;
        d->prefix = d->read;
        d->read = d->n;
    } else {
        free(now);
        *add = strdup("");
        if (!*add) {
            free(prev);
            return gg_errf(err, "out of memory");
        }
    }
    free(prev);
    return 0;
}

void gg_detok_free(gg_detok *d) {
    free(d->ids);
    d->ids = NULL;
}

char *gg_detok_piece(const gg_tokenizer *tok, int32_t ctx, int32_t id) {
    int32_t w[2] = {ctx, id};
    char *a = NULL, *b = NULL;
    size_t al = 0, bl = 0;
    gg_err err;
    if (ctx >= 0) {
        if (gg_tokenizer_decode(tok, w, 1, 0, &a, &al, &err)) return strdup("");
        if (gg_tokenizer_decode(tok, w, 2, 0, &b, &bl, &err)) {
            free(a);
            return strdup("");
        }
        char *r;
        if (bl >= al && memcmp(a, b, al) == 0) r = strdup(b + al);
        else r = strdup(b);
        free(a);
        free(b);
        return r;
    }
    if (gg_tokenizer_decode(tok, &id, 1, 0, &b, &bl, &err)) return strdup("");
    return b;
}

/* ---- stop strings ---- */

int gg_stopper_add(gg_stopper *s, const char *stop) {
    if (!stop || !*stop || s->n == GG_MAX_STOPS) return -1;
    s->stops[s->n] = strdup(stop);
    if (!s->stops[s->n]) return -1;
    size_t l = strlen(stop);
    if (l > s->max) s->max = l;
    s->n++;
    return 0;
}

/* Length of the longest suffix of p[0..n) that is a proper prefix of a stop string. */
static size_t partial_stop(const gg_stopper *s, const char *p, size_t n) {
    size_t best = 0;
    for (int i = 0; i < s->n; i++) {
        size_t sl = strlen(s->stops[i]);
        for (size_t k = sl - 1 < n ? sl - 1 : n; k > best; k--)
            if (memcmp(p + n - k, s->stops[i], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

int gg_stopper_feed(gg_stopper *s, const char *text, size_t n, int final, gg_sbuf *out) {
    if (s->hit) return 0;
    if (gg_sbuf_add(&s->pend, text, n)) return -1;
    const char *p = s->pend.p ? s->pend.p : "";
    size_t pn = s->pend.n;
    /* The earliest match of any stop string. */
    size_t cut = SIZE_MAX;
    for (int i = 0; i < s->n; i++) {
        const char *h = memmem(p, pn, s->stops[i], strlen(s->stops[i]));
        if (h && (size_t)(h - p) < cut) cut = (size_t)(h - p);
    }
    if (cut != SIZE_MAX) {
        s->hit = 1;
        int rc = gg_sbuf_add(out, p, cut);
        gg_sbuf_consume(&s->pend, pn);
        return rc;
    }
    size_t emit = final ? pn : pn - partial_stop(s, p, pn);
    if (!final) emit = gg_utf8_complete(p, emit);
    if (gg_sbuf_add(out, p, emit)) return -1;
    gg_sbuf_consume(&s->pend, emit);
    return 0;
}

void gg_stopper_free(gg_stopper *s) {
    for (int i = 0; i < s->n; i++) free(s->stops[i]);
    s->n = 0;
    gg_sbuf_free(&s->pend);
}

/* ---- errors ---- */

char *gg_srv_error_json(const char *msg, const char *type, const char *param, const char *code) {
    json_t *e = json_object();
    json_object_set_new(e, "message", json_string(msg ? msg : ""));
    if (!json_object_get(e, "message")) /* not UTF-8 */
        json_object_set_new(e, "message", json_string("(message not UTF-8)"));
    json_object_set_new(e, "type", json_string(type));
    json_object_set_new(e, "param", param ? json_string(param) : json_null());
    json_object_set_new(e, "code", code ? json_string(code) : json_null());
    json_t *o = json_object();
    json_object_set_new(o, "error", e);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

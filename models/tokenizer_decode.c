/* tokenizer_decode.c — decoders, run as HF's decode_chain over the list of token
 * strings: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace,
 * BPEDecoder (suffix), Sequence. The caller joins the final list. */
#include <stdlib.h>
#include <string.h>

#include "models/tok_internal.h"

static char *adup(tk_arena *a, const tj_val *v) { return tk_arena_strndup(a, v->u.s, v->n); }

int tk_dec_load(tk_dec *d, const tj_val *v, tk_arena *a, gg_err *err) {
    memset(d, 0, sizeof *d);
    const char *type = tj_str(tj_get(v, "type"));
    if (!type) return gg_errf(err, "decoder: missing \"type\"");
    if (!strcmp(type, "ByteLevel")) d->type = TD_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) d->type = TD_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) d->type = TD_FUSE;
    else if (!strcmp(type, "Replace")) {
        const tj_val *p = tj_get(v, "pattern"), *c = tj_get(v, "content");
        const tj_val *s = tj_get(p, "String"), *r = tj_get(p, "Regex");
        const tj_val *pat = s && s->type == TJ_STR ? s : r && r->type == TJ_STR ? r : NULL;
        if (!pat || !c || c->type != TJ_STR)
            return gg_errf(err, "decoder Replace: needs \"pattern\" {String|Regex} and \"content\"");
        d->type = TD_REPLACE;
        d->content = adup(a, c);
        d->content_len = c->n;
        return tk_regex_compile(&d->re, pat->u.s, pat->n, pat == s, "decoder Replace", err);
    } else if (!strcmp(type, "Strip")) {
        const tj_val *c = tj_get(v, "content"), *st = tj_get(v, "start"), *sp = tj_get(v, "stop");
        if (!c || c->type != TJ_STR || !c->n) return gg_errf(err, "decoder Strip: missing \"content\"");
        size_t i = 0;
        d->type = TD_STRIP;
        d->strip_cp = tk_utf8_next(c->u.s, c->n, &i);
        d->start = st && st->type == TJ_NUM && st->u.num > 0 ? (size_t)st->u.num : 0;
        d->stop = sp && sp->type == TJ_NUM && sp->u.num > 0 ? (size_t)sp->u.num : 0;
    } else if (!strcmp(type, "Metaspace")) {
        const tj_val *r = tj_get(v, "replacement");
        d->type = TD_METASPACE;
        d->rep_cp = 0x2581;
        if (r && r->type == TJ_STR && r->n) {
            size_t i = 0;
            d->rep_cp = tk_utf8_next(r->u.s, r->n, &i);
        }
        const char *ps = tj_str(tj_get(v, "prepend_scheme"));
        if (ps) d->prepend = strcmp(ps, "never") != 0;
        else d->prepend = tj_bool(tj_get(v, "add_prefix_space"), 1);
    } else if (!strcmp(type, "BPEDecoder")) {
        const tj_val *s = tj_get(v, "suffix");
        d->type = TD_BPE;
        if (s && s->type == TJ_STR) {
            d->pat = adup(a, s);
            d->pat_len = s->n;
        } else {
            d->pat = tk_arena_strndup(a, "</w>", 4);
            d->pat_len = 4;
        }
    } else if (!strcmp(type, "Sequence")) {
        const tj_val *l = tj_get(v, "decoders");
        if (!l || l->type != TJ_ARR) return gg_errf(err, "decoder Sequence: missing \"decoders\"");
        d->type = TD_SEQ;
        d->kids = calloc(l->n ? l->n : 1, sizeof *d->kids);
        if (!d->kids) return gg_errf(err, "out of memory");
        for (uint32_t i = 0; i < l->n; i++) {
            d->nkids++;
            if (tk_dec_load(&d->kids[i], &l->u.items[i], a, err)) return -1;
        }
    } else {
        return gg_errf(err, "unsupported decoder type \"%s\"", type);
    }
    return 0;
}

void tk_dec_free(tk_dec *d) {
    if (!d) return;
    for (size_t i = 0; i < d->nkids; i++) tk_dec_free(&d->kids[i]);
    free(d->kids);
    tk_regex_free(&d->re);
    memset(d, 0, sizeof *d);
}

typedef struct rep_ctx {
    const char *s;
    size_t last;
    tk_buf *out;
    const tk_dec *d;
} rep_ctx;

static int rep_cb(void *c, size_t st, size_t en) {
    rep_ctx *r = c;
    if (en == st) return 0;
    if (tk_buf_add(r->out, r->s + r->last, st - r->last) || tk_buf_add(r->out, r->d->content, r->d->content_len))
        return -1;
    r->last = en;
    return 0;
}

static int byte_of_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int h = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static int utf8_valid(const char *s, size_t n) {
    tk_buf b = {0};
    int ok = 0;
    if (!tk_utf8_lossy(s, n, &b)) ok = b.n == n && (n == 0 || !memcmp(b.p, s, n));
    tk_buf_free(&b);
    return ok;
}

static int flush_bytes(tk_buf *bytes, tk_list *out) {
    if (!bytes->n) return 0;
    int rc = 0;
    if (utf8_valid(bytes->p, bytes->n)) rc = tk_list_add(out, bytes->p, bytes->n, 0);
    else
        for (size_t k = 0; k < bytes->n && !rc; k++) rc = tk_list_add(out, "\xEF\xBF\xBD", 3, 0);
    bytes->n = 0;
    return rc;
}

#define OOM()                                                                                                          \
    do {                                                                                                               \
        rc = gg_errf(err, "out of memory");                                                                            \
        goto done;                                                                                                     \
    } while (0)

int tk_dec_apply(const tk_dec *d, tk_list *io, tk_list *out, gg_err *err) {
    if (d->type == TD_SEQ) {
        for (size_t i = 0; i < d->nkids; i++)
            if (tk_dec_apply(&d->kids[i], io, out, err)) return -1;
        return 0;
    }
    int rc = 0;
    tk_buf tmp = {0}, tmp2 = {0};
    tk_list_clear(out);
    switch (d->type) {
    case TD_BYTELEVEL: {
        for (size_t i = 0; i < io->n; i++) {
            const char *s = tk_list_str(io, i);
            size_t n = io->v[i].len, start = tmp.n, j = 0;
            int ok = 1;
            while (j < n) {
                int b = tk_cp_to_byte(tk_utf8_next(s, n, &j));
                if (b < 0) {
                    ok = 0;
                    break;
                }
                unsigned char c = (unsigned char)b;
                if (tk_buf_add(&tmp, &c, 1)) OOM();
            }
            if (!ok) {
                tmp.n = start;
                if (tk_buf_add(&tmp, s, n)) OOM();
            }
        }
        if (tk_utf8_lossy(tmp.p ? tmp.p : "", tmp.n, &tmp2) || tk_list_add(out, tmp2.p, tmp2.n, 0)) OOM();
        break;
    }
    case TD_REPLACE:
        for (size_t i = 0; i < io->n; i++) {
            rep_ctx r = {tk_list_str(io, i), 0, &tmp, d};
            tmp.n = 0;
            if (tk_regex_each(&d->re, r.s, io->v[i].len, rep_cb, &r, err)) {
                rc = -1;
                goto done;
            }
            if (tk_buf_add(&tmp, r.s + r.last, io->v[i].len - r.last) || tk_list_add(out, tmp.p, tmp.n, 0)) OOM();
        }
        break;
    case TD_BYTEFALLBACK:
        for (size_t i = 0; i < io->n; i++) {
            int b = byte_of_token(tk_list_str(io, i), io->v[i].len);
            if (b >= 0) {
                unsigned char c = (unsigned char)b;
                if (tk_buf_add(&tmp, &c, 1)) OOM();
                continue;
            }
            if (flush_bytes(&tmp, out) || tk_list_add(out, tk_list_str(io, i), io->v[i].len, 0)) OOM();
        }
        if (flush_bytes(&tmp, out)) OOM();
        break;
    case TD_FUSE:
        if (tk_list_begin(out, 0)) OOM();
        for (size_t i = 0; i < io->n; i++)
            if (tk_buf_add(&out->buf, tk_list_str(io, i), io->v[i].len)) OOM();
        tk_list_end(out);
        break;
    case TD_STRIP:
        for (size_t i = 0; i < io->n; i++) {
            const char *s = tk_list_str(io, i);
            size_t n = io->v[i].len, b = 0, e = n;
            for (size_t k = 0; k < d->start && b < e; k++) {
                size_t j = b;
                if (tk_utf8_next(s, e, &j) != d->strip_cp) break;
                b = j;
            }
            for (size_t k = 0; k < d->stop && e > b; k++) {
                size_t j = e - 1;
                while (j > b && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
                size_t q = j;
                if (tk_utf8_next(s, e, &q) != d->strip_cp) break;
                e = j;
            }
            if (tk_list_add(out, s + b, e - b, 0)) OOM();
        }
        break;
    case TD_METASPACE:
        for (size_t i = 0; i < io->n; i++) {
            const char *s = tk_list_str(io, i);
            size_t n = io->v[i].len;
            if (tk_list_begin(out, 0)) OOM();
            for (size_t j = 0; j < n;) {
                size_t st = j;
                uint32_t c = tk_utf8_next(s, n, &j);
                if (c == d->rep_cp) {
                    if (i == 0 && d->prepend) continue;
                    if (tk_buf_add(&out->buf, " ", 1)) OOM();
                } else if (tk_buf_add(&out->buf, s + st, j - st)) {
                    OOM();
                }
            }
            tk_list_end(out);
        }
        break;
    case TD_BPE:
        for (size_t i = 0; i < io->n; i++) {
            const char *s = tk_list_str(io, i);
            size_t n = io->v[i].len;
            tmp.n = 0;
            /* replace every suffix occurrence by a space, none on the last token */
            for (size_t j = 0; j < n;) {
                if (d->pat_len && n - j >= d->pat_len && !memcmp(s + j, d->pat, d->pat_len)) {
                    if (i + 1 < io->n && tk_buf_add(&tmp, " ", 1)) OOM();
                    j += d->pat_len;
                } else {
                    if (tk_buf_add(&tmp, s + j, 1)) OOM();
                    j++;
                }
            }
            if (tk_list_add(out, tmp.p ? tmp.p : "", tmp.n, 0)) OOM();
        }
        break;
    }
done:
    tk_buf_free(&tmp);
    tk_buf_free(&tmp2);
    if (rc) return -1;
    tk_list sw = *io;
    *io = *out;
    *out = sw;
    return 0;
}

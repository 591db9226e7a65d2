/* tokenizer_normalize.c — normalizers: NFC, NFD, NFKC, NFKD (utf8proc),
 * Lowercase, Prepend, Replace (String or Regex pattern), Strip, Sequence.
 * Only the normalized text is produced (no alignments). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "models/tok_internal.h"

static int load_pattern(const tj_val *v, const char **pat, size_t *n, int *literal) {
    const tj_val *p = tj_get(v, "pattern");
    const tj_val *s = tj_get(p, "String"), *r = tj_get(p, "Regex");
    if (s && s->type == TJ_STR) {
        *pat = s->u.s, *n = s->n, *literal = 1;
        return 0;
    }
    if (r && r->type == TJ_STR) {
        *pat = r->u.s, *n = r->n, *literal = 0;
        return 0;
    }
    return -1;
}

int tk_norm_load(tk_norm *nm, const tj_val *v, tk_arena *a, gg_err *err) {
    memset(nm, 0, sizeof *nm);
    const char *type = tj_str(tj_get(v, "type"));
    if (!type) return gg_errf(err, "normalizer: missing \"type\"");
    if (!strcmp(type, "NFC")) nm->type = TN_NFC;
    else if (!strcmp(type, "NFD")) nm->type = TN_NFD;
    else if (!strcmp(type, "NFKC")) nm->type = TN_NFKC;
    else if (!strcmp(type, "NFKD")) nm->type = TN_NFKD;
    else if (!strcmp(type, "Lowercase")) nm->type = TN_LOWER;
    else if (!strcmp(type, "Prepend")) {
        const tj_val *p = tj_get(v, "prepend");
        if (!p || p->type != TJ_STR) return gg_errf(err, "normalizer Prepend: missing \"prepend\"");
        nm->type = TN_PREPEND;
        nm->str = tk_arena_strndup(a, p->u.s, p->n);
        nm->str_len = p->n;
    } else if (!strcmp(type, "Replace")) {
        const char *pat;
        size_t pn;
        int lit;
        const tj_val *c = tj_get(v, "content");
        if (load_pattern(v, &pat, &pn, &lit) || !c || c->type != TJ_STR)
            return gg_errf(err, "normalizer Replace: needs \"pattern\" {String|Regex} and \"content\"");
        nm->type = TN_REPLACE;
        nm->str = tk_arena_strndup(a, c->u.s, c->n);
        nm->str_len = c->n;
        if (tk_regex_compile(&nm->re, pat, pn, lit, "normalizer Replace", err)) return -1;
    } else if (!strcmp(type, "Strip")) {
        nm->type = TN_STRIP;
        nm->left = tj_bool(tj_get(v, "strip_left"), 1);
        nm->right = tj_bool(tj_get(v, "strip_right"), 1);
    } else if (!strcmp(type, "Sequence")) {
        const tj_val *l = tj_get(v, "normalizers");
        if (!l || l->type != TJ_ARR) return gg_errf(err, "normalizer Sequence: missing \"normalizers\"");
        nm->type = TN_SEQ;
        nm->kids = calloc(l->n ? l->n : 1, sizeof *nm->kids);
        if (!nm->kids) return gg_errf(err, "out of memory");
        for (uint32_t i = 0; i < l->n; i++) {
            nm->nkids++;
            if (tk_norm_load(&nm->kids[i], &l->u.items[i], a, err)) return -1;
        }
    } else {
        return gg_errf(err, "unsupported normalizer type \"%s\"", type);
    }
    return 0;
}

void tk_norm_free(tk_norm *nm) {
    if (!nm) return;
    for (size_t i = 0; i < nm->nkids; i++) tk_norm_free(&nm->kids[i]);
    free(nm->kids);
    tk_regex_free(&nm->re);
    memset(nm, 0, sizeof *nm);
}

typedef struct rep_ctx {
    const char *s;
    size_t last;
    tk_buf *out;
    const char *with;
    size_t with_len;
} rep_ctx;

static int rep_cb(void *c, size_t st, size_t en) {
    rep_ctx *r = c;
    if (en == st) return 0;
    if (tk_buf_add(r->out, r->s + r->last, st - r->last) || tk_buf_add(r->out, r->with, r->with_len)) return -1;
    r->last = en;
    return 0;
}

static int unicode_form(int type, const char *in, size_t n, tk_buf *out, gg_err *err) {
    int opt = UTF8PROC_STABLE;
    if (type == TN_NFC) opt |= UTF8PROC_COMPOSE;
    else if (type == TN_NFD) opt |= UTF8PROC_DECOMPOSE;
    else if (type == TN_NFKC) opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    if (!n) return 0;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)opt);
    if (r < 0) {
        free(dst);
        return gg_errf(err, "normalizer: %s", utf8proc_errmsg(r));
    }
    int rc = tk_buf_add(out, dst, (size_t)r);
    free(dst);
    return rc ? gg_errf(err, "out of memory") : 0;
}

int tk_norm_apply(const tk_norm *nm, const char *in, size_t n, tk_buf *out, gg_err *err) {
    out->n = 0;
    if (tk_buf_reserve(out, n + 1)) return gg_errf(err, "out of memory");
    switch (nm->type) {
    case TN_NFC:
    case TN_NFD:
    case TN_NFKC:
    case TN_NFKD: {
        /* fast path: ASCII is invariant under every normal form */
        size_t i = 0;
        while (i < n && (unsigned char)in[i] < 0x80) i++;
        if (i == n) return tk_buf_add(out, in, n) ? gg_errf(err, "out of memory") : 0;
        return unicode_form(nm->type, in, n, out, err);
    }
    case TN_LOWER:
        for (size_t i = 0; i < n;) {
            uint32_t c = tk_utf8_next(in, n, &i);
            char tmp[8];
            size_t k;
            if (c == 0x130) { /* İ → i + combining dot above (Rust to_lowercase) */
                k = tk_utf8_put(tmp, 'i');
                k += tk_utf8_put(tmp + k, 0x307);
            } else {
                k = tk_utf8_put(tmp, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
            }
            if (tk_buf_add(out, tmp, k)) return gg_errf(err, "out of memory");
        }
        return 0;
    case TN_PREPEND:
        if (n && tk_buf_add(out, nm->str, nm->str_len)) return gg_errf(err, "out of memory");
        return tk_buf_add(out, in, n) ? gg_errf(err, "out of memory") : 0;
    case TN_REPLACE: {
        rep_ctx r = {in, 0, out, nm->str, nm->str_len};
        if (tk_regex_each(&nm->re, in, n, rep_cb, &r, err)) return -1;
        return tk_buf_add(out, in + r.last, n - r.last) ? gg_errf(err, "out of memory") : 0;
    }
    case TN_STRIP: {
        size_t b = 0, e = n;
        if (nm->left)
            while (b < e) {
                size_t j = b;
                if (!tk_is_whitespace(tk_utf8_next(in, e, &j))) break;
                b = j;
            }
        if (nm->right)
            while (e > b) {
                size_t j = e - 1;
                while (j > b && ((unsigned char)in[j] & 0xC0) == 0x80) j--;
                size_t k = j;
                if (!tk_is_whitespace(tk_utf8_next(in, e, &k))) break;
                e = j;
            }
        return tk_buf_add(out, in + b, e - b) ? gg_errf(err, "out of memory") : 0;
    }
    case TN_SEQ: {
        if (tk_buf_add(out, in, n)) return gg_errf(err, "out of memory");
        tk_buf tmp = {0};
        for (size_t i = 0; i < nm->nkids; i++) {
            if (tk_norm_apply(&nm->kids[i], out->p, out->n, &tmp, err)) {
                tk_buf_free(&tmp);
                return -1;
            }
            tk_buf sw = *out;
            *out = tmp;
            tmp = sw;
        }
        tk_buf_free(&tmp);
        return 0;
    }
    }
    return gg_errf(err, "normalizer: bad type");
}

/* tokenizer_pretok.c — PCRE2 regexes (matched as Oniguruma's find_iter does) and
 * the pre-tokenizers: Split (Regex/String, every split behaviour, invert),
 * ByteLevel (GPT-2 bytes_to_unicode, add_prefix_space, use_regex),
 * Metaspace (replacement, prepend_scheme, split), Whitespace,
 * WhitespaceSplit, Digits, Punctuation, BertPreTokenizer, Sequence. */
#include <stdlib.h>
#include <string.h>

#include "models/tok_internal.h"

/* ---- regex ---- */

int tk_regex_compile(tk_regex *r, const char *pat, size_t n, int literal, const char *what, gg_err *err) {
    int ec;
    PCRE2_SIZE eo;
    uint32_t opt = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;
    r->code = pcre2_compile((PCRE2_SPTR)pat, n, opt, &ec, &eo, NULL);
    if (!r->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return gg_errf(err, "%s: bad regex at offset %zu: %s", what, (size_t)eo, (const char *)msg);
    }
    r->jit = pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

void tk_regex_free(tk_regex *r) {
    if (r->code) pcre2_code_free(r->code);
    r->code = NULL;
}

int tk_regex_each(const tk_regex *r, const char *s, size_t n, tk_match_fn fn, void *ctx, gg_err *err) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->code, NULL);
    if (!md) return gg_errf(err, "out of memory");
    pcre2_match_context *mc = NULL;
    pcre2_jit_stack *js = NULL;
    size_t pos = 0, last_end = (size_t)-1;
    int rc = 0;
    while (pos <= n) {
        int m = r->jit ? pcre2_jit_match(r->code, (PCRE2_SPTR)s, n, pos, 0, md, mc)
                       : pcre2_match(r->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, mc);
        if (m == PCRE2_ERROR_NOMATCH) break;
        if ((m == PCRE2_ERROR_JIT_STACKLIMIT || m == PCRE2_ERROR_MATCHLIMIT || m == PCRE2_ERROR_DEPTHLIMIT ||
             m == PCRE2_ERROR_HEAPLIMIT) &&
            !mc) {
            /* a long input: retry with a large JIT stack and no match limits */
            mc = pcre2_match_context_create(NULL);
            js = r->jit ? pcre2_jit_stack_create(32 * 1024, 512 * 1024 * 1024, NULL) : NULL;
            if (!mc || (r->jit && !js)) {
                rc = gg_errf(err, "out of memory");
                break;
            }
            if (js) pcre2_jit_stack_assign(mc, NULL, js);
            pcre2_set_match_limit(mc, UINT32_MAX);
            pcre2_set_depth_limit(mc, UINT32_MAX);
            pcre2_set_heap_limit(mc, UINT32_MAX);
            continue;
        }
        if (m < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(m, msg, sizeof msg);
            rc = gg_errf(err, "regex match failed: %s", (const char *)msg);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t st = ov[0], en = ov[1];
        if (st == en && last_end == en) {
            /* an empty match right after the previous one: skip a char */
            if (pos >= n) break;
            pos += tk_utf8_len((unsigned char)s[pos]);
            continue;
        }
        if ((rc = fn(ctx, st, en))) break;
        pos = en;
        last_end = en;
    }
    if (js) pcre2_jit_stack_free(js);
    if (mc) pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    return rc;
}

/* ---- bytes_to_unicode ---- */

const uint16_t tk_byte_to_cp[256] = {
    256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271,
    272, 273, 274, 275, 276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 286, 287,
    288, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
    48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79,
    80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 289,
    290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300, 301, 302, 303, 304, 305,
    306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321,
    322, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 323, 174, 175,
    176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191,
    192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 204, 205, 206, 207,
    208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223,
    224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
    240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255,
};

int tk_cp_to_byte(uint32_t cp) {
    if (cp >= 324) return -1;
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
    if (cp < 256) return -1;
    /* 256.. are the other bytes in increasing order */
    static const uint8_t rest[68] = {0,   1,   2,   3,   4,   5,   6,   7,   8,   9,   10,  11,  12,  13,
                                     14,  15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25,  26,  27,
                                     28,  29,  30,  31,  32,  127, 128, 129, 130, 131, 132, 133, 134, 135,
                                     136, 137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149,
                                     150, 151, 152, 153, 154, 155, 156, 157, 158, 159, 160, 173};
    return rest[cp - 256];
}

/* ---- loading ---- */

static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char WS_RE[] = "\\w+|[^\\w\\s]+";

static int behavior_of(const char *b, int *out) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (b && !strcmp(b, names[i])) {
            *out = i;
            return 0;
        }
    return -1;
}

int tk_pretok_load(tk_pretok *p, const tj_val *v, tk_arena *a, gg_err *err) {
    memset(p, 0, sizeof *p);
    const char *type = tj_str(tj_get(v, "type"));
    if (!type) return gg_errf(err, "pre_tokenizer: missing \"type\"");
    if (!strcmp(type, "Split")) {
        p->type = TP_SPLIT;
        const tj_val *pt = tj_get(v, "pattern");
        const tj_val *s = tj_get(pt, "String"), *r = tj_get(pt, "Regex");
        const tj_val *pat = s && s->type == TJ_STR ? s : r && r->type == TJ_STR ? r : NULL;
        if (!pat) return gg_errf(err, "pre_tokenizer Split: needs \"pattern\" {String|Regex}");
        if (behavior_of(tj_str(tj_get(v, "behavior")), &p->behavior))
            return gg_errf(err, "pre_tokenizer Split: unsupported behavior \"%s\"",
                           tj_str(tj_get(v, "behavior")) ? tj_str(tj_get(v, "behavior")) : "(missing)");
        p->invert = tj_bool(tj_get(v, "invert"), 0);
        return tk_regex_compile(&p->re, pat->u.s, pat->n, pat == s, "pre_tokenizer Split", err);
    }
    if (!strcmp(type, "ByteLevel")) {
        p->type = TP_BYTELEVEL;
        p->add_prefix_space = tj_bool(tj_get(v, "add_prefix_space"), 1);
        p->use_regex = tj_bool(tj_get(v, "use_regex"), 1);
        if (p->use_regex) return tk_regex_compile(&p->re, GPT2_RE, sizeof GPT2_RE - 1, 0, "ByteLevel", err);
        return 0;
    }
    if (!strcmp(type, "Metaspace")) {
        p->type = TP_METASPACE;
        const tj_val *r = tj_get(v, "replacement");
        const char *rs = r && r->type == TJ_STR ? r->u.s : "\xE2\x96\x81";
        size_t rn = r && r->type == TJ_STR ? r->n : 3;
        size_t i = 0;
        if (rn == 0 || rn > 4 || (tk_utf8_next(rs, rn, &i), i != rn))
            return gg_errf(err, "pre_tokenizer Metaspace: \"replacement\" must be one character");
        i = 0;
        p->rep_cp = tk_utf8_next(rs, rn, &i);
        memcpy(p->rep, rs, rn);
        p->rep_len = rn;
        p->split = tj_bool(tj_get(v, "split"), 1);
        const char *ps = tj_str(tj_get(v, "prepend_scheme"));
        if (ps) {
            if (!strcmp(ps, "always")) p->prepend = TK_PREPEND_ALWAYS;
            else if (!strcmp(ps, "first")) p->prepend = TK_PREPEND_FIRST;
            else if (!strcmp(ps, "never")) p->prepend = TK_PREPEND_NEVER;
            else return gg_errf(err, "pre_tokenizer Metaspace: unknown prepend_scheme \"%s\"", ps);
        } else {
            p->prepend = tj_bool(tj_get(v, "add_prefix_space"), 1) ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
        }
        return 0;
    }
    if (!strcmp(type, "Whitespace")) {
        p->type = TP_WHITESPACE;
        return tk_regex_compile(&p->re, WS_RE, sizeof WS_RE - 1, 0, "Whitespace", err);
    }
    if (!strcmp(type, "WhitespaceSplit")) {
        p->type = TP_WSSPLIT;
        return 0;
    }
    if (!strcmp(type, "BertPreTokenizer")) {
        p->type = TP_BERT;
        return 0;
    }
    if (!strcmp(type, "Digits")) {
        p->type = TP_DIGITS;
        p->individual = tj_bool(tj_get(v, "individual_digits"), 0);
        return 0;
    }
    if (!strcmp(type, "Punctuation")) {
        p->type = TP_PUNCT;
        p->behavior = TB_ISOLATED;
        const char *b = tj_str(tj_get(v, "behavior"));
        if (b && behavior_of(b, &p->behavior))
            return gg_errf(err, "pre_tokenizer Punctuation: unsupported behavior \"%s\"", b);
        return 0;
    }
    if (!strcmp(type, "Sequence")) {
        const tj_val *l = tj_get(v, "pretokenizers");
        if (!l || l->type != TJ_ARR) return gg_errf(err, "pre_tokenizer Sequence: missing \"pretokenizers\"");
        p->type = TP_SEQ;
        p->kids = calloc(l->n ? l->n : 1, sizeof *p->kids);
        if (!p->kids) return gg_errf(err, "out of memory");
        for (uint32_t i = 0; i < l->n; i++) {
            p->nkids++;
            if (tk_pretok_load(&p->kids[i], &l->u.items[i], a, err)) return -1;
        }
        return 0;
    }
    return gg_errf(err, "unsupported pre_tokenizer type \"%s\"", type);
}

void tk_pretok_free(tk_pretok *p) {
    if (!p) return;
    for (size_t i = 0; i < p->nkids; i++) tk_pretok_free(&p->kids[i]);
    free(p->kids);
    tk_regex_free(&p->re);
    memset(p, 0, sizeof *p);
}

/* ---- splitting ---- */

typedef struct span {
    size_t st, en;
    int match;
} span;
typedef struct spans {
    span *v;
    size_t n, cap;
    size_t prev; /* end of the last match (regex callback) */
} spans;

static int spans_add(spans *s, size_t st, size_t en, int match) {
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        span *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) return -1;
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n++] = (span){st, en, match};
    return 0;
}

static int re_cb(void *c, size_t st, size_t en) {
    spans *s = c;
    if (s->prev != st && spans_add(s, s->prev, st, 0)) return -1;
    if (spans_add(s, st, en, 1)) return -1;
    s->prev = en;
    return 0;
}

/* HF Pattern::find_matches for a regex. */
static int find_regex(const tk_regex *re, const char *str, size_t n, spans *sp, gg_err *err) {
    sp->n = 0;
    sp->prev = 0;
    if (!n) return spans_add(sp, 0, 0, 0) ? gg_errf(err, "out of memory") : 0;
    if (tk_regex_each(re, str, n, re_cb, sp, err)) return -1;
    if (sp->prev != n && spans_add(sp, sp->prev, n, 0)) return gg_errf(err, "out of memory");
    return 0;
}

/* HF Pattern::find_matches for a char predicate: every matching char is a match. */
typedef int (*char_pred)(uint32_t);
static int find_chars(char_pred pred, uint32_t only, const char *str, size_t n, spans *sp, gg_err *err) {
    sp->n = 0;
    if (!n) return spans_add(sp, 0, 0, 0) ? gg_errf(err, "out of memory") : 0;
    size_t last = 0;
    for (size_t i = 0; i < n;) {
        size_t st = i;
        uint32_t c = tk_utf8_next(str, n, &i);
        if (pred ? pred(c) : c == only) {
            if (last < st && spans_add(sp, last, st, 0)) return gg_errf(err, "out of memory");
            if (spans_add(sp, st, i, 1)) return gg_errf(err, "out of memory");
            last = i;
        }
    }
    if (last < n && spans_add(sp, last, n, 0)) return gg_errf(err, "out of memory");
    return 0;
}

/* NormalizedString::split: applies behaviour (and invert) to sp, appends the
 * kept, non-empty pieces of str to out. */
static int emit_split(const char *str, spans *sp, int behavior, int invert, uint32_t flags, tk_list *out,
                      gg_err *err) {
    size_t k = 0;
    if (invert)
        for (size_t i = 0; i < sp->n; i++) sp->v[i].match = !sp->v[i].match;
    /* compute (st, en, remove) in place into sp->v[0..k) */
    int prev_match = 0;
    switch (behavior) {
    case TB_ISOLATED:
        for (size_t i = 0; i < sp->n; i++) sp->v[i].match = 0;
        k = sp->n;
        break;
    case TB_REMOVED: k = sp->n; break;
    case TB_CONTIGUOUS:
        for (size_t i = 0; i < sp->n; i++) {
            span s = sp->v[i];
            if (s.match == prev_match && k) sp->v[k - 1].en = s.en;
            else sp->v[k++] = (span){s.st, s.en, 0};
            prev_match = s.match;
        }
        break;
    case TB_MERGED_PREV:
        for (size_t i = 0; i < sp->n; i++) {
            span s = sp->v[i];
            if (s.match && !prev_match && k) sp->v[k - 1].en = s.en;
            else sp->v[k++] = (span){s.st, s.en, 0};
            prev_match = s.match;
        }
        break;
    case TB_MERGED_NEXT: {
        /* walk backwards, then the result is in reverse order at the end */
        size_t w = sp->n; /* write position going down */
        for (size_t i = sp->n; i-- > 0;) {
            span s = sp->v[i];
            if (s.match && !prev_match && w < sp->n) sp->v[w].st = s.st;
            else sp->v[--w] = (span){s.st, s.en, 0};
            prev_match = s.match;
        }
        memmove(sp->v, sp->v + w, (sp->n - w) * sizeof(span));
        k = sp->n - w;
        break;
    }
    }
    for (size_t i = 0; i < k; i++) {
        span s = sp->v[i];
        if (s.match || s.en == s.st) continue; /* removed, or empty */
        if (tk_list_add(out, str + s.st, s.en - s.st, s.st == 0 ? flags : 0)) return gg_errf(err, "out of memory");
    }
    return 0;
}

static int pred_ws(uint32_t c) { return tk_is_whitespace(c); }
static int pred_bert_punct(uint32_t c) {
    return (c < 0x80 && c > 0x20 && c != 0x7F && !tk_is_alnum(c)) || tk_is_punct(c);
}
static int pred_punct(uint32_t c) { return pred_bert_punct(c); }

static int bytelevel_map(const char *s, size_t n, uint32_t flags, tk_list *out, gg_err *err) {
    if (tk_list_begin(out, flags) || tk_buf_reserve(&out->buf, 2 * n + 1)) return gg_errf(err, "out of memory");
    char *o = out->buf.p + out->buf.n;
    for (size_t i = 0; i < n; i++) o += tk_utf8_put(o, tk_byte_to_cp[(unsigned char)s[i]]);
    out->buf.n = (size_t)(o - out->buf.p);
    tk_list_end(out);
    return 0;
}

static int apply_one(const tk_pretok *p, const char *s, size_t n, uint32_t flags, tk_list *out, spans *sp,
                     tk_buf *scratch, gg_err *err) {
    switch (p->type) {
    case TP_SPLIT:
        if (find_regex(&p->re, s, n, sp, err)) return -1;
        return emit_split(s, sp, p->behavior, p->invert, flags, out, err);
    case TP_WHITESPACE:
        if (find_regex(&p->re, s, n, sp, err)) return -1;
        return emit_split(s, sp, TB_REMOVED, 1, flags, out, err);
    case TP_WSSPLIT:
        if (find_chars(pred_ws, 0, s, n, sp, err)) return -1;
        return emit_split(s, sp, TB_REMOVED, 0, flags, out, err);
    case TP_DIGITS:
        if (find_chars(tk_is_numeric, 0, s, n, sp, err)) return -1;
        return emit_split(s, sp, p->individual ? TB_ISOLATED : TB_CONTIGUOUS, 0, flags, out, err);
    case TP_PUNCT:
        if (find_chars(pred_punct, 0, s, n, sp, err)) return -1;
        return emit_split(s, sp, p->behavior, 0, flags, out, err);
    case TP_BERT: {
        tk_list mid = {0};
        int rc = find_chars(pred_ws, 0, s, n, sp, err) || emit_split(s, sp, TB_REMOVED, 0, flags, &mid, err);
        for (size_t i = 0; !rc && i < mid.n; i++)
            rc = find_chars(pred_bert_punct, 0, tk_list_str(&mid, i), mid.v[i].len, sp, err) ||
                 emit_split(tk_list_str(&mid, i), sp, TB_ISOLATED, 0, mid.v[i].flags, out, err);
        tk_list_free(&mid);
        return rc ? -1 : 0;
    }
    case TP_BYTELEVEL: {
        const char *src = s;
        size_t sn = n;
        if (p->add_prefix_space && (n == 0 || s[0] != ' ')) {
            scratch->n = 0;
            if (tk_buf_add(scratch, " ", 1) || tk_buf_add(scratch, s, n)) return gg_errf(err, "out of memory");
            src = scratch->p;
            sn = scratch->n;
        }
        if (!p->use_regex) return sn ? bytelevel_map(src, sn, flags, out, err) : 0;
        if (find_regex(&p->re, src, sn, sp, err)) return -1;
        for (size_t i = 0; i < sp->n; i++) {
            if (sp->v[i].en == sp->v[i].st) continue;
            if (bytelevel_map(src + sp->v[i].st, sp->v[i].en - sp->v[i].st, sp->v[i].st == 0 ? flags : 0, out, err))
                return -1;
        }
        return 0;
    }
    case TP_METASPACE: {
        scratch->n = 0;
        int pre = 0;
        if (p->prepend == TK_PREPEND_ALWAYS || (p->prepend == TK_PREPEND_FIRST && (flags & TK_AT_START))) {
            /* prepend unless it already starts with the replacement (a space counts: it becomes one) */
            pre = !(n && (s[0] == ' ' || (n >= p->rep_len && !memcmp(s, p->rep, p->rep_len))));
        }
        if (pre && tk_buf_add(scratch, p->rep, p->rep_len)) return gg_errf(err, "out of memory");
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ' ? tk_buf_add(scratch, p->rep, p->rep_len) : tk_buf_add(scratch, s + i, 1))
                return gg_errf(err, "out of memory");
        }
        if (!p->split) {
            if (scratch->n && tk_list_add(out, scratch->p, scratch->n, flags)) return gg_errf(err, "out of memory");
            return 0;
        }
        if (find_chars(NULL, p->rep_cp, scratch->p, scratch->n, sp, err)) return -1;
        return emit_split(scratch->p, sp, TB_MERGED_NEXT, 0, flags, out, err);
    }
    }
    return gg_errf(err, "pre_tokenizer: bad type");
}

int tk_pretok_apply(const tk_pretok *p, tk_list *io, tk_list *tmp, gg_err *err) {
    if (p->type == TP_SEQ) {
        for (size_t i = 0; i < p->nkids; i++)
            if (tk_pretok_apply(&p->kids[i], io, tmp, err)) return -1;
        return 0;
    }
    spans sp = {0};
    tk_buf scratch = {0};
    int rc = 0;
    tk_list_clear(tmp);
    for (size_t i = 0; i < io->n && !rc; i++)
        rc = apply_one(p, tk_list_str(io, i), io->v[i].len, io->v[i].flags, tmp, &sp, &scratch, err);
    free(sp.v);
    tk_buf_free(&scratch);
    if (rc) return -1;
    tk_list sw = *io;
    *io = *tmp;
    *tmp = sw;
    return 0;
}

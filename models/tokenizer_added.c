/* tokenizer_added.c — added tokens: a first-byte index (longest first) that finds
 * leftmost-longest matches as HF's aho-corasick does, and the split of a
 * text into token / text segments with single_word, lstrip and rstrip
 * handled as HF's AddedVocabulary::find_matches. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "models/tok_internal.h"

static size_t pat_len(const tk_added *a, int normalized) { return normalized ? a->norm_len : a->len; }
static const char *pat_str(const tk_added *a, int normalized) { return normalized ? a->norm : a->content; }

int tk_matcher_build(tk_matcher *m, const struct gg_tokenizer *t, int normalized) {
    memset(m, 0, sizeof *m);
    size_t n = 0;
    for (size_t i = 0; i < t->nadded; i++)
        if (!!t->added[i].normalized == normalized && pat_len(&t->added[i], normalized)) n++;
    m->idx = calloc(n ? n : 1, sizeof *m->idx);
    if (!m->idx) return -1;
    /* counting sort by first byte, then by length descending within a byte
     * (ties: earlier token first), so the first hit at a position is the
     * longest */
    uint32_t cnt[257] = {0};
    for (size_t i = 0; i < t->nadded; i++)
        if (!!t->added[i].normalized == normalized && pat_len(&t->added[i], normalized))
            cnt[(unsigned char)pat_str(&t->added[i], normalized)[0] + 1]++;
    for (int c = 0; c < 256; c++) cnt[c + 1] += cnt[c];
    memcpy(m->start, cnt, sizeof m->start);
    for (size_t i = 0; i < t->nadded; i++) {
        if (!(!!t->added[i].normalized == normalized && pat_len(&t->added[i], normalized))) continue;
        unsigned c = (unsigned char)pat_str(&t->added[i], normalized)[0];
        m->idx[cnt[c]++] = (uint32_t)i;
    }
    for (int c = 0; c < 256; c++) {
        /* insertion sort (stable) by length descending */
        for (uint32_t i = m->start[c] + 1; i < m->start[c + 1]; i++) {
            uint32_t x = m->idx[i];
            uint32_t j = i;
            while (j > m->start[c] && pat_len(&t->added[m->idx[j - 1]], normalized) < pat_len(&t->added[x], normalized)) {
                m->idx[j] = m->idx[j - 1];
                j--;
            }
            m->idx[j] = x;
        }
    }
    m->n = n;
    return 0;
}

void tk_matcher_free(tk_matcher *m) {
    free(m->idx);
    memset(m, 0, sizeof *m);
}

static int seg_add(tk_segs *o, size_t off, size_t len, int32_t id) {
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 32;
        tk_seg *nv = realloc(o->v, nc * sizeof *nv);
        if (!nv) return -1;
        o->v = nv;
        o->cap = nc;
    }
    o->v[o->n++] = (tk_seg){off, len, id};
    return 0;
}

/* Unicode \w as Rust's regex crate has it: Alphabetic, marks, Nd, Pc,
 * Join_Control (Alphabetic approximated by L*, Nl and the circled letters). */
static int is_word_char(uint32_t c) {
    if (c < 0x80) return c == '_' || tk_is_alnum(c);
    if (c == 0x200C || c == 0x200D || (c >= 0x24B6 && c <= 0x24E9)) return 1;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_ME) || k == UTF8PROC_CATEGORY_ND ||
           k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_PC;
}

static uint32_t last_char(const char *s, size_t n) {
    size_t j = n - 1;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
    return tk_utf8_next(s, n, &j);
}

int tk_added_split(const struct gg_tokenizer *t, const tk_matcher *m, int normalized, const char *s, size_t n,
                   tk_segs *out) {
    size_t start_offset = 0;
    if (m->n) {
        for (size_t i = 0; i < n;) {
            unsigned c = (unsigned char)s[i];
            const tk_added *hit = NULL;
            for (uint32_t k = m->start[c]; k < m->start[c + 1]; k++) {
                const tk_added *a = &t->added[m->idx[k]];
                size_t pl = pat_len(a, normalized);
                if (pl <= n - i && !memcmp(s + i, pat_str(a, normalized), pl)) {
                    hit = a;
                    break;
                }
            }
            if (!hit) {
                i++;
                continue;
            }
            size_t st = i, en = i + pat_len(hit, normalized);
            i = en; /* the automaton resumes after the match, kept or not */
            if (hit->single_word) {
                int start_space = st == 0 || !is_word_char(last_char(s, st));
                size_t q = en;
                int stop_space = en == n || !is_word_char(tk_utf8_next(s, n, &q));
                if (!start_space || !stop_space) continue;
            }
            if (st < start_offset) continue; /* inside a previous rstrip (whitespace tokens only) */
            if (hit->lstrip) {
                size_t ns = st;
                while (ns > 0) {
                    size_t j = ns - 1;
                    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
                    size_t q = j;
                    if (!tk_is_whitespace(tk_utf8_next(s, n, &q))) break;
                    ns = j;
                }
                st = ns > start_offset ? ns : start_offset;
            }
            if (hit->rstrip) {
                while (en < n) {
                    size_t q = en;
                    if (!tk_is_whitespace(tk_utf8_next(s, n, &q))) break;
                    en = q;
                }
                if (en > i) i = en;
            }
            if (start_offset < st && seg_add(out, start_offset, st - start_offset, -1)) return -1;
            if (seg_add(out, st, en - st, hit->id)) return -1;
            start_offset = en;
        }
    }
    if (start_offset != n && seg_add(out, start_offset, n - start_offset, -1)) return -1;
    return 0;
}

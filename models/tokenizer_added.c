/* tokenizer_added.c — added tokens: the patterns in byte order, searched
 * by prefix range, which finds leftmost-longest matches as HF's
 * aho-corasick does, and the split of a
 * text into token / text segments with single_word, lstrip and rstrip
 * handled as HF's AddedVocabulary::find_matches. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "models/tok_internal.h"

static size_t pat_len(const tk_added *a, int normalized) { return normalized ? a->norm_len : a->len; }
static const char *pat_str(const tk_added *a, int normalized) { return normalized ? a->norm : a->content; }

typedef struct pat {
    const char *s;
    size_t len;
    uint32_t idx;
} pat;

static int pat_cmp(const void *x, const void *y) {
    const pat *a = x, *b = y;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, n);
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx; /* duplicates: the earlier first */
}

int tk_matcher_build(tk_matcher *m, const struct gg_tokenizer *t, int normalized) {
    memset(m, 0, sizeof *m);
    size_t n = 0;
    for (size_t i = 0; i < t->nadded; i++)
        if (!!t->added[i].normalized == normalized && pat_len(&t->added[i], normalized)) n++;
    m->idx = calloc(n ? n : 1, sizeof *m->idx);
    pat *ps = calloc(n ? n : 1, sizeof *ps);
    if (!m->idx || !ps) {
        free(ps);
        return -1;
    }
    /* patterns in byte order: the ones sharing a prefix form a range, and
     * within it an exact prefix comes first */
    size_t k = 0;
    for (size_t i = 0; i < t->nadded; i++)
        if (!!t->added[i].normalized == normalized && pat_len(&t->added[i], normalized))
            ps[k++] = (pat){pat_str(&t->added[i], normalized), pat_len(&t->added[i], normalized), (uint32_t)i};
    qsort(ps, n, sizeof *ps, pat_cmp);
    uint32_t cnt[257] = {0};
    for (size_t i = 0; i < n; i++) {
        m->idx[i] = ps[i].idx;
        cnt[(unsigned char)ps[i].s[0] + 1]++;
    }
    for (int c = 0; c < 256; c++) cnt[c + 1] += cnt[c];
    memcpy(m->start, cnt, sizeof m->start);
    free(ps);
    m->n = n;
    return 0;
}

/* The longest pattern that starts at s[0..n), or NULL: the range of
 * patterns agreeing with s is narrowed one byte at a time (binary search),
 * so a position costs O(depth · log patterns), whatever the count. */
static const tk_added *longest_at(const struct gg_tokenizer *t, const tk_matcher *m, int normalized, const char *s,
                                  size_t n) {
    unsigned c0 = (unsigned char)s[0];
    size_t lo = m->start[c0], hi = m->start[c0 + 1];
    const tk_added *best = NULL;
    for (size_t k = 0; lo < hi; k++) {
        /* [lo, hi) = the patterns whose first k + 1 bytes are s[0..k] */
        const tk_added *f = &t->added[m->idx[lo]];
        if (pat_len(f, normalized) == k + 1) {
            best = f; /* an exact match of length k + 1 (the earliest duplicate) */
            while (lo < hi && pat_len(&t->added[m->idx[lo]], normalized) == k + 1) lo++;
        }
        if (k + 1 >= n || lo >= hi) break;
        unsigned char c = (unsigned char)s[k + 1];
        size_t a = lo, b = hi; /* first pattern with byte k+1 >= c */
        while (a < b) {
            size_t mid = (a + b) / 2;
            if ((unsigned char)pat_str(&t->added[m->idx[mid]], normalized)[k + 1] < c) a = mid + 1;
            else b = mid;
        }
        size_t e = a, f2 = hi; /* first pattern with byte k+1 > c */
        while (e < f2) {
            size_t mid = (e + f2) / 2;
            if ((unsigned char)pat_str(&t->added[m->idx[mid]], normalized)[k + 1] <= c) e = mid + 1;
            else f2 = mid;
        }
        lo = a;
        hi = e;
    }
    return best;
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
            const tk_added *hit = m->start[c] < m->start[c + 1] ? longest_at(t, m, normalized, s + i, n - i) : NULL;
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

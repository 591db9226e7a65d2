/* tok_internal.h — private types shared by the tokenizer's files
 * (models/tokenizer.c and models/tokenizer_{json,text,added,normalize,pretok,bpe,decode}.c).
 * Not a public header.
 *
 * Data flow of an encode: lossy UTF-8 → added tokens (raw) → normalizer →
 * added tokens (normalized) → pre-tokenizer → BPE → post-processor.
 * Strings inside the pipeline are (pointer, length) byte ranges; every
 * stage writes a fresh tk_list so no stage ever aliases another's memory. */
#ifndef GG_TOK_INTERNAL_H
#define GG_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ggfmt/err.h"

/* Zeroed memory for large tables (mmap'd, pre-faulted, from 256 KB up);
 * free with the same size. (tokenizer_text.c) */
void *tk_big_calloc(size_t n);
void tk_big_free(void *p, size_t n);

/* ---- arena (tokenizer_json.c) ---- */
typedef struct tk_arena_blk tk_arena_blk;
typedef struct tk_arena {
    tk_arena_blk *head;
} tk_arena;
void *tk_arena_alloc(tk_arena *a, size_t n); /* 8-aligned, NULL on OOM */
char *tk_arena_strndup(tk_arena *a, const char *s, size_t n);
void tk_arena_free(tk_arena *a);

/* ---- JSON (tokenizer_json.c): a small DOM parser; the big tables ("vocab",
 * "merges") stay lazy (jansson needs ~300 ms to build a DOM of a 9 MB
 * tokenizer.json on the build VM) ---- */
enum { TJ_NULL, TJ_FALSE, TJ_TRUE, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ, TJ_LAZY_ARR, TJ_LAZY_OBJ };
typedef struct tj_val tj_val;
struct tj_val {
    uint32_t type;
    uint32_t n;           /* bytes of a string; items of an array; pairs of an object;
                             strings inside (keys included) of a TJ_LAZY_* */
    union {
        const char *s;    /* TJ_STR: NUL-terminated, may hold NULs (use n) */
        double num;       /* TJ_NUM */
        tj_val *items;    /* TJ_ARR: n values; TJ_OBJ: 2n values, key, value, ... */
        struct {
            const char *b, *e; /* TJ_LAZY_*: the source text of the container */
        } raw;
    } u;
};
/* Parses json[0..len) into values allocated in arena; error names the byte
 * offset. Lazy values point into json, which must outlive them. */
int tj_parse(tk_arena *a, const char *json, size_t len, tj_val **out, gg_err *err);
const tj_val *tj_get(const tj_val *obj, const char *key); /* NULL if absent or not an object */
const char *tj_str(const tj_val *v);                      /* NULL unless a string */
int tj_bool(const tj_val *v, int dflt);                   /* dflt unless true/false */
int tj_is_null(const tj_val *v);                          /* absent or null */

/* ---- text utilities (tokenizer_text.c) ---- */
typedef struct tk_buf {
    char *p;
    size_t n, cap;
} tk_buf;

/* Reading a lazy container: entries of an object of numbers ("vocab"), or
 * elements of an array of "a b" strings / ["a", "b"] pairs ("merges").
 * Strings are valid until the next call. 1 = an entry, 0 = end, -1 = an
 * entry of another shape or bad JSON (the parser only skipped these
 * containers: the iterators are what validates them). */
typedef struct tj_iter {
    const char *s, *e;
    int first;
    char close;
    tk_buf k, b;
} tj_iter;
void tj_iter_init(tj_iter *it, const tj_val *lazy);
void tj_iter_free(tj_iter *it);
int tj_iter_entry(tj_iter *it, const char **key, size_t *klen, int64_t *num);
/* joined: the element was one string (returned in a; b is NULL). */
int tj_iter_pair(tj_iter *it, const char **a, size_t *an, const char **b, size_t *bn, int *joined);
int tk_buf_reserve(tk_buf *b, size_t extra); /* 0 / -1 on OOM */
int tk_buf_add(tk_buf *b, const void *s, size_t n);
void tk_buf_free(tk_buf *b);

/* A list of strings stored back to back in one buffer. flags: TK_AT_START
 * marks the piece that begins at offset 0 of the original input. */
#define TK_AT_START 1u
typedef struct tk_piece {
    size_t off, len;
    uint32_t flags;
} tk_piece;
typedef struct tk_list {
    tk_buf buf;
    tk_piece *v;
    size_t n, cap;
} tk_list;
int tk_list_add(tk_list *l, const char *s, size_t n, uint32_t flags);
/* Start a piece at the end of the buffer; text appended with tk_buf_add goes into it. */
int tk_list_begin(tk_list *l, uint32_t flags);
void tk_list_end(tk_list *l); /* closes the piece begun by tk_list_begin */
void tk_list_clear(tk_list *l);
void tk_list_free(tk_list *l);
static inline const char *tk_list_str(const tk_list *l, size_t i) { return l->buf.p + l->v[i].off; }

/* UTF-8 of valid input (the pipeline sanitises first). */
uint32_t tk_utf8_next(const char *s, size_t n, size_t *i); /* decodes at *i, advances */
size_t tk_utf8_put(char *out, uint32_t cp);                 /* 1..4 bytes */
static inline size_t tk_utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}
/* Rust's String::from_utf8_lossy: each maximal invalid subpart → U+FFFD. */
int tk_utf8_lossy(const char *s, size_t n, tk_buf *out);
int tk_is_whitespace(uint32_t cp);  /* Rust char::is_whitespace */
int tk_is_alnum(uint32_t cp);       /* Rust char::is_alphanumeric (approx. by category) */
int tk_is_numeric(uint32_t cp);     /* Rust char::is_numeric: Nd, Nl, No */
int tk_is_punct(uint32_t cp);       /* Unicode P* */

/* string → id hash map (open addressing; keys are borrowed pointers). */
typedef struct tk_strmap {
    uint64_t *slot; /* (hash tag << 32) | (id + 1); 0 = empty */
    size_t mask;
    const char *const *keys; /* by id */
    const uint32_t *lens;    /* by id */
} tk_strmap;
static inline uint64_t tk_hash(const char *s, size_t n) {
    /* FNV-1a over 8-byte words, then a final mix */
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    memcpy(&w, s + i, n - i);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}
int tk_strmap_init(tk_strmap *m, size_t expect, const char *const *keys, const uint32_t *lens);
/* Inserts id (its key is keys[id]); replaces an existing equal key. */
void tk_strmap_put(tk_strmap *m, uint32_t id);
void tk_strmap_put_h(tk_strmap *m, uint32_t id, uint64_t hash); /* hash = tk_hash(key) */
int32_t tk_strmap_get(const tk_strmap *m, const char *s, size_t n);
int32_t tk_strmap_get_h(const tk_strmap *m, const char *s, size_t n, uint64_t hash); /* hash = tk_hash(s, n) */
/* Prefetches the home slot of hash (key = 0), or the key it holds (key = 1). */
static inline void tk_strmap_prefetch(const tk_strmap *m, uint64_t h, int key) {
    const uint64_t *s = &m->slot[h & m->mask];
    if (!key) {
        __builtin_prefetch(s);
        return;
    }
    uint64_t v = *s;
    if (v) __builtin_prefetch(m->keys[(uint32_t)v - 1]);
}
void tk_strmap_free(tk_strmap *m);

/* ---- regex (tokenizer_pretok.c) ---- */
typedef struct tk_regex {
    pcre2_code *code;
    int jit;
} tk_regex;
/* Compile pattern (UTF | UCP, JIT if available); literal: escape it. */
int tk_regex_compile(tk_regex *r, const char *pat, size_t n, int literal, const char *what, gg_err *err);
void tk_regex_free(tk_regex *r);
/* Finds matches of r in s[0..n) as Oniguruma's find_iter does (after an
 * empty match the search resumes one character later). Calls fn for each;
 * returns 0, or -1 with err on a matcher failure. */
typedef int (*tk_match_fn)(void *ctx, size_t start, size_t end);
int tk_regex_each(const tk_regex *r, const char *s, size_t n, tk_match_fn fn, void *ctx, gg_err *err);

/* ---- normalizers (tokenizer_normalize.c) ---- */
enum { TN_NFC, TN_NFD, TN_NFKC, TN_NFKD, TN_LOWER, TN_PREPEND, TN_REPLACE, TN_STRIP, TN_SEQ };
typedef struct tk_norm tk_norm;
struct tk_norm {
    int type;
    char *str; size_t str_len;     /* PREPEND: prepend; REPLACE: content */
    tk_regex re;                   /* REPLACE */
    int left, right;               /* STRIP */
    tk_norm *kids; size_t nkids;   /* SEQ */
};
int tk_norm_load(tk_norm *nm, const tj_val *v, tk_arena *a, gg_err *err);
void tk_norm_free(tk_norm *nm);
/* in → out (out is cleared first). */
int tk_norm_apply(const tk_norm *nm, const char *in, size_t n, tk_buf *out, gg_err *err);

/* ---- pre-tokenizers (tokenizer_pretok.c) ---- */
enum { TP_SPLIT, TP_BYTELEVEL, TP_METASPACE, TP_WHITESPACE, TP_WSSPLIT, TP_DIGITS, TP_PUNCT, TP_BERT, TP_SEQ };
enum { TB_REMOVED, TB_ISOLATED, TB_MERGED_PREV, TB_MERGED_NEXT, TB_CONTIGUOUS };
typedef struct tk_pretok tk_pretok;
struct tk_pretok {
    int type;
    tk_regex re;               /* SPLIT, BYTELEVEL (use_regex), WHITESPACE */
    int behavior, invert;      /* SPLIT, PUNCT */
    int add_prefix_space, use_regex; /* BYTELEVEL */
    char rep[8]; size_t rep_len; uint32_t rep_cp; int prepend; int split; /* METASPACE */
    int individual;            /* DIGITS */
    tk_pretok *kids; size_t nkids;
};
enum { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER };
int tk_pretok_load(tk_pretok *p, const tj_val *v, tk_arena *a, gg_err *err);
void tk_pretok_free(tk_pretok *p);
/* Splits every piece of *io (pieces → pieces); tmp is scratch. */
int tk_pretok_apply(const tk_pretok *p, tk_list *io, tk_list *tmp, gg_err *err);

/* GPT-2 bytes_to_unicode: byte → code point, and the reverse (-1 if none). */
extern const uint16_t tk_byte_to_cp[256];
int tk_cp_to_byte(uint32_t cp);

/* ---- BPE (tokenizer_bpe.c) ---- */
typedef struct tk_bpe {
    uint64_t *tab;              /* (left, right, rank + 1) packed; see tokenizer_bpe.c */
    uint32_t *merged;           /* merged id by rank */
    size_t merged_cap;
    size_t mask, n;
    int32_t unk_id;             /* -1 if none */
    int fuse_unk, byte_fallback, ignore_merges;
    char *prefix; size_t prefix_len; /* continuing_subword_prefix */
    char *suffix; size_t suffix_len; /* end_of_word_suffix */
    int32_t byte_ids[256];      /* <0xXX> ids, -1 if absent */
} tk_bpe;
struct gg_tokenizer;
int tk_bpe_load(struct gg_tokenizer *t, const tj_val *model, gg_err *err);
void tk_bpe_free(tk_bpe *b);
/* Appends the ids of word s[0..n) to ids. Scratch is per call. */
typedef struct tk_ids {
    int32_t *v;
    size_t n, cap;
} tk_ids;
int tk_ids_add(tk_ids *ids, int32_t id);
typedef struct tk_bpe_scratch {
    void *sym, *heap;
    size_t sym_cap, heap_cap;
    tk_buf tmp;
} tk_bpe_scratch;
int tk_bpe_word(const struct gg_tokenizer *t, const char *s, size_t n, tk_ids *ids, tk_bpe_scratch *sc,
                gg_err *err);
void tk_bpe_scratch_free(tk_bpe_scratch *sc);

/* ---- decoders (tokenizer_decode.c) ---- */
enum { TD_BYTELEVEL, TD_REPLACE, TD_BYTEFALLBACK, TD_FUSE, TD_STRIP, TD_METASPACE, TD_BPE, TD_SEQ };
typedef struct tk_dec tk_dec;
struct tk_dec {
    int type;
    tk_regex re;                 /* REPLACE */
    char *pat; size_t pat_len;   /* BPE: suffix */
    char *content; size_t content_len; /* REPLACE */
    uint32_t strip_cp; size_t start, stop; /* STRIP */
    uint32_t rep_cp; int prepend;          /* METASPACE */
    tk_dec *kids; size_t nkids;
};
int tk_dec_load(tk_dec *d, const tj_val *v, tk_arena *a, gg_err *err);
void tk_dec_free(tk_dec *d);
/* Runs the decoder chain over the token strings in *io (tokens → tokens). */
int tk_dec_apply(const tk_dec *d, tk_list *io, tk_list *tmp, gg_err *err);

/* ---- added tokens (tokenizer_added.c) ---- */
typedef struct tk_added {
    char *content; size_t len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
    char *norm; size_t norm_len; /* content after the normalizer (normalized tokens) */
} tk_added;
typedef struct tk_matcher {
    uint32_t *idx;   /* indices into t->added, their patterns in byte order */
    /* start[c]..start[c + 1]: the patterns beginning with byte c */
    uint32_t start[257];
    size_t n;
} tk_matcher;
/* A segment of the input: a token id (id >= 0) or text (id < 0). */
typedef struct tk_seg {
    size_t off, len;
    int32_t id;
} tk_seg;
typedef struct tk_segs {
    tk_seg *v;
    size_t n, cap;
} tk_segs;
int tk_matcher_build(tk_matcher *m, const struct gg_tokenizer *t, int normalized);
void tk_matcher_free(tk_matcher *m);
/* Splits s[0..n) on added tokens as HF's AddedVocabulary::find_matches;
 * appends segments (offsets relative to s) to out. */
int tk_added_split(const struct gg_tokenizer *t, const tk_matcher *m, int normalized, const char *s, size_t n,
                   tk_segs *out);

/* ---- the tokenizer ---- */
enum { TPP_NONE, TPP_TEMPLATE, TPP_BYTELEVEL, TPP_SEQ, TPP_ROBERTA };
typedef struct tk_post tk_post;
struct tk_post {
    int type;
    int32_t *pre, *post; size_t npre, npost; /* TEMPLATE/ROBERTA: ids before / after $A */
    tk_post *kids; size_t nkids;
};

struct gg_tokenizer {
    tk_arena arena;        /* the DOM of the small parts of tokenizer.json, pieces, strings */
    size_t vocab_size;     /* max id + 1 */
    char **piece;          /* by id, NULL where no token (a normalized added token:
                              its normalized form, as HF's id_to_token) */
    uint32_t *piece_len;
    uint8_t *special;      /* by id */
    tk_strmap vocab;       /* model vocabulary: piece → id */
    tk_strmap all;         /* added tokens by content → index in added[] */
    const char **akeys;    /* by added index: content */
    uint32_t *alens;
    tk_bpe bpe;
    int has_norm, has_pretok, has_dec;
    tk_norm norm;
    tk_pretok pretok;
    tk_dec dec;
    tk_post post;
    tk_added *added;
    size_t nadded;
    tk_matcher m_raw, m_norm;
    char *bos, *eos, *chat_template;
    int32_t bos_id, eos_id;
    int add_bos, add_eos;  /* from tokenizer_config.json (-1 absent); informative */
};

#endif

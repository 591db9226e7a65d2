/* tokenizer_bpe.c — the BPE model: merges ("a b" strings or ["a","b"] arrays)
 * in a hash table (left id, right id) → (rank, merged id), and the merge
 * of one word with a binary heap exactly as HF's Word::merge_all (lowest
 * rank first, then leftmost); ignore_merges, byte_fallback, unk_token,
 * fuse_unk, continuing_subword_prefix, end_of_word_suffix. No cache. */
#include <stdlib.h>
#include <string.h>

#include "models/tok_internal.h"


/* A slot packs left id (21 bits), right id (21 bits) and rank + 1 (22
 * bits) into 8 bytes; 0 = empty. The merged id is merged[rank]. */
#define PAIR_BITS 21
#define RANK_BITS 22
#define MAX_ID ((1u << PAIR_BITS) - 1)
#define MAX_RANK ((1u << RANK_BITS) - 2)

static inline size_t mhash(uint64_t k, size_t mask) { return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 32) & mask; }

static void merge_put(tk_bpe *b, uint32_t l, uint32_t r, uint32_t rank, uint32_t id) {
    uint64_t pair = (uint64_t)l << PAIR_BITS | r;
    size_t i = mhash(pair, b->mask);
    b->merged[rank] = id;
    for (;; i = (i + 1) & b->mask) {
        uint64_t s = b->tab[i];
        if (!s || s >> RANK_BITS == pair) { /* a later duplicate wins, as in HF's HashMap collect */
            b->tab[i] = pair << RANK_BITS | (rank + 1);
            b->n += !s;
            return;
        }
    }
}

static inline void merge_prefetch(const tk_bpe *b, uint32_t l, uint32_t r) {
    __builtin_prefetch(&b->tab[mhash((uint64_t)l << PAIR_BITS | r, b->mask)]);
}

static inline int merge_get(const tk_bpe *b, uint32_t l, uint32_t r, uint32_t *rank, uint32_t *id) {
    if ((l | r) > MAX_ID) return 0;
    uint64_t pair = (uint64_t)l << PAIR_BITS | r;
    size_t i = mhash(pair, b->mask);
    for (;; i = (i + 1) & b->mask) {
        uint64_t s = b->tab[i];
        if (!s) return 0;
        if (s >> RANK_BITS == pair) {
            *rank = (uint32_t)(s & ((1u << RANK_BITS) - 1)) - 1;
            *id = b->merged[*rank];
            return 1;
        }
    }
}

static char *dupn(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

int tk_bpe_load(struct gg_tokenizer *t, const tj_val *model, gg_err *err) {
    tk_bpe *b = &t->bpe;
    b->unk_id = -1;
    for (int i = 0; i < 256; i++) {
        char name[8];
        static const char hx[] = "0123456789ABCDEF";
        memcpy(name, "<0x", 3);
        name[3] = hx[i >> 4];
        name[4] = hx[i & 15];
        name[5] = '>';
        b->byte_ids[i] = tk_strmap_get(&t->vocab, name, 6);
    }
    const tj_val *dr = tj_get(model, "dropout");
    if (dr && dr->type == TJ_NUM && dr->u.num != 0.0)
        return gg_errf(err, "model BPE: dropout %g is not supported", dr->u.num);
    const char *unk = tj_str(tj_get(model, "unk_token"));
    if (unk) b->unk_id = tk_strmap_get(&t->vocab, unk, strlen(unk));
    if (unk && b->unk_id < 0) b->unk_id = -2; /* named but absent: an error when needed */
    b->fuse_unk = tj_bool(tj_get(model, "fuse_unk"), 0);
    b->byte_fallback = tj_bool(tj_get(model, "byte_fallback"), 0);
    b->ignore_merges = tj_bool(tj_get(model, "ignore_merges"), 0);
    const tj_val *pf = tj_get(model, "continuing_subword_prefix"), *sf = tj_get(model, "end_of_word_suffix");
    if (pf && pf->type == TJ_STR && pf->n) {
        b->prefix = dupn(pf->u.s, pf->n);
        b->prefix_len = pf->n;
    }
    if (sf && sf->type == TJ_STR && sf->n) {
        b->suffix = dupn(sf->u.s, sf->n);
        b->suffix_len = sf->n;
    }
    if ((pf && pf->type == TJ_STR && pf->n && !b->prefix) || (sf && sf->type == TJ_STR && sf->n && !b->suffix))
        return gg_errf(err, "out of memory");

    const tj_val *mg = tj_get(model, "merges");
    if (mg && mg->type != TJ_LAZY_ARR && mg->type != TJ_NULL)
        return gg_errf(err, "model BPE: \"merges\" is not an array");
    tj_iter it;
    const char *l, *r;
    size_t ln, rn, nm = 0;
    int joined;
    if (mg && mg->type == TJ_LAZY_ARR) {
        /* capacity: an upper bound on the element count from the number of
         * strings (1 per "a b" element, 2 per ["a", "b"]) */
        const char *f = mg->u.raw.b + 1;
        while (f < mg->u.raw.e && (*f == ' ' || *f == '\n' || *f == '\r' || *f == '\t')) f++;
        nm = *f == '[' ? mg->n / 2 + 1 : (size_t)mg->n + 1;
    }
    size_t cap = 16;
    while (cap < nm + nm / 2 + 2) cap *= 2;
    if (nm > MAX_RANK || t->vocab_size > MAX_ID)
        return gg_errf(err, "model BPE: too large (%zu merges, %zu tokens; at most %u and %u)", nm, t->vocab_size,
                       MAX_RANK, MAX_ID);
    b->tab = tk_big_calloc(cap * sizeof *b->tab);
    b->merged = tk_big_calloc((nm ? nm : 1) * sizeof *b->merged);
    b->merged_cap = nm ? nm : 1;
    if (!b->tab || !b->merged) return gg_errf(err, "out of memory");
    b->mask = cap - 1;
    if (!nm) return 0;
    /* Merges are read in batches: the three lookups of each (left, right,
     * merged) hash-probe a 2 MB table and compare against pieces spread
     * over the arena, so the batch prefetches the slots, then the pieces,
     * before the lookups proper (3x faster loading of a 280k-merge file). */
    enum { BATCH = 32 };
    struct pend {
        size_t off[3], n[3];
        uint64_t h[3];
        int32_t id[3];
    } pd[BATCH];
    tk_buf cat = {0};
    tj_iter_init(&it, mg);
    size_t i = 0;
    int rc = 1, fail = 0;
    while (rc > 0 && !fail) {
        size_t k = 0;
        cat.n = 0;
        for (; k < BATCH && (rc = tj_iter_pair(&it, &l, &ln, &r, &rn, &joined)) == 1; k++) {
            if (i + k + 2 >= cap) {
                rc = -1;
                break;
            }
            if (joined) {
                const char *sp = memchr(l, ' ', ln);
                if (!sp || memchr(sp + 1, ' ', ln - (size_t)(sp + 1 - l))) {
                    gg_errf(err, "model BPE: merge %zu \"%.*s\" is not two tokens separated by a space", i + k,
                            (int)(ln > 80 ? 80 : ln), l);
                    fail = 1;
                    break;
                }
                r = sp + 1;
                rn = ln - (size_t)(r - l);
                ln = (size_t)(sp - l);
            }
            /* merged = l + r without the continuing-subword prefix of r */
            size_t skip =
                b->prefix_len && rn >= b->prefix_len && !memcmp(r, b->prefix, b->prefix_len) ? b->prefix_len : 0;
            struct pend *q = &pd[k];
            q->off[0] = cat.n;
            q->n[0] = ln;
            q->off[1] = cat.n + ln;
            q->n[1] = rn;
            q->off[2] = cat.n + ln + rn;
            q->n[2] = ln + rn - skip;
            if (tk_buf_add(&cat, l, ln) || tk_buf_add(&cat, r, rn) || tk_buf_add(&cat, l, ln) ||
                tk_buf_add(&cat, r + skip, rn - skip)) {
                gg_errf(err, "out of memory");
                fail = 1;
                break;
            }
        }
        if (fail) break;
        if (rc < 0) {
            gg_errf(err, "model BPE: merge %zu is neither \"a b\" nor [\"a\", \"b\"]", i + k);
            fail = 1;
            break;
        }
        for (size_t j = 0; j < k; j++)
            for (int w = 0; w < 3; w++) {
                pd[j].h[w] = tk_hash(cat.p + pd[j].off[w], pd[j].n[w]);
                tk_strmap_prefetch(&t->vocab, pd[j].h[w], 0);
            }
        for (size_t j = 0; j < k; j++)
            for (int w = 0; w < 3; w++) tk_strmap_prefetch(&t->vocab, pd[j].h[w], 1);
        for (size_t j = 0; j < k && !fail; j++) {
            for (int w = 0; w < 3; w++)
                pd[j].id[w] = tk_strmap_get_h(&t->vocab, cat.p + pd[j].off[w], pd[j].n[w], pd[j].h[w]);
            for (int w = 0; w < 3 && !fail; w++) {
                if (pd[j].id[w] >= 0) continue;
                gg_errf(err, "model BPE: merge %zu: %stoken \"%.*s\" is not in the vocabulary", i + j,
                        w == 2 ? "merged " : "", (int)(pd[j].n[w] > 80 ? 80 : pd[j].n[w]), cat.p + pd[j].off[w]);
                fail = 1;
            }
            if (!fail) merge_prefetch(b, (uint32_t)pd[j].id[0], (uint32_t)pd[j].id[1]);
        }
        for (size_t j = 0; j < k && !fail; j++)
            merge_put(b, (uint32_t)pd[j].id[0], (uint32_t)pd[j].id[1], (uint32_t)(i + j), (uint32_t)pd[j].id[2]);
        i += k;
    }
    tj_iter_free(&it);
    tk_buf_free(&cat);
    return fail ? -1 : 0;
}

void tk_bpe_free(tk_bpe *b) {
    tk_big_free(b->tab, (b->mask + 1) * sizeof *b->tab);
    tk_big_free(b->merged, b->merged_cap * sizeof *b->merged);
    free(b->prefix);
    free(b->suffix);
    memset(b, 0, sizeof *b);
}

int tk_ids_add(tk_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t nc = ids->cap ? ids->cap * 2 : 256;
        int32_t *nv = realloc(ids->v, nc * sizeof *nv);
        if (!nv) return -1;
        ids->v = nv;
        ids->cap = nc;
    }
    ids->v[ids->n++] = id;
    return 0;
}

typedef struct sym {
    int32_t id;
    int32_t prev, next;
    uint32_t len; /* 0 = merged away */
} sym;

typedef struct hent {
    uint32_t rank, pos, id;
} hent;

static inline int hless(hent a, hent b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void hpush(hent *h, size_t *n, hent e) {
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!hless(e, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static hent hpop(hent *h, size_t *n) {
    hent top = h[0], e = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && hless(h[c + 1], h[c])) c++;
        if (!hless(h[c], e)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = e;
    return top;
}

static int add_sym(sym **sv, size_t *n, size_t *cap, int32_t id, uint32_t len) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        sym *nv = realloc(*sv, nc * sizeof *nv);
        if (!nv) return -1;
        *sv = nv;
        *cap = nc;
    }
    (*sv)[*n] = (sym){id, (int32_t)*n - 1, (int32_t)*n + 1, len};
    (*n)++;
    return 0;
}

int tk_bpe_word(const struct gg_tokenizer *t, const char *w, size_t n, tk_ids *ids, tk_bpe_scratch *sc,
                gg_err *err) {
    const tk_bpe *b = &t->bpe;
    if (!n) return 0;
    if (b->ignore_merges) {
        int32_t id = tk_strmap_get(&t->vocab, w, n);
        if (id >= 0) return tk_ids_add(ids, id) ? gg_errf(err, "out of memory") : 0;
    }
    sym *sv = sc->sym;
    size_t ns = 0, cap = sc->sym_cap;
    int32_t unk = -1;
    uint32_t unk_len = 0;
    int rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        size_t cl = tk_utf8_len((unsigned char)w[i]);
        if (cl > n - i) cl = n - i;
        const char *s = w + i;
        size_t sl = cl;
        int first = i == 0, last = i + cl == n;
        i += cl;
        if ((!first && b->prefix_len) || (last && b->suffix_len)) {
            tk_buf *tb = &sc->tmp;
            tb->n = 0;
            if ((!first && tk_buf_add(tb, b->prefix, b->prefix_len)) || tk_buf_add(tb, s, cl) ||
                (last && tk_buf_add(tb, b->suffix, b->suffix_len))) {
                rc = 1;
                break;
            }
            s = tb->p;
            sl = tb->n;
        }
        int32_t id = tk_strmap_get(&t->vocab, s, sl);
        if (id >= 0) {
            if (unk >= 0) {
                if (add_sym(&sv, &ns, &cap, unk, unk_len)) rc = 1;
                unk = -1;
            }
            if (add_sym(&sv, &ns, &cap, id, (uint32_t)cl)) rc = 1;
            continue;
        }
        if (b->byte_fallback) {
            size_t k = 0;
            while (k < sl && b->byte_ids[(unsigned char)s[k]] >= 0) k++;
            if (k == sl) {
                for (k = 0; k < sl && !rc; k++)
                    if (add_sym(&sv, &ns, &cap, b->byte_ids[(unsigned char)s[k]], 1)) rc = 1;
                continue;
            }
        }
        if (b->unk_id == -1) continue; /* no unk token: the character is dropped, as HF does */
        if (b->unk_id < 0) {
            rc = gg_errf(err, "model BPE: unk_token is not in the vocabulary");
            break;
        }
        if (unk >= 0 && b->fuse_unk) {
            unk_len += (uint32_t)cl;
        } else {
            if (unk >= 0 && add_sym(&sv, &ns, &cap, unk, unk_len)) rc = 1;
            unk = b->unk_id;
            unk_len = (uint32_t)cl;
        }
    }
    if (!rc && unk >= 0 && add_sym(&sv, &ns, &cap, unk, unk_len)) rc = 1;
    sc->sym = sv;
    sc->sym_cap = cap;
    if (rc == 1) return gg_errf(err, "out of memory");
    if (rc) return -1;
    if (!ns) return 0;
    sv[ns - 1].next = -1;

    if (ns > 1) {
        hent *h = sc->heap;
        if (sc->heap_cap < ns + 8) { /* grows below when a word needs more */
            size_t nc = ns + 8;
            h = realloc(sc->heap, nc * sizeof *h);
            if (!h) return gg_errf(err, "out of memory");
            sc->heap = h;
            sc->heap_cap = nc;
        }
        size_t hn = 0;
        for (size_t i = 0; i + 1 < ns; i++) {
            uint32_t rk, mid;
            if (merge_get(b, (uint32_t)sv[i].id, (uint32_t)sv[i + 1].id, &rk, &mid))
                hpush(h, &hn, (hent){rk, (uint32_t)i, mid});
        }
        while (hn) {
            hent top = hpop(h, &hn);
            sym *cur = &sv[top.pos];
            if (!cur->len || cur->next < 0) continue;
            sym *right = &sv[cur->next];
            uint32_t rk, mid;
            if (!merge_get(b, (uint32_t)cur->id, (uint32_t)right->id, &rk, &mid) || mid != top.id) continue;
            cur->id = (int32_t)top.id;
            cur->len += right->len;
            cur->next = right->next;
            right->len = 0;
            if (cur->next >= 0) sv[cur->next].prev = (int32_t)top.pos;
            /* at most two pushes per merge (the heap stays under 2 * ns) */
            if (hn + 2 > sc->heap_cap) {
                size_t nc = sc->heap_cap * 2;
                hent *nh = realloc(h, nc * sizeof *nh);
                if (!nh) return gg_errf(err, "out of memory");
                h = sc->heap = nh;
                sc->heap_cap = nc;
            }
            if (cur->prev >= 0) {
                if (merge_get(b, (uint32_t)sv[cur->prev].id, (uint32_t)cur->id, &rk, &mid))
                    hpush(h, &hn, (hent){rk, (uint32_t)cur->prev, mid});
            }
            if (cur->next >= 0) {
                if (merge_get(b, (uint32_t)cur->id, (uint32_t)sv[cur->next].id, &rk, &mid))
                    hpush(h, &hn, (hent){rk, top.pos, mid});
            }
        }
    }
    for (int32_t i = 0; i >= 0; i = sv[i].next)
        if (tk_ids_add(ids, sv[i].id)) return gg_errf(err, "out of memory");
    return 0;
}

void tk_bpe_scratch_free(tk_bpe_scratch *sc) {
    free(sc->sym);
    free(sc->heap);
    tk_buf_free(&sc->tmp);
    memset(sc, 0, sizeof *sc);
}

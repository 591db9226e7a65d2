/* tokenizer.c — loading (tokenizer.json + tokenizer_config.json, from
 * memory, a path or .gg metadata), the vocabulary and added tokens, the
 * post-processor, and the public encode/decode API (models/tokenizer.h).
 * The components live in tokenizer_normalize.c, tokenizer_pretok.c, tokenizer_bpe.c,
 * tokenizer_decode.c, tokenizer_added.c; JSON in tokenizer_json.c. */
#include "models/tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggfmt/utf8.h"
#include "models/tok_internal.h"

/* ---- post-processor ---- */

/* An id a post-processor may emit: one with a token. */
static int valid_id(const gg_tokenizer *t, double d) {
    return d >= 0 && d < (double)t->vocab_size && t->piece[(size_t)d] != NULL;
}

static int post_load(tk_post *p, const tj_val *v, const gg_tokenizer *t, gg_err *err) {
    memset(p, 0, sizeof *p);
    if (tj_is_null(v)) {
        p->type = TPP_NONE;
        return 0;
    }
    const char *type = tj_str(tj_get(v, "type"));
    if (!type) return gg_errf(err, "post_processor: missing \"type\"");
    if (!strcmp(type, "ByteLevel")) {
        p->type = TPP_BYTELEVEL;
        return 0;
    }
    if (!strcmp(type, "Sequence")) {
        const tj_val *l = tj_get(v, "processors");
        if (!l || l->type != TJ_ARR) return gg_errf(err, "post_processor Sequence: missing \"processors\"");
        p->type = TPP_SEQ;
        p->kids = calloc(l->n ? l->n : 1, sizeof *p->kids);
        if (!p->kids) return gg_errf(err, "out of memory");
        for (uint32_t i = 0; i < l->n; i++) {
            p->nkids++;
            if (post_load(&p->kids[i], &l->u.items[i], t, err)) return -1;
        }
        return 0;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        const tj_val *cls = tj_get(v, "cls"), *sep = tj_get(v, "sep");
        if (!cls || cls->type != TJ_ARR || cls->n != 2 || cls->u.items[1].type != TJ_NUM || !sep ||
            sep->type != TJ_ARR || sep->n != 2 || sep->u.items[1].type != TJ_NUM)
            return gg_errf(err, "post_processor %s: bad \"cls\"/\"sep\"", type);
        p->type = TPP_ROBERTA;
        p->pre = malloc(sizeof(int32_t));
        p->post = malloc(sizeof(int32_t));
        if (!p->pre || !p->post) return gg_errf(err, "out of memory");
        double c = cls->u.items[1].u.num, s2 = sep->u.items[1].u.num;
        if (!valid_id(t, c) || !valid_id(t, s2))
            return gg_errf(err, "post_processor %s: id %g is not in the vocabulary", type, valid_id(t, c) ? s2 : c);
        p->pre[0] = (int32_t)c;
        p->post[0] = (int32_t)s2;
        p->npre = p->npost = 1;
        return 0;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        const tj_val *single = tj_get(v, "single"), *sp = tj_get(v, "special_tokens");
        if (!single || single->type != TJ_ARR)
            return gg_errf(err, "post_processor TemplateProcessing: missing \"single\"");
        p->type = TPP_TEMPLATE;
        size_t cap = 0;
        for (uint32_t i = 0; i < single->n; i++) {
            const tj_val *st = tj_get(&single->u.items[i], "SpecialToken");
            const tj_val *e = st ? tj_get(sp, tj_str(tj_get(st, "id")) ? tj_str(tj_get(st, "id")) : "") : NULL;
            const tj_val *ids = tj_get(e, "ids");
            if (ids && ids->type == TJ_ARR) cap += ids->n;
        }
        p->pre = malloc((cap ? cap : 1) * sizeof(int32_t));
        p->post = malloc((cap ? cap : 1) * sizeof(int32_t));
        if (!p->pre || !p->post) return gg_errf(err, "out of memory");
        int seen_a = 0;
        for (uint32_t i = 0; i < single->n; i++) {
            const tj_val *it = &single->u.items[i];
            const tj_val *st = tj_get(it, "SpecialToken");
            if (tj_get(it, "Sequence")) {
                seen_a = 1;
                continue;
            }
            if (!st)
                return gg_errf(err, "post_processor TemplateProcessing: item %u is neither SpecialToken nor Sequence",
                               i);
            const char *name = tj_str(tj_get(st, "id"));
            const tj_val *e = name ? tj_get(sp, name) : NULL;
            const tj_val *ids = tj_get(e, "ids");
            if (!ids || ids->type != TJ_ARR)
                return gg_errf(err, "post_processor TemplateProcessing: special token \"%s\" not in special_tokens",
                               name ? name : "(missing)");
            for (uint32_t k = 0; k < ids->n; k++) {
                if (ids->u.items[k].type != TJ_NUM)
                    return gg_errf(err, "post_processor TemplateProcessing: \"%s\" has a non-numeric id", name);
                double d = ids->u.items[k].u.num;
                if (!valid_id(t, d))
                    return gg_errf(err, "post_processor TemplateProcessing: \"%s\" has id %g, not in the vocabulary",
                                   name, d);
                int32_t id = (int32_t)d;
                if (seen_a) p->post[p->npost++] = id;
                else p->pre[p->npre++] = id;
            }
        }
        return 0;
    }
    return gg_errf(err, "unsupported post_processor type \"%s\"", type);
}

static void post_free(tk_post *p) {
    for (size_t i = 0; i < p->nkids; i++) post_free(&p->kids[i]);
    free(p->kids);
    free(p->pre);
    free(p->post);
    memset(p, 0, sizeof *p);
}

static int post_apply(const tk_post *p, tk_ids *ids) {
    switch (p->type) {
    case TPP_TEMPLATE:
    case TPP_ROBERTA: {
        size_t n = ids->n;
        for (size_t i = 0; i < p->npre + p->npost; i++)
            if (tk_ids_add(ids, 0)) return -1;
        memmove(ids->v + p->npre, ids->v, n * sizeof(int32_t));
        if (p->npre) memcpy(ids->v, p->pre, p->npre * sizeof(int32_t));
        if (p->npost) memcpy(ids->v + p->npre + n, p->post, p->npost * sizeof(int32_t));
        return 0;
    }
    case TPP_SEQ:
        for (size_t i = 0; i < p->nkids; i++)
            if (post_apply(&p->kids[i], ids)) return -1;
        return 0;
    default: return 0;
    }
}

/* ---- loading ---- */

static int id_of(const tj_val *v, int64_t *out) {
    if (!v || v->type != TJ_NUM || v->u.num < 0 || v->u.num > 0x7FFFFFF0 || v->u.num != (double)(int64_t)v->u.num)
        return -1;
    *out = (int64_t)v->u.num;
    return 0;
}

static const char *token_str(const tj_val *v) {
    if (v && v->type == TJ_STR) return v->u.s;
    return tj_str(tj_get(v, "content"));
}

static int load_config(gg_tokenizer *t, const char *cfg, size_t len, gg_err *err) {
    tj_val *root;
    if (tj_parse(&t->arena, cfg, len, &root, err)) return gg_err_prefix(err, "tokenizer_config.json");
    if (root->type != TJ_OBJ) return gg_errf(err, "tokenizer_config.json: not a JSON object");
    const char *b = token_str(tj_get(root, "bos_token")), *e = token_str(tj_get(root, "eos_token"));
    t->bos = b ? tk_arena_strndup(&t->arena, b, strlen(b)) : NULL;
    t->eos = e ? tk_arena_strndup(&t->arena, e, strlen(e)) : NULL;
    t->bos_id = b ? gg_tokenizer_find(t, b) : -1;
    t->eos_id = e ? gg_tokenizer_find(t, e) : -1;
    t->add_bos = tj_bool(tj_get(root, "add_bos_token"), -1);
    t->add_eos = tj_bool(tj_get(root, "add_eos_token"), -1);
    const tj_val *ct = tj_get(root, "chat_template");
    const char *tpl = tj_str(ct);
    if (ct && ct->type == TJ_ARR) {
        for (uint32_t i = 0; i < ct->n && !tpl; i++) {
            const char *name = tj_str(tj_get(&ct->u.items[i], "name"));
            if (name && !strcmp(name, "default")) tpl = tj_str(tj_get(&ct->u.items[i], "template"));
        }
        if (!tpl && ct->n) tpl = tj_str(tj_get(&ct->u.items[0], "template"));
    }
    t->chat_template = tpl ? tk_arena_strndup(&t->arena, tpl, strlen(tpl)) : NULL;
    return 0;
}

static int load_tokenizer(gg_tokenizer *t, const char *json, size_t len, gg_err *err) {
    tj_val *root;
    if (tj_parse(&t->arena, json, len, &root, err)) return -1;
    if (root->type != TJ_OBJ) return gg_errf(err, "not a JSON object");
    const tj_val *model = tj_get(root, "model");
    if (!model || model->type != TJ_OBJ) return gg_errf(err, "missing \"model\"");
    const char *mt = tj_str(tj_get(model, "type"));
    if (mt ? strcmp(mt, "BPE") != 0 : !tj_get(model, "merges"))
        return gg_errf(err, "unsupported model type \"%s\" (only BPE)", mt ? mt : "(missing)");
    const tj_val *vocab = tj_get(model, "vocab");
    if (!vocab || vocab->type != TJ_LAZY_OBJ) return gg_errf(err, "model: missing \"vocab\" object");
    const tj_val *added = tj_get(root, "added_tokens");
    if (added && added->type != TJ_ARR && added->type != TJ_NULL)
        return gg_errf(err, "\"added_tokens\" is not an array");
    size_t nadd = added && added->type == TJ_ARR ? added->n : 0;

    /* pass 1 over the vocabulary: count and largest id */
    int64_t maxid = -1, id;
    size_t nvocab = 0;
    tj_iter it;
    const char *key;
    size_t klen;
    int r;
    tj_iter_init(&it, vocab);
    while ((r = tj_iter_entry(&it, &key, &klen, &id)) == 1) {
        if (id > 0x7FFFFFF0) break;
        if (id > maxid) maxid = id;
        nvocab++;
    }
    if (r) {
        gg_errf(err, "model.vocab: entry %zu \"%.*s\" does not have a valid id", nvocab, (int)(klen > 80 ? 80 : klen),
                key);
        tj_iter_free(&it);
        return -1;
    }
    tj_iter_free(&it);
    for (size_t i = 0; i < nadd; i++) {
        const tj_val *a = &added->u.items[i];
        if (id_of(tj_get(a, "id"), &id) || !tj_str(tj_get(a, "content")))
            return gg_errf(err, "added_tokens[%zu]: needs \"id\" and \"content\"", i);
        if (id > maxid) maxid = id;
    }
    t->vocab_size = (size_t)(maxid + 1);
    size_t vs = t->vocab_size ? t->vocab_size : 1;
    t->piece = tk_big_calloc(vs * sizeof *t->piece);
    t->piece_len = tk_big_calloc(vs * sizeof *t->piece_len);
    t->special = tk_big_calloc(vs);
    if (!t->piece || !t->piece_len || !t->special ||
        tk_strmap_init(&t->vocab, nvocab, (const char *const *)t->piece, t->piece_len) ||
        !(t->akeys = calloc(nadd ? nadd : 1, sizeof *t->akeys)) ||
        !(t->alens = calloc(nadd ? nadd : 1, sizeof *t->alens)) ||
        tk_strmap_init(&t->all, nadd, t->akeys, t->alens))
        return gg_errf(err, "out of memory");
    /* pass 2: the pieces, copied (NUL-terminated) into the arena; inserted
     * in batches whose hash slots are prefetched first */
    enum { BATCH = 32 };
    uint32_t bid[BATCH];
    uint64_t bh[BATCH];
    size_t nb = 0;
    tj_iter_init(&it, vocab);
    for (;;) {
        int more = tj_iter_entry(&it, &key, &klen, &id) == 1;
        if (more) {
            if (gg_utf8_invalid_at(key, klen) != (size_t)-1) {
                gg_errf(err, "model.vocab: token %d is not valid UTF-8", (int)id);
                tj_iter_free(&it);
                return -1;
            }
            char *pc = tk_arena_strndup(&t->arena, key, klen);
            if (!pc) {
                tj_iter_free(&it);
                return gg_errf(err, "out of memory");
            }
            t->piece[id] = pc;
            t->piece_len[id] = (uint32_t)klen;
            bid[nb] = (uint32_t)id;
            bh[nb] = tk_hash(pc, klen);
            tk_strmap_prefetch(&t->vocab, bh[nb], 0);
            nb++;
        }
        if (nb == BATCH || (!more && nb)) {
            for (size_t k = 0; k < nb; k++) tk_strmap_put_h(&t->vocab, bid[k], bh[k]);
            nb = 0;
        }
        if (!more) break;
    }
    tj_iter_free(&it);

    /* added tokens */
    t->added = calloc(nadd ? nadd : 1, sizeof *t->added);
    if (!t->added) return gg_errf(err, "out of memory");
    for (size_t i = 0; i < nadd; i++) {
        const tj_val *a = &added->u.items[i], *c = tj_get(a, "content");
        tk_added *x = &t->added[t->nadded++];
        x->content = (char *)c->u.s;
        x->len = c->n;
        id_of(tj_get(a, "id"), &id);
        int32_t vid = tk_strmap_get(&t->vocab, c->u.s, c->n);
        x->id = vid >= 0 ? vid : (int32_t)id; /* HF: a token already in the model keeps the model's id */
        x->special = tj_bool(tj_get(a, "special"), 0);
        x->lstrip = tj_bool(tj_get(a, "lstrip"), 0);
        x->rstrip = tj_bool(tj_get(a, "rstrip"), 0);
        x->single_word = tj_bool(tj_get(a, "single_word"), 0);
        x->normalized = tj_bool(tj_get(a, "normalized"), !x->special);
        if (!t->piece[x->id]) {
            t->piece[x->id] = x->content;
            t->piece_len[x->id] = (uint32_t)x->len;
        } else if (vid < 0) {
            return gg_errf(err, "added_tokens[%zu] \"%s\": id %d is already the vocabulary's \"%s\"", i, x->content,
                           x->id, t->piece[x->id]);
        }
        t->akeys[i] = x->content;
        t->alens[i] = (uint32_t)x->len;
        tk_strmap_put(&t->all, (uint32_t)i); /* by content, a later duplicate wins */
        if (x->special) t->special[x->id] = 1;
    }

    if (tk_bpe_load(t, model, err)) return -1;
    const tj_val *nv = tj_get(root, "normalizer"), *pv = tj_get(root, "pre_tokenizer"), *dv = tj_get(root, "decoder");
    if (!tj_is_null(nv)) {
        t->has_norm = 1;
        if (tk_norm_load(&t->norm, nv, &t->arena, err)) return -1;
    }
    if (!tj_is_null(pv)) {
        t->has_pretok = 1;
        if (tk_pretok_load(&t->pretok, pv, &t->arena, err)) return -1;
    }
    if (!tj_is_null(dv)) {
        t->has_dec = 1;
        if (tk_dec_load(&t->dec, dv, &t->arena, err)) return -1;
    }
    if (post_load(&t->post, tj_get(root, "post_processor"), t, err)) return -1;

    /* normalized added tokens are matched against normalized text, in their normalized form */
    for (size_t i = 0; i < t->nadded; i++) {
        tk_added *x = &t->added[i];
        if (!x->normalized) continue;
        if (!t->has_norm) {
            x->norm = x->content;
            x->norm_len = x->len;
            continue;
        }
        tk_buf b = {0};
        if (tk_norm_apply(&t->norm, x->content, x->len, &b, err)) {
            tk_buf_free(&b);
            return -1;
        }
        x->norm = tk_arena_strndup(&t->arena, b.p, b.n ? b.n : 0);
        x->norm_len = b.n;
        tk_buf_free(&b);
        if (!x->norm) return gg_errf(err, "out of memory");
        /* HF keeps a normalized added token (one not in the model) under
         * its normalized form: that is what id_to_token and decode give */
        if (t->piece[x->id] == x->content) {
            t->piece[x->id] = x->norm;
            t->piece_len[x->id] = (uint32_t)x->norm_len;
        }
    }
    if (tk_matcher_build(&t->m_raw, t, 0) || tk_matcher_build(&t->m_norm, t, 1)) return gg_errf(err, "out of memory");
    return 0;
}

/* json and cfg are only read during the load. */
static int load_owned(gg_tokenizer **out, const char *json, size_t len, const char *cfg, size_t cfg_len,
                      const char *label, gg_err *err) {
    *out = NULL;
    if (!label) label = "tokenizer.json";
    gg_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return gg_errf(err, "%s: out of memory", label);
    t->bos_id = t->eos_id = -1;
    t->add_bos = t->add_eos = -1;
    if (!json || load_tokenizer(t, json, len, err) || (cfg && load_config(t, cfg, cfg_len, err))) {
        if (!json) gg_errf(err, "out of memory");
        gg_tokenizer_free(t);
        return gg_err_prefix(err, "%s", label);
    }
    *out = t;
    return 0;
}

int gg_tokenizer_load_json(gg_tokenizer **out, const char *json, size_t len, const char *config_json,
                           size_t config_len, const char *label, gg_err *err) {
    *out = NULL;
    if (!json) return gg_errf(err, "%s: no tokenizer.json text", label ? label : "tokenizer.json");
    return load_owned(out, json, len, config_json, config_len, label, err);
}

/* Maps a file read-only (pre-faulted): the JSON is only read, so no fresh
 * memory is touched for it. *len == 0 gives *buf = "" (not mapped). */
static int map_file(const char *path, char **buf, size_t *len, gg_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gg_errf(err, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return gg_errf(err, "%s: not a regular file", path);
    }
    *len = (size_t)st.st_size;
    if (!*len) {
        close(fd);
        *buf = NULL;
        return 0;
    }
    void *p = mmap(NULL, *len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return gg_errf(err, "%s: mmap: %s", path, strerror(errno));
    *buf = p;
    return 0;
}

static void unmap_file(char *buf, size_t len) {
    if (buf) munmap(buf, len);
}

int gg_tokenizer_load_path(gg_tokenizer **out, const char *path, gg_err *err) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st)) return gg_errf(err, "%s: %s", path, strerror(errno));
    char *json = NULL, *cfg = NULL;
    size_t jn = 0, cn = 0;
    if (!S_ISDIR(st.st_mode)) {
        if (map_file(path, &json, &jn, err)) return -1;
        int rc = load_owned(out, json ? json : "", jn, NULL, 0, path, err);
        unmap_file(json, jn);
        return rc;
    }
    size_t pl = strlen(path);
    char *p = malloc(pl + 32);
    if (!p) return gg_errf(err, "out of memory");
    snprintf(p, pl + 32, "%s/tokenizer.json", path);
    int rc = map_file(p, &json, &jn, err);
    snprintf(p, pl + 32, "%s/tokenizer_config.json", path);
    int has_cfg = !rc && !stat(p, &st);
    if (has_cfg) rc = map_file(p, &cfg, &cn, err);
    if (!rc) rc = load_owned(out, json ? json : "", jn, has_cfg ? (cfg ? cfg : "") : NULL, cn, path, err);
    unmap_file(json, jn);
    unmap_file(cfg, cn);
    free(p);
    return rc;
}

int gg_tokenizer_load_gg(gg_tokenizer **out, const gg_file *f, gg_err *err) {
    *out = NULL;
    gg_str js, cs = {0};
    if (gg_meta_get_str(f, "tokenizer.json", &js, err)) return -1;
    if (gg_meta_find(f, "tokenizer.config_json") && gg_meta_get_str(f, "tokenizer.config_json", &cs, err)) return -1;
    return gg_tokenizer_load_json(out, js.ptr, (size_t)js.len, cs.ptr, (size_t)cs.len, gg_file_path(f), err);
}

void gg_tokenizer_free(gg_tokenizer *t) {
    if (!t) return;
    tk_strmap_free(&t->vocab);
    tk_strmap_free(&t->all);
    tk_bpe_free(&t->bpe);
    tk_norm_free(&t->norm);
    tk_pretok_free(&t->pretok);
    tk_dec_free(&t->dec);
    post_free(&t->post);
    tk_matcher_free(&t->m_raw);
    tk_matcher_free(&t->m_norm);
    free(t->added);
    free(t->akeys);
    free(t->alens);
    size_t vs = t->vocab_size ? t->vocab_size : 1;
    tk_big_free(t->piece, vs * sizeof *t->piece);
    tk_big_free(t->piece_len, vs * sizeof *t->piece_len);
    tk_big_free(t->special, vs);
    tk_arena_free(&t->arena);
    free(t);
}

/* ---- encode ---- */

typedef struct enc_ctx {
    tk_buf raw, norm;
    tk_segs s1, s2;
    tk_list l1, l2;
    tk_bpe_scratch sc;
    tk_ids ids;
} enc_ctx;

static void enc_free(enc_ctx *c) {
    tk_buf_free(&c->raw);
    tk_buf_free(&c->norm);
    free(c->s1.v);
    free(c->s2.v);
    tk_list_free(&c->l1);
    tk_list_free(&c->l2);
    tk_bpe_scratch_free(&c->sc);
    free(c->ids.v);
}

static int encode_text(const gg_tokenizer *t, enc_ctx *c, const char *s, size_t n, uint32_t flags, gg_err *err) {
    tk_list_clear(&c->l1);
    if (tk_list_add(&c->l1, s, n, flags)) return gg_errf(err, "out of memory");
    if (t->has_pretok && tk_pretok_apply(&t->pretok, &c->l1, &c->l2, err)) return -1;
    for (size_t i = 0; i < c->l1.n; i++)
        if (tk_bpe_word(t, tk_list_str(&c->l1, i), c->l1.v[i].len, &c->ids, &c->sc, err)) return -1;
    return 0;
}

static int encode(const gg_tokenizer *t, enc_ctx *c, const char *text, size_t len, int add_special, gg_err *err) {
    if (tk_utf8_lossy(text ? text : "", text ? len : 0, &c->raw)) return gg_errf(err, "out of memory");
    if (tk_added_split(t, &t->m_raw, 0, c->raw.p, c->raw.n, &c->s1)) return gg_errf(err, "out of memory");
    for (size_t i = 0; i < c->s1.n; i++) {
        tk_seg g = c->s1.v[i];
        if (g.id >= 0) {
            if (tk_ids_add(&c->ids, g.id)) return gg_errf(err, "out of memory");
            continue;
        }
        const char *s = c->raw.p + g.off;
        size_t n = g.len;
        if (t->has_norm) {
            if (tk_norm_apply(&t->norm, s, n, &c->norm, err)) return -1;
            s = c->norm.p;
            n = c->norm.n;
        }
        c->s2.n = 0;
        if (tk_added_split(t, &t->m_norm, 1, s, n, &c->s2)) return gg_errf(err, "out of memory");
        for (size_t k = 0; k < c->s2.n; k++) {
            tk_seg h = c->s2.v[k];
            if (h.id >= 0) {
                if (tk_ids_add(&c->ids, h.id)) return gg_errf(err, "out of memory");
                continue;
            }
            if (!h.len) continue;
            uint32_t flags = g.off == 0 && h.off == 0 ? TK_AT_START : 0;
            if (encode_text(t, c, s + h.off, h.len, flags, err)) return -1;
        }
    }
    if (add_special && post_apply(&t->post, &c->ids)) return gg_errf(err, "out of memory");
    return 0;
}

int gg_tokenizer_encode(const gg_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
                        size_t *n, gg_err *err) {
    *ids = NULL;
    *n = 0;
    enc_ctx c = {0};
    gg_err e2 = {{0}};
    if (encode(t, &c, text, len, add_special, &e2)) {
        enc_free(&c);
        return gg_errf(err, "tokenizer encode: %s", e2.msg);
    }
    if (!c.ids.v && tk_ids_add(&c.ids, 0) == 0) c.ids.n = 0; /* never hand back NULL */
    if (!c.ids.v) {
        enc_free(&c);
        return gg_errf(err, "tokenizer encode: out of memory");
    }
    *ids = c.ids.v;
    *n = c.ids.n;
    c.ids.v = NULL;
    enc_free(&c);
    return 0;
}

/* ---- decode ---- */

int gg_tokenizer_decode(const gg_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                        size_t *len, gg_err *err) {
    *text = NULL;
    if (len) *len = 0;
    tk_list a = {0}, b = {0};
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= t->vocab_size || !t->piece[id]) {
            rc = gg_errf(err, "tokenizer decode: id %d at position %zu is %s (vocabulary of %zu)", (int)id, i,
                         id < 0 || (size_t)id >= t->vocab_size ? "out of range" : "not a token", t->vocab_size);
            break;
        }
        if (skip_special && t->special[id]) continue;
        if (tk_list_add(&a, t->piece[id], t->piece_len[id], 0)) rc = gg_errf(err, "out of memory");
    }
    gg_err e2 = {{0}};
    if (!rc && t->has_dec && tk_dec_apply(&t->dec, &a, &b, &e2)) rc = gg_errf(err, "tokenizer decode: %s", e2.msg);
    tk_buf o = {0};
    for (size_t i = 0; i < a.n && !rc; i++) {
        if ((!t->has_dec && i && tk_buf_add(&o, " ", 1)) || tk_buf_add(&o, tk_list_str(&a, i), a.v[i].len))
            rc = gg_errf(err, "out of memory");
    }
    if (!rc && tk_buf_reserve(&o, 1)) rc = gg_errf(err, "out of memory");
    tk_list_free(&a);
    tk_list_free(&b);
    if (rc) {
        tk_buf_free(&o);
        return -1;
    }
    o.p[o.n] = 0;
    *text = o.p;
    if (len) *len = o.n;
    return 0;
}

/* ---- queries ---- */

size_t gg_tokenizer_vocab_size(const gg_tokenizer *t) { return t->vocab_size; }

const char *gg_tokenizer_piece(const gg_tokenizer *t, int32_t id) {
    if (id < 0 || (size_t)id >= t->vocab_size) return NULL;
    return t->piece[id];
}

int32_t gg_tokenizer_find(const gg_tokenizer *t, const char *piece) {
    if (!piece) return -1;
    size_t n = strlen(piece);
    int32_t i = tk_strmap_get(&t->all, piece, n); /* added tokens by content first, as HF's token_to_id */
    return i >= 0 ? t->added[i].id : tk_strmap_get(&t->vocab, piece, n);
}

int gg_tokenizer_is_special(const gg_tokenizer *t, int32_t id) {
    return id >= 0 && (size_t)id < t->vocab_size && t->special[id];
}

int32_t gg_tokenizer_bos_id(const gg_tokenizer *t) { return t->bos_id; }
int32_t gg_tokenizer_eos_id(const gg_tokenizer *t) { return t->eos_id; }
const char *gg_tokenizer_bos_token(const gg_tokenizer *t) { return t->bos; }
const char *gg_tokenizer_eos_token(const gg_tokenizer *t) { return t->eos; }
const char *gg_tokenizer_chat_template(const gg_tokenizer *t) { return t->chat_template; }

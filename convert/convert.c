/* convert.c — the conversion behind ggconvert: HF folder → .gg model file.
 * Tensors are converted by a pool of threads, each taking the next tensor
 * and writing it at its own place in OUT.tmp (ggfmt writer). */
#include "convert/convert.h"

#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "convert/hf_model.h"
#include "convert/safetensors.h"
#include "ggfmt/ggfmt.h"

#define GG_CONVERT_TOOL "ggconvert " GG_VERSION_STRING

typedef struct job {
    const gg_canon_tensor *ct;
    size_t n;
    const gg_type *types;
    const size_t *widx;
    gg_writer *w;
    atomic_size_t next;
    atomic_uint_fast64_t bytes_done;
    atomic_int failed;
    atomic_int active; /* workers still running */
    uint64_t *src_hash; /* XXH3 of each tensor's source values (fingerprint) */
    pthread_mutex_t err_lock;
    gg_err err;
} job;

static uint64_t nelem_of(const gg_canon_tensor *t) {
    return t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
}
static size_t src_esize(const gg_canon_tensor *t) { return t->src->type == GG_TYPE_F32 ? 4 : 2; }
static uint64_t src_row_bytes(const gg_canon_tensor *t) {
    return t->src->ndim == 1 ? src_esize(t) : t->src->shape[1] * src_esize(t);
}

/* Source bytes of a canonical tensor: in place, or its row segments
 * gathered into *gather (Falcon's fused query_key_value). */
static const void *source_bytes(const gg_canon_tensor *t, void **gather, size_t *cap, gg_err *err) {
    if (!t->nseg) return t->src->data;
    uint64_t need = nelem_of(t) * src_esize(t), rb = src_row_bytes(t);
    if (need > *cap) {
        free(*gather);
        if (!(*gather = malloc(need))) {
            *cap = 0;
            gg_errf(err, "out of memory");
            return NULL;
        }
        *cap = need;
    }
    uint8_t *g = *gather;
    for (size_t k = 0; k < t->nseg; k++) {
        memcpy(g, (const uint8_t *)t->src->data + t->seg[k].row0 * rb, t->seg[k].nrows * rb);
        g += t->seg[k].nrows * rb;
    }
    return *gather;
}

static int convert_one(job *J, size_t i, void **gather, size_t *gcap, void **out, size_t *ocap,
                       gg_err *err) {
    const gg_canon_tensor *t = &J->ct[i];
    gg_type st = (gg_type)t->src->type, dt = J->types[i];
    uint64_t rows = t->ndim == 1 ? 1 : t->shape[0], cols = t->ndim == 1 ? t->shape[0] : t->shape[1];
    const void *src = source_bytes(t, gather, gcap, err);
    if (!src) return -1;
    J->src_hash[i] = XXH3_64bits(src, nelem_of(t) * src_esize(t));
    uint64_t nbytes = gg_type_nbytes(dt, rows, cols);
    if (dt == st) {
        if (gg_writer_write(J->w, J->widx[i], src, nbytes, err)) return -1;
    } else {
        if (nbytes > *ocap) {
            free(*out);
            if (!(*out = malloc(nbytes))) {
                *ocap = 0;
                return gg_errf(err, "out of memory");
            }
            *ocap = nbytes;
        }
        if (gg_quantize(dt, *out, st, src, rows, cols, err))
            return gg_err_prefix(err, "%s (%s)", t->name, t->src->name);
        if (gg_writer_write(J->w, J->widx[i], *out, nbytes, err)) return -1;
    }
    atomic_fetch_add(&J->bytes_done, nelem_of(t) * src_esize(t));
    return 0;
}

static void *worker(void *arg) {
    job *J = arg;
    void *gather = NULL, *out = NULL;
    size_t gcap = 0, ocap = 0;
    while (!atomic_load(&J->failed)) {
        size_t i = atomic_fetch_add(&J->next, 1);
        if (i >= J->n) break;
        gg_err e;
        if (convert_one(J, i, &gather, &gcap, &out, &ocap, &e)) {
            pthread_mutex_lock(&J->err_lock);
            if (!atomic_load(&J->failed)) J->err = e;
            atomic_store(&J->failed, 1);
            pthread_mutex_unlock(&J->err_lock);
        }
    }
    free(gather);
    free(out);
    atomic_fetch_sub(&J->active, 1);
    return NULL;
}

/* Read a text file of the HF folder if it exists (*out NULL if absent). */
static int read_optional(const char *dir, const char *name, char **out, size_t *len, gg_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? 0 : gg_errf(err, "%s: %s", path, strerror(errno));
    char *b = NULL;
    size_t cap = 0, n = 0, k;
    char tmp[1 << 16];
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (n + k > cap) {
            cap = (n + k) * 2;
            char *nb = realloc(b, cap);
            if (!nb) {
                free(b);
                fclose(f);
                return gg_errf(err, "%s: out of memory", path);
            }
            b = nb;
        }
        memcpy(b + n, tmp, k);
        n += k;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return gg_errf(err, "%s: read error", path);
    }
    *out = b ? b : strdup("");
    *len = n;
    return *out ? 0 : gg_errf(err, "out of memory");
}

static gg_type choose_type(const gg_convert_opts *o, const gg_canon_tensor *t, int *fell_back,
                           gg_err *why) {
    gg_type src = (gg_type)t->src->type, want;
    *fell_back = 0;
    if (t->role == GG_ROLE_VECTOR) return GG_TYPE_F32;
    if (t->role == GG_ROLE_EMBED)
        want = o->embed_rule == GG_RULE_TYPE      ? o->embed_type
               : o->embed_rule == GG_RULE_DEFAULT && !gg_type_is_quantized(o->type) ? o->type
                                                                                      : src;
    else want = o->type;
    if (gg_type_check_shape(want, t->ndim, t->shape, why) == 0) return want;
    *fell_back = 1;
    return o->fallback_rule == GG_RULE_TYPE ? o->fallback_type : src;
}

/* XXH3 over (name, shape, XXH3 of the source values) of every tensor. */
static uint64_t fingerprint(const gg_canon_tensor *ct, const uint64_t *src_hash, size_t n) {
    XXH3_state_t *fs = XXH3_createState();
    XXH3_64bits_reset(fs);
    for (size_t i = 0; i < n; i++) {
        uint64_t shape[2] = {ct[i].shape[0], ct[i].ndim == 2 ? ct[i].shape[1] : 0};
        XXH3_64bits_update(fs, ct[i].name, strlen(ct[i].name) + 1);
        XXH3_64bits_update(fs, shape, sizeof shape);
        XXH3_64bits_update(fs, &src_hash[i], sizeof src_hash[i]);
    }
    uint64_t fp = XXH3_64bits_digest(fs);
    XXH3_freeState(fs);
    return fp;
}

static int write_metadata(const gg_convert_opts *o, const gg_hf_config *cfg, gg_writer *w,
                          gg_err *err) {
    char *dcopy = strdup(o->hf_dir);
    if (!dcopy) return gg_errf(err, "out of memory");
    size_t n = strlen(dcopy);
    while (n > 1 && dcopy[n - 1] == '/') dcopy[--n] = 0;
    const char *src = basename(dcopy), *ty = gg_type_name(o->type);
    int bad = gg_writer_set_str(w, "gg.kind", "model", 5, err) || gg_hf_config_to_meta(cfg, w, err) ||
              gg_writer_set_u64(w, "model.fingerprint", 0, err) || /* patched at the end */
              gg_writer_set_str(w, "convert.tool", GG_CONVERT_TOOL, strlen(GG_CONVERT_TOOL), err) ||
              gg_writer_set_str(w, "convert.type", ty, strlen(ty), err) ||
              gg_writer_set_str(w, "convert.source", src, strlen(src), err);
    free(dcopy);
    if (bad) return -1;
    static const struct {
        const char *file, *key;
    } texts[] = {
        {"config.json", "source.config_json"},
        {"generation_config.json", "source.generation_config_json"},
        {"tokenizer.json", "tokenizer.json"},
        {"tokenizer_config.json", "tokenizer.config_json"},
        {"special_tokens_map.json", "tokenizer.special_tokens_map_json"},
    };
    for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
        char *txt;
        size_t len;
        if (read_optional(o->hf_dir, texts[k].file, &txt, &len, err)) return -1;
        if (!txt) continue;
        int rc = gg_writer_set_str(w, texts[k].key, txt, len, err);
        free(txt);
        if (rc) return gg_err_prefix(err, "%s/%s", o->hf_dir, texts[k].file);
    }
    return 0;
}

int gg_convert(const gg_convert_opts *o, gg_convert_stats *stats, gg_err *err) {
    memset(stats, 0, sizeof *stats);
    struct stat sb;
    if (stat(o->hf_dir, &sb) != 0) return gg_errf(err, "%s: %s", o->hf_dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return gg_errf(err, "%s: not a directory (expected a Hugging Face folder)", o->hf_dir);
    char cfg_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", o->hf_dir);
    gg_hf_config cfg;
    if (gg_hf_config_load(&cfg, cfg_path, err)) return -1;

    int rc = -1;
    gg_st_set *st = NULL;
    gg_canon_tensor *ct = NULL;
    size_t nct = 0;
    gg_type *types = NULL;
    size_t *widx = NULL;
    gg_writer *w = NULL;
    pthread_t *th = NULL;
    int nthreads = o->threads < 1 ? 1 : o->threads, started = 0;
    job J;
    memset(&J, 0, sizeof J);
    pthread_mutex_init(&J.err_lock, NULL);

    if (gg_st_open_dir(&st, o->hf_dir, err) || gg_canon_map(&cfg, st, &ct, &nct, err)) goto out;
    types = calloc(nct ? nct : 1, sizeof *types);
    widx = calloc(nct ? nct : 1, sizeof *widx);
    J.src_hash = calloc(nct ? nct : 1, sizeof *J.src_hash);
    w = gg_writer_new();
    if (!types || !widx || !J.src_hash || !w) {
        gg_errf(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nct; i++) {
        int fb;
        gg_err why;
        types[i] = choose_type(o, &ct[i], &fb, &why);
        if (fb) {
            gg_err e2;
            if (gg_type_check_shape(types[i], ct[i].ndim, ct[i].shape, &e2)) {
                gg_errf(err, "%s: %s", ct[i].name, why.msg);
                goto out;
            }
            stats->n_fallback++;
            if (o->note) o->note(o->ctx, ct[i].name, why.msg, types[i]);
        }
    }
    if (write_metadata(o, &cfg, w, err)) goto out;
    for (size_t i = 0; i < nct; i++)
        if (gg_writer_add_tensor(w, ct[i].name, types[i], ct[i].ndim, ct[i].shape, &widx[i], err))
            goto out;
    if (gg_writer_begin(w, o->out_path, o->alignment, err)) goto out;

    uint64_t total = 0;
    for (size_t i = 0; i < nct; i++) total += nelem_of(&ct[i]) * src_esize(&ct[i]);
    J.ct = ct;
    J.n = nct;
    J.types = types;
    J.widx = widx;
    J.w = w;
    atomic_store(&J.active, nthreads);
    if (!(th = calloc((size_t)nthreads, sizeof *th))) {
        gg_errf(err, "out of memory");
        goto out;
    }
    for (; started < nthreads; started++)
        if (pthread_create(&th[started], NULL, worker, &J)) {
            atomic_fetch_sub(&J.active, nthreads - started);
            break;
        }
    if (!started) {
        gg_errf(err, "cannot start a thread");
        goto out;
    }
    while (o->progress && atomic_load(&J.active) > 0) {
        o->progress(o->ctx, atomic_load(&J.bytes_done), total);
        usleep(200000);
    }
    for (int k = 0; k < started; k++) pthread_join(th[k], NULL);
    if (atomic_load(&J.failed)) {
        *err = J.err;
        goto out;
    }
    if (o->progress) o->progress(o->ctx, total, total);
    stats->fingerprint = fingerprint(ct, J.src_hash, nct);
    if (gg_writer_patch_u64(w, "model.fingerprint", stats->fingerprint, err) ||
        gg_writer_finish(w, err))
        goto out;
    stats->n_tensors = nct;
    stats->input_bytes = gg_st_total_bytes(st);
    stats->output_bytes = stat(o->out_path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    rc = 0;
out:
    gg_writer_free(w); /* removes OUT.tmp unless finished */
    free(th);
    free(types);
    free(widx);
    free(J.src_hash);
    if (ct) gg_canon_free(ct, nct);
    if (st) gg_st_close(st);
    pthread_mutex_destroy(&J.err_lock);
    return rc;
}

/* merge.c — LoRA adapters merged into a base .gg model (see merge.h):
 * adapter loading and checks, metadata copy, per-tensor merge with
 * requantization and its measured loss, multithreaded atomic write. */
#include "convert/merge.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#define XXH_INLINE_ALL /* header-only, as ggfmt.c and convert.c use it */
#include <xxhash.h>

#include "convert/adapter.h"
#include "ggfmt/ggfmt.h"

#define GG_MERGE_TOOL "ggmerge " GG_VERSION_STRING

typedef struct contrib {
    const gg_adapter_tensor *t;
    float scale; /* user scale × the module's alpha/r */
} contrib;

typedef struct plan {
    contrib *c; /* the adapter modules adding to this tensor */
    size_t nc;
    gg_type out_type;
    size_t widx;
    int merged; /* the delta was non-zero */
    gg_merge_tensor info;
} plan;

typedef struct job {
    const gg_file *base;
    plan *p;
    size_t n;
    gg_writer *w;
    atomic_size_t next;
    atomic_int failed;
    pthread_mutex_t err_lock;
    gg_err err;
} job;

static void notef(const gg_merge_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void notef(const gg_merge_opts *o, const char *fmt, ...) {
    if (!o->note) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    o->note(o->ctx, msg);
}

/* rows = product of the leading dimensions, cols = the last one. */
static void dims_of(const gg_tensor *t, uint64_t *rows, uint64_t *cols) {
    uint64_t r = 1;
    for (uint32_t d = 0; d + 1 < t->ndim; d++) r *= t->shape[d];
    *rows = t->ndim ? r : 1;
    *cols = t->ndim ? t->shape[t->ndim - 1] : 1;
}

/* Every module's weight exists in the base with in == cols, out == rows;
 * else one line naming the first that does not. */
static int shapes_fit(const gg_adapter *a, const gg_file *base, gg_err *err) {
    for (size_t i = 0; i < a->n; i++) {
        const gg_adapter_tensor *t = &a->t[i];
        char name[128];
        gg_lora_weight_name(name, sizeof name, t->layer, t->target);
        const gg_tensor *w = gg_tensor_find(base, name);
        if (!w) return gg_errf(err, "adapter %s: base %s has no %s", a->label, gg_file_path(base), name);
        if (w->ndim != 2 || w->shape[0] != (uint64_t)t->out || w->shape[1] != (uint64_t)t->in)
            return gg_errf(err, "adapter %s: %s is [%lld,%lld] in the adapter but [%llu,%llu] in base %s (shape mismatch)",
                           a->label, name, (long long)t->out, (long long)t->in, (unsigned long long)w->shape[0],
                           (unsigned long long)(w->ndim > 1 ? w->shape[1] : 0), gg_file_path(base));
    }
    return 0;
}

static int load_adapter(gg_adapter **out, const gg_merge_opts *o, const char *path, const gg_file *base,
                        gg_err *err) {
    struct stat st;
    gg_adapter *a = NULL;
    if (stat(path, &st) != 0) return gg_errf(err, "adapter %s: %s", path, strerror(errno));
    int rc = S_ISDIR(st.st_mode) ? gg_adapter_load_peft(&a, path, base, err) : gg_adapter_load_gg(&a, path, err);
    if (rc) return -1;
    if (gg_adapter_check_base(a, base, err)) {
        gg_err why;
        if (shapes_fit(a, base, &why)) {
            if (o->force) *err = why; /* the reason --force cannot help */
            gg_adapter_free(a);
            return -1;
        }
        if (!o->force) {
            gg_adapter_free(a);
            size_t n = strlen(err->msg);
            snprintf(err->msg + n, sizeof err->msg - n, "; --force merges it anyway (its shapes match)");
            return -1;
        }
        notef(o, "%s; merged anyway (--force)", err->msg);
    }
    *out = a;
    return 0;
}

/* XXH3-64 over the base's fingerprint and every adapter's scale and values. */
static uint64_t merged_fingerprint(uint64_t base_fp, gg_adapter **ad, const gg_merge_adapter *in, size_t n) {
    XXH3_state_t *s = XXH3_createState();
    if (!s) return base_fp ^ 0x67676d6572676521ull;
    XXH3_64bits_reset(s);
    XXH3_64bits_update(s, "ggmerge", 8);
    XXH3_64bits_update(s, &base_fp, sizeof base_fp);
    for (size_t i = 0; i < n; i++) {
        const gg_adapter *a = ad[i];
        uint64_t cnt = a->n;
        XXH3_64bits_update(s, &in[i].scale, sizeof in[i].scale);
        XXH3_64bits_update(s, &cnt, sizeof cnt);
        for (size_t k = 0; k < a->n; k++) {
            const gg_adapter_tensor *t = &a->t[k];
            int64_t hdr[5] = {t->layer, (int64_t)t->target, t->r, t->in, t->out};
            XXH3_64bits_update(s, hdr, sizeof hdr);
            XXH3_64bits_update(s, &t->scale, sizeof t->scale);
            XXH3_64bits_update(s, t->a, (size_t)(t->r * t->in) * sizeof(float));
            XXH3_64bits_update(s, t->b, (size_t)(t->out * t->r) * sizeof(float));
        }
    }
    uint64_t fp = XXH3_64bits_digest(s);
    XXH3_freeState(s);
    return fp;
}

/* Copy one metadata value of the base to the writer. */
static int copy_value(gg_writer *w, const char *key, const gg_value *v, gg_err *err) {
    switch (v->type) {
    case GG_V_BOOL: return gg_writer_set_bool(w, key, v->v.b, err);
    case GG_V_I64: return gg_writer_set_i64(w, key, v->v.i, err);
    case GG_V_U64: return gg_writer_set_u64(w, key, v->v.u, err);
    case GG_V_F64: return gg_writer_set_f64(w, key, v->v.f, err);
    case GG_V_STR: return gg_writer_set_str(w, key, v->v.s.ptr, (size_t)v->v.s.len, err);
    case GG_V_ARR: break;
    default: return gg_errf(err, "metadata '%s': unknown value type %d", key, (int)v->type);
    }
    size_t n = (size_t)v->count, sz = n ? n : 1;
    int rc = -1;
    if (v->elem == GG_V_STR) {
        const char **s = malloc(sz * sizeof *s);
        size_t *l = malloc(sz * sizeof *l);
        if (s && l) {
            for (size_t i = 0; i < n; i++) {
                s[i] = v->strs[i].ptr;
                l[i] = (size_t)v->strs[i].len;
            }
            rc = gg_writer_set_arr_str(w, key, s, l, n, err);
        } else gg_errf(err, "out of memory");
        free(s);
        free(l);
        return rc;
    }
    void *buf = malloc(sz * 8);
    if (!buf) return gg_errf(err, "out of memory");
    switch (v->elem) {
    case GG_V_BOOL:
        for (size_t i = 0; i < n; i++) ((int *)buf)[i] = gg_value_arr_bool(v, i);
        rc = gg_writer_set_arr_bool(w, key, buf, n, err);
        break;
    case GG_V_I64:
        for (size_t i = 0; i < n; i++) ((int64_t *)buf)[i] = gg_value_arr_i64(v, i);
        rc = gg_writer_set_arr_i64(w, key, buf, n, err);
        break;
    case GG_V_U64:
        for (size_t i = 0; i < n; i++) ((uint64_t *)buf)[i] = gg_value_arr_u64(v, i);
        rc = gg_writer_set_arr_u64(w, key, buf, n, err);
        break;
    case GG_V_F64:
        for (size_t i = 0; i < n; i++) ((double *)buf)[i] = gg_value_arr_f64(v, i);
        rc = gg_writer_set_arr_f64(w, key, buf, n, err);
        break;
    default: rc = gg_errf(err, "metadata '%s': unknown array element type %d", key, (int)v->elem);
    }
    free(buf);
    return rc;
}

static int write_metadata(const gg_merge_opts *o, const gg_file *base, gg_writer *w, uint64_t base_fp,
                          int has_fp, uint64_t fp, gg_err *err) {
    const gg_value *prev = gg_meta_find(base, "merge.adapters"), *orig = gg_meta_find(base, "merge.base_fingerprint");
    for (size_t i = 0; i < gg_meta_count(base); i++) {
        const gg_meta *m = gg_meta_at(base, i);
        if (strcmp(m->key, "model.fingerprint") == 0) {
            if (gg_writer_set_u64(w, m->key, fp, err)) return -1;
            continue;
        }
        if (strcmp(m->key, "merge.adapters") == 0 || strcmp(m->key, "merge.base_fingerprint") == 0 ||
            strcmp(m->key, "merge.tool") == 0 || strcmp(m->key, "merge.type") == 0)
            continue;
        if (copy_value(w, m->key, &m->val, err)) return gg_err_prefix(err, "%s", o->base_path);
    }
    if (!has_fp && gg_writer_set_u64(w, "model.fingerprint", fp, err)) return -1;
    /* The first base of a chain of merges stays recorded. */
    uint64_t ofp = orig && orig->type == GG_V_U64 ? orig->v.u : base_fp;
    size_t np = prev && prev->type == GG_V_ARR && prev->elem == GG_V_STR ? (size_t)prev->count : 0;
    size_t n = np + o->n_adapters;
    char **s = calloc(n ? n : 1, sizeof *s);
    if (!s) return gg_errf(err, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (i < np) s[i] = strndup(prev->strs[i].ptr, (size_t)prev->strs[i].len);
        else {
            const gg_merge_adapter *a = &o->adapters[i - np];
            size_t len = strlen(a->path) + 32;
            if ((s[i] = malloc(len))) snprintf(s[i], len, "%s:%g", a->path, (double)a->scale);
        }
        if (!s[i]) rc = gg_errf(err, "out of memory");
    }
    if (!rc)
        rc = gg_writer_set_str(w, "merge.tool", GG_MERGE_TOOL, strlen(GG_MERGE_TOOL), err) ||
             gg_writer_set_u64(w, "merge.base_fingerprint", ofp, err) ||
             gg_writer_set_arr_str(w, "merge.adapters", (const char *const *)s, NULL, n, err) ||
             (o->set_type && gg_writer_set_str(w, "merge.type", gg_type_name(o->type),
                                               strlen(gg_type_name(o->type)), err));
    for (size_t i = 0; i < n; i++) free(s[i]);
    free(s);
    return rc ? -1 : 0;
}

/* ---- one tensor -------------------------------------------------------------- */

/* Memory: the tensor in f32, its output bytes, and one chunk of rows (the
 * delta is made a row at a time; nf4's double quantization spans rows, so
 * the tensor is quantized whole). */
#define CHUNK_ROWS 64

static int merge_tensor(job *J, plan *p, const gg_tensor *t, gg_err *err) {
    uint64_t rows, cols;
    dims_of(t, &rows, &cols);
    if (p->nc == 0 && p->out_type == t->type) return gg_writer_write(J->w, p->widx, t->data, (size_t)t->size, err);
    size_t n = (size_t)(rows * cols), qbytes = (size_t)gg_type_nbytes(p->out_type, rows, cols);
    size_t chunk = (size_t)(rows < CHUNK_ROWS ? rows : CHUNK_ROWS) * (size_t)cols;
    int rc = -1;
    float *m = malloc((n ? n : 1) * sizeof *m), *d = malloc((chunk ? chunk : 1) * sizeof *d);
    void *q = NULL;
    if (!m || !d) {
        gg_errf(err, "%s: out of memory", t->name);
        goto out;
    }
    if (gg_dequantize_rows(t->type, t->data, rows, cols, 0, rows, m, err)) goto out;
    double dn2 = 0, wn2 = 0;
    if (p->nc) {
        for (uint64_t o = 0; o < rows; o++) { /* Δ row o = Σ s · B[o,:] A, then W += Δ */
            float *dr = d, *mr = m + o * cols;
            memset(dr, 0, cols * sizeof *dr);
            for (size_t c = 0; c < p->nc; c++) {
                const gg_adapter_tensor *at = p->c[c].t;
                const float s = p->c[c].scale;
                for (int64_t k = 0; k < at->r; k++) {
                    const float cb = s * at->b[(int64_t)o * at->r + k];
                    const float *ar = at->a + (size_t)k * cols;
                    if (cb != 0.0f)
                        for (uint64_t j = 0; j < cols; j++) dr[j] += cb * ar[j];
                }
            }
            for (uint64_t j = 0; j < cols; j++) {
                dn2 += (double)dr[j] * dr[j];
                wn2 += (double)mr[j] * mr[j];
                mr[j] += dr[j];
            }
        }
        if (!isfinite(dn2)) {
            gg_errf(err, "%s: the adapters' delta is not finite", t->name);
            goto out;
        }
        p->merged = dn2 > 0;
        if (!p->merged && p->out_type == t->type) { /* e.g. B = 0 (an untrained adapter): the base's bytes */
            rc = gg_writer_write(J->w, p->widx, t->data, (size_t)t->size, err);
            goto out;
        }
    }
    if (p->merged)
        for (size_t i = 0; i < n; i++)
            if (!isfinite(m[i])) {
                gg_errf(err, "%s: merged weight %zu is not finite", t->name, i);
                goto out;
            }
    if (p->out_type == GG_TYPE_F32) {
        rc = gg_writer_write(J->w, p->widx, m, n * sizeof *m, err);
    } else {
        if (!(q = malloc(qbytes ? qbytes : 1))) {
            gg_errf(err, "%s: out of memory", t->name);
            goto out;
        }
        if (gg_quantize(p->out_type, q, GG_TYPE_F32, m, rows, cols, err)) {
            gg_err_prefix(err, "%s", t->name);
            goto out;
        }
        if (p->merged) { /* ‖Q(W+Δ) − (W+Δ)‖, a chunk of rows at a time */
            double e2 = 0;
            for (uint64_t r0 = 0; r0 < rows; r0 += CHUNK_ROWS) {
                uint64_t nr = rows - r0 < CHUNK_ROWS ? rows - r0 : CHUNK_ROWS;
                if (gg_dequantize_rows(p->out_type, q, rows, cols, r0, nr, d, err)) goto out;
                const float *mr = m + r0 * cols;
                for (size_t i = 0; i < (size_t)(nr * cols); i++) {
                    double e = (double)d[i] - mr[i];
                    e2 += e * e;
                }
            }
            p->info.lost = sqrt(e2 / dn2);
        }
        rc = gg_writer_write(J->w, p->widx, q, qbytes, err);
    }
    p->info.name = t->name;
    p->info.from = t->type;
    p->info.to = p->out_type;
    p->info.weight_norm = sqrt(wn2);
    p->info.delta_norm = sqrt(dn2);
out:
    free(m);
    free(d);
    free(q);
    return rc;
}

static void *worker(void *arg) {
    job *J = arg;
    for (;;) {
        if (atomic_load(&J->failed)) break;
        size_t i = atomic_fetch_add(&J->next, 1);
        if (i >= J->n) break;
        gg_err e;
        if (merge_tensor(J, &J->p[i], gg_tensor_at(J->base, i), &e)) {
            pthread_mutex_lock(&J->err_lock);
            if (!atomic_load(&J->failed)) J->err = e;
            atomic_store(&J->failed, 1);
            pthread_mutex_unlock(&J->err_lock);
        }
    }
    return NULL;
}

/* ---- the merge --------------------------------------------------------------- */

int gg_merge(const gg_merge_opts *o, gg_merge_stats *stats, gg_err *err) {
    memset(stats, 0, sizeof *stats);
    if (!o->base_path || !o->out_path) return gg_errf(err, "a base model and an output path are needed");
    gg_file *base = NULL;
    gg_adapter **ad = NULL;
    plan *P = NULL;
    contrib *cs = NULL;
    gg_writer *w = NULL;
    pthread_t *th = NULL;
    int rc = -1, started = 0, nthreads = o->threads < 1 ? 1 : o->threads;
    job J;
    memset(&J, 0, sizeof J);
    pthread_mutex_init(&J.err_lock, NULL);

    if (gg_file_open(&base, o->base_path, 0, err)) goto out;
    gg_str kind;
    if (gg_meta_get_str(base, "gg.kind", &kind, err)) {
        gg_err_prefix(err, "%s", o->base_path);
        goto out;
    }
    if (kind.len != 5 || memcmp(kind.ptr, "model", 5) != 0) {
        gg_errf(err, "%s: gg.kind is '%.*s', expected a model", o->base_path, (int)(kind.len > 32 ? 32 : kind.len),
                kind.ptr);
        goto out;
    }
    int64_t n_layers;
    if (gg_meta_get_i64(base, "model.n_layers", &n_layers, err)) {
        gg_err_prefix(err, "%s", o->base_path);
        goto out;
    }
    const gg_value *fpv = gg_meta_find(base, "model.fingerprint");
    int has_fp = fpv && fpv->type == GG_V_U64;
    uint64_t base_fp = has_fp ? fpv->v.u : 0;

    size_t nt = gg_tensor_count(base), ncs = 0, tot = 0;
    if (!(ad = calloc(o->n_adapters ? o->n_adapters : 1, sizeof *ad)) || !(P = calloc(nt ? nt : 1, sizeof *P))) {
        gg_errf(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < o->n_adapters; i++) {
        if (!isfinite(o->adapters[i].scale)) {
            gg_errf(err, "adapter %s: scale is not finite", o->adapters[i].path);
            goto out;
        }
        if (load_adapter(&ad[i], o, o->adapters[i].path, base, err)) goto out;
        tot += ad[i]->n;
    }
    /* Which adapter modules add to which tensor (contributions of scale 0 are skipped). */
    if (!(cs = calloc(tot ? tot : 1, sizeof *cs))) {
        gg_errf(err, "out of memory");
        goto out;
    }
    const gg_tensor *t0 = gg_tensor_at(base, 0);
    size_t *owner = calloc(tot ? tot : 1, sizeof *owner);
    if (!owner) {
        gg_errf(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < o->n_adapters; i++)
        for (size_t k = 0; k < ad[i]->n; k++) {
            const gg_adapter_tensor *at = &ad[i]->t[k];
            float s = o->adapters[i].scale * at->scale;
            if (s == 0.0f) continue;
            char name[128];
            gg_lora_weight_name(name, sizeof name, at->layer, at->target);
            const gg_tensor *wt = gg_tensor_find(base, name);
            if (!wt) { /* checked at load; kept for safety */
                gg_errf(err, "adapter %s: base %s has no tensor %s", ad[i]->label, o->base_path, name);
                free(owner);
                goto out;
            }
            owner[ncs] = (size_t)(wt - t0);
            cs[ncs++] = (contrib){at, s};
        }
    /* Group contributions by tensor, in adapter order. */
    for (size_t c = 0; c < ncs; c++) P[owner[c]].nc++;
    {
        for (size_t i = 0; i < nt; i++) {
            if (P[i].nc && !(P[i].c = malloc(P[i].nc * sizeof *P[i].c))) {
                gg_errf(err, "out of memory");
                free(owner);
                goto out;
            }
            P[i].nc = 0;
        }
        for (size_t c = 0; c < ncs; c++) {
            plan *p = &P[owner[c]];
            p->c[p->nc++] = cs[c];
        }
    }
    free(owner);

    /* Output types. */
    for (size_t i = 0; i < nt; i++) P[i].out_type = gg_tensor_at(base, i)->type;
    if (o->set_type)
        for (int64_t l = 0; l < n_layers; l++)
            for (int tg = 0; tg < GG_LT_COUNT; tg++) {
                char name[128];
                gg_lora_weight_name(name, sizeof name, l, (gg_lora_target)tg);
                const gg_tensor *wt = gg_tensor_find(base, name);
                if (!wt) continue;
                gg_err why;
                if (gg_type_check_shape(o->type, wt->ndim, wt->shape, &why) == 0) P[wt - t0].out_type = o->type;
                else notef(o, "%s: kept as %s (%s)", name, gg_type_name(wt->type), why.msg);
            }

    stats->base_fingerprint = base_fp;
    stats->fingerprint = merged_fingerprint(base_fp, ad, o->adapters, o->n_adapters);
    if (!(w = gg_writer_new())) {
        gg_errf(err, "out of memory");
        goto out;
    }
    if (write_metadata(o, base, w, base_fp, has_fp, stats->fingerprint, err)) goto out;
    for (size_t i = 0; i < nt; i++) {
        const gg_tensor *t = gg_tensor_at(base, i);
        if (gg_writer_add_tensor(w, t->name, P[i].out_type, t->ndim, t->shape, &P[i].widx, err)) goto out;
    }
    if (gg_writer_begin(w, o->out_path, o->alignment ? o->alignment : gg_file_alignment(base), err)) goto out;

    J.base = base;
    J.p = P;
    J.n = nt;
    J.w = w;
    if (!(th = calloc((size_t)nthreads, sizeof *th))) {
        gg_errf(err, "out of memory");
        goto out;
    }
    for (; started < nthreads; started++)
        if (pthread_create(&th[started], NULL, worker, &J)) break;
    if (!started) worker(&J); /* no thread could start: do it here */
    for (int k = 0; k < started; k++) pthread_join(th[k], NULL);
    if (atomic_load(&J.failed)) {
        *err = J.err;
        goto out;
    }
    if (gg_writer_finish(w, err)) goto out;

    stats->n_tensors = nt;
    double sum = 0, qsum = 0;
    for (size_t i = 0; i < nt; i++) {
        const gg_tensor *t = gg_tensor_at(base, i);
        if (P[i].out_type != t->type) stats->n_retyped++;
        if (!P[i].merged) continue;
        stats->n_merged++;
        if (gg_type_is_quantized(P[i].out_type)) {
            stats->n_quantized++;
            qsum += P[i].info.lost;
            if (P[i].info.lost > stats->qlost_max) stats->qlost_max = P[i].info.lost;
        }
        sum += P[i].info.lost;
        if (P[i].info.lost > stats->lost_max || !stats->worst[0]) {
            stats->lost_max = P[i].info.lost;
            snprintf(stats->worst, sizeof stats->worst, "%s", t->name);
        }
        if (o->on_tensor) o->on_tensor(o->ctx, &P[i].info);
    }
    stats->lost_mean = stats->n_merged ? sum / (double)stats->n_merged : 0;
    stats->qlost_mean = stats->n_quantized ? qsum / (double)stats->n_quantized : 0;
    struct stat sb;
    stats->output_bytes = stat(o->out_path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    rc = 0;
out:
    gg_writer_free(w); /* removes OUT.tmp unless finished */
    free(th);
    if (P)
        for (size_t i = 0; i < gg_tensor_count(base); i++) free(P[i].c);
    free(P);
    free(cs);
    if (ad)
        for (size_t i = 0; i < o->n_adapters; i++) gg_adapter_free(ad[i]);
    free(ad);
    if (base) gg_file_close(base);
    pthread_mutex_destroy(&J.err_lock);
    return rc;
}

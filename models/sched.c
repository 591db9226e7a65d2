/* sched.c — continuous batching (sched.h): slots, a bounded FIFO queue, an
 * adapter registry with reference counts, and one worker thread.
 *
 * Locking: one mutex guards the queue, the slots' request pointers, every
 * request's `cancelled` flag, the adapter table and the stats. The worker
 * takes it at the start of each step (sweep cancellations, admit requests),
 * drops it for the forward and the callbacks, and takes it again to retire
 * finished requests. A running request's other fields belong to the worker.
 * The worker sleeps on the condition variable when nothing is queued,
 * running or waiting to be cancelled. Only the worker computes on the
 * model's backend; other threads only allocate / upload / free adapters
 * through it (gg_lora_new, gg_lora_free), which the CPU backend allows.
 *
 * A step: every generating slot feeds its last sampled token (one row);
 * slots still reading their prompt feed chunks, oldest request first, from
 * what is left of max_step_tokens (decode rows always fit, since
 * max_step_tokens >= n_slots). Echo requests evaluate their whole prompt
 * (no prefix reuse) with every row's logits, at most ECHO_LOGITS floats of
 * them per step.
 *
 * Choices sched.h leaves open:
 * - Admission: the free slot whose cache, computed with the same adapter,
 *   shares the longest prefix with the prompt; on ties the shortest cache.
 *   At most n_prompt - 1 tokens are reused (the last one gives the logits).
 * - The end-of-sequence token (model config eos_id) is not reported: the
 *   request ends with a final event id = -1, STOP. A callback's nonzero
 *   answer to a non-final event: final event id = -1, STOP.
 * - max_tokens = 0: after the (echoed) prompt events, a final event id = -1,
 *   LENGTH.
 * - stats.finished counts a request just before its final event is sent;
 *   stats.active drops just after.
 * - gg_sched_opts fields that are 0 take their defaults; negative ones are
 *   refused. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_internal.h"
#include "models/sched.h"

/* Most floats of host logits an echoed prompt chunk may take in one step
 * (128 MiB; e.g. 261 rows of a 128k vocabulary). */
#define ECHO_LOGITS ((int64_t)1 << 25)

typedef struct sreq sreq;
struct sreq {
    uint64_t id, admit_seq;
    int32_t *hist; /* prompt, then the generated tokens: [n_prompt + max_tokens] */
    size_t n_prompt, n_hist;
    int adapter;
    gg_sampler *smp;
    int64_t max_tokens, n_gen;
    int ignore_eos, echo, n_top;
    gg_sched_cb cb;
    void *user;
    int cancelled; /* under the lock */
    int done;      /* worker: the final event was sent */
    sreq *next;
};

typedef struct slot {
    gg_session *s;
    int32_t *cached; /* the tokens in the KV cache [slot_ctx] */
    int64_t n_cached;
    int cache_adapter; /* the adapter the cache was computed with (-1: base) */
    sreq *r;           /* NULL when free */
    int64_t fed;       /* tokens of r->hist in the cache */
    int64_t step_n;    /* rows in the current step (0: none) */
} slot;

typedef struct adent {
    gg_lora *l;
    float scale;
    int live, refs;
} adent;

struct gg_sched {
    gg_model *m;
    gg_backend *be;
    gg_sched_opts o;
    int64_t vocab, eos;
    gg_batch *batch;
    slot *slots;
    adent *ads;
    int n_ads, cap_ads;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t worker;
    int started, shutdown;
    sreq *qhead, *qtail; /* waiting requests */
    int n_queued;
    sreq *dead; /* cancelled while queued: the worker sends their final events */
    uint64_t next_id, admit_seq;
    gg_sched_stats st;

    /* worker-only scratch */
    gg_session **ss;
    const int32_t **ids;
    int64_t *ns;
    int *all;
    slot **stepslots;
    float *lg;
    size_t lg_cap;
    float *tmp; /* [vocab] */
};

void gg_sched_opts_default(gg_sched_opts *o) {
    o->n_slots = 4;
    o->slot_ctx = 0;
    o->max_step_tokens = 512;
    o->queue_cap = 64;
}

int64_t gg_sched_slot_ctx(const gg_sched *s) { return s->o.slot_ctx; }

/* ---- adapters (lock held) ---- */

static void adapter_unref(gg_sched *s, int h) {
    if (h < 0) return;
    adent *a = &s->ads[h];
    if (--a->refs == 0 && !a->live) {
        gg_lora_free(a->l);
        a->l = NULL;
    }
}

int gg_sched_adapter_add(gg_sched *s, gg_lora *l, float scale, gg_err *err) {
    if (!l) return gg_errf(err, "adapter: none given");
    if (l->be != s->be || l->n_layers != gg_model_cfg(s->m)->n_layers) {
        gg_lora_free(l);
        return gg_errf(err, "adapter: made for another model");
    }
    if (!isfinite(scale)) {
        gg_lora_free(l);
        return gg_errf(err, "adapter: scale is not finite");
    }
    pthread_mutex_lock(&s->mu);
    if (s->n_ads == s->cap_ads) {
        int nc = s->cap_ads ? 2 * s->cap_ads : 8;
        adent *na = realloc(s->ads, (size_t)nc * sizeof *na);
        if (!na) {
            pthread_mutex_unlock(&s->mu);
            gg_lora_free(l);
            return gg_errf(err, "out of memory");
        }
        s->ads = na;
        s->cap_ads = nc;
    }
    int h = s->n_ads++;
    s->ads[h] = (adent){.l = l, .scale = scale, .live = 1, .refs = 0};
    pthread_mutex_unlock(&s->mu);
    return h;
}

int gg_sched_adapter_remove(gg_sched *s, int handle, gg_err *err) {
    pthread_mutex_lock(&s->mu);
    if (handle < 0 || handle >= s->n_ads || !s->ads[handle].live) {
        pthread_mutex_unlock(&s->mu);
        return gg_errf(err, "adapter %d: no such adapter", handle);
    }
    adent *a = &s->ads[handle];
    a->live = 0;
    int signal = 0;
    for (sreq *r = s->qhead; r; r = r->next)
        if (r->adapter == handle) {
            r->cancelled = 1;
            signal = 1;
        }
    if (a->refs == 0) {
        gg_lora_free(a->l);
        a->l = NULL;
    }
    if (signal) pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* ---- requests ---- */

static void req_free(sreq *r) {
    if (!r) return;
    gg_sampler_free(r->smp);
    free(r->hist);
    free(r);
}

/* Send an event (worker, lock not held); returns the callback's answer.
 * A final event counts the request as finished before it is sent. */
static int emit(gg_sched *s, sreq *r, const gg_sched_event *ev) {
    if (ev->finish != GG_FINISH_NONE) {
        pthread_mutex_lock(&s->mu);
        s->st.finished++;
        pthread_mutex_unlock(&s->mu);
        r->done = 1;
    }
    return r->cb ? r->cb(r->user, ev) : 0;
}

/* Send the final event without a token. */
static void emit_final(gg_sched *s, sreq *r, gg_finish f, const char *error) {
    gg_sched_event ev = {.id = -1, .logprob = NAN, .finish = f, .error = error};
    emit(s, r, &ev);
}

int gg_sched_submit(gg_sched *s, const gg_sched_req *q, uint64_t *id, gg_err *err) {
    if (!q || !q->prompt || q->n_prompt < 1) return gg_errf(err, "request: empty prompt");
    if (q->max_tokens < 0) return gg_errf(err, "request: max_tokens %lld is negative", (long long)q->max_tokens);
    if ((int64_t)q->n_prompt > s->o.slot_ctx || q->max_tokens > s->o.slot_ctx - (int64_t)q->n_prompt)
        return gg_errf(err, "request: %zu prompt tokens + %lld max_tokens exceed the context of %lld tokens",
                       q->n_prompt, (long long)q->max_tokens, (long long)s->o.slot_ctx);
    if (q->n_top < 0 || q->n_top > GG_SCHED_MAX_TOP)
        return gg_errf(err, "request: n_top %d is outside 0..%d", q->n_top, GG_SCHED_MAX_TOP);
    for (size_t i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= s->vocab)
            return gg_errf(err, "request: prompt token %zu (id %d) is outside the vocabulary (0..%lld)", i,
                           q->prompt[i], (long long)s->vocab - 1);
    if (gg_sample_params_check(&q->sample, err)) return gg_err_prefix(err, "request");
    sreq *r = calloc(1, sizeof *r);
    if (!r) return gg_errf(err, "out of memory");
    r->hist = malloc((q->n_prompt + (size_t)q->max_tokens) * sizeof *r->hist);
    r->smp = gg_sampler_new(&q->sample, s->vocab);
    if (!r->hist || !r->smp) {
        req_free(r);
        return gg_errf(err, "out of memory");
    }
    memcpy(r->hist, q->prompt, q->n_prompt * sizeof *r->hist);
    r->n_prompt = r->n_hist = q->n_prompt;
    r->adapter = q->adapter;
    r->max_tokens = q->max_tokens;
    r->ignore_eos = q->ignore_eos;
    r->echo = q->echo;
    r->n_top = q->n_top;
    r->cb = q->cb;
    r->user = q->user;

    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (s->shutdown) rc = gg_errf(err, "request: the scheduler is shutting down");
    else if (q->adapter != -1 && (q->adapter < 0 || q->adapter >= s->n_ads || !s->ads[q->adapter].live))
        rc = gg_errf(err, "request: adapter %d: no such adapter", q->adapter);
    else if (s->n_queued >= s->o.queue_cap) {
        s->st.rejected++;
        rc = GG_SCHED_EFULL;
        gg_errf(err, "request: the queue is full (%d waiting)", s->n_queued);
    }
    if (rc) {
        pthread_mutex_unlock(&s->mu);
        req_free(r);
        return rc;
    }
    if (r->adapter >= 0) s->ads[r->adapter].refs++;
    r->id = ++s->next_id;
    if (s->qtail) s->qtail->next = r;
    else s->qhead = r;
    s->qtail = r;
    s->n_queued++;
    if (id) *id = r->id;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Unlink r from the queue (lock held). */
static void queue_unlink(gg_sched *s, sreq *r) {
    sreq *prev = NULL;
    for (sreq *p = s->qhead; p; prev = p, p = p->next)
        if (p == r) {
            if (prev) prev->next = r->next;
            else s->qhead = r->next;
            if (s->qtail == r) s->qtail = prev;
            r->next = NULL;
            s->n_queued--;
            return;
        }
}

void gg_sched_cancel(gg_sched *s, uint64_t id) {
    pthread_mutex_lock(&s->mu);
    for (sreq *r = s->qhead; r; r = r->next)
        if (r->id == id) r->cancelled = 1;
    for (int i = 0; i < s->o.n_slots; i++)
        if (s->slots[i].r && s->slots[i].r->id == id) s->slots[i].r->cancelled = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void gg_sched_stats_get(gg_sched *s, gg_sched_stats *st) {
    pthread_mutex_lock(&s->mu);
    *st = s->st;
    st->n_slots = s->o.n_slots;
    st->queued = s->n_queued;
    st->active = 0;
    for (int i = 0; i < s->o.n_slots; i++) st->active += s->slots[i].r != NULL;
    pthread_mutex_unlock(&s->mu);
}

/* ---- the worker ---- */

/* Move cancelled queued requests to the dead list (lock held). */
static void sweep_queue(gg_sched *s) {
    for (sreq *r = s->qhead, *nx; r; r = nx) {
        nx = r->next;
        if (r->cancelled || s->shutdown) {
            queue_unlink(s, r);
            r->next = s->dead;
            s->dead = r;
        }
    }
}

static int64_t common_prefix(const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
    int64_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Give queued requests free slots, oldest first (lock held). Each goes to
 * the free slot whose cache (computed with the same adapter) shares the
 * longest prefix with its prompt (echo requests: none), and among those to
 * the one with the shortest cache, so that long caches wait for a request
 * that can reuse them. */
static void admit(gg_sched *s) {
    while (s->qhead) {
        sreq *r = s->qhead;
        int best = -1;
        int64_t best_lcp = -1;
        for (int i = 0; i < s->o.n_slots; i++) {
            slot *sl = &s->slots[i];
            if (sl->r) continue;
            int64_t lcp = !r->echo && sl->cache_adapter == r->adapter
                              ? common_prefix(sl->cached, sl->n_cached, r->hist, (int64_t)r->n_prompt)
                              : 0;
            if (best < 0 || lcp > best_lcp || (lcp == best_lcp && sl->n_cached < s->slots[best].n_cached)) {
                best = i;
                best_lcp = lcp;
            }
        }
        if (best < 0) return;
        queue_unlink(s, r);
        slot *sl = &s->slots[best];
        int64_t keep = 0;
        if (!r->echo && sl->cache_adapter == r->adapter) {
            keep = common_prefix(sl->cached, sl->n_cached, r->hist, (int64_t)r->n_prompt);
            if (keep > (int64_t)r->n_prompt - 1) keep = (int64_t)r->n_prompt - 1; /* logits need a row */
        }
        gg_session_truncate(sl->s, keep);
        sl->n_cached = keep;
        sl->fed = keep;
        sl->r = r;
        sl->cache_adapter = r->adapter;
        r->admit_seq = ++s->admit_seq;
        s->st.reused_tokens += (uint64_t)keep;
        gg_err err;
        int rc;
        if (r->adapter >= 0) {
            adent *a = &s->ads[r->adapter];
            rc = gg_session_set_adapters(sl->s, &a->l, &a->scale, 1, &err);
        } else {
            rc = gg_session_set_adapters(sl->s, NULL, NULL, 0, &err);
        }
        if (rc) r->cancelled = 2; /* ended with an error by the step */
    }
}

/* log-softmax of row x at id, and the n_top best (most probable first,
 * lower id first on ties; NaN never listed). Degenerate rows: with +inf
 * logits those share the probability; with none finite, every logprob is
 * NaN. */
static double lp_of(float v, float mx, double lse, double n_inf) {
    if (isinf(mx) && mx > 0) return v == mx ? -log(n_inf) : -INFINITY;
    if (isnan(v) || mx == -INFINITY) return NAN;
    return (double)v - lse;
}

static void logprobs(const float *x, int64_t V, int32_t id, int n_top, gg_sched_event *ev) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < V; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0, n_inf = 0;
    for (int64_t i = 0; i < V; i++) {
        if (isnan(x[i])) continue;
        if (isinf(mx)) n_inf += x[i] == mx;
        else sum += exp((double)x[i] - mx);
    }
    double lse = isinf(mx) ? 0 : (double)mx + log(sum);
    ev->logprob = id >= 0 ? (float)lp_of(x[id], mx, lse, n_inf) : NAN;
    int k = 0;
    for (int64_t i = 0; i < V && n_top > 0; i++) {
        float v = x[i];
        if (isnan(v)) continue;
        if (k == n_top && !(v > x[ev->top_ids[k - 1]])) continue;
        int j = k < n_top ? k++ : k - 1;
        while (j > 0 && v > x[ev->top_ids[j - 1]]) {
            ev->top_ids[j] = ev->top_ids[j - 1];
            j--;
        }
        ev->top_ids[j] = (int32_t)i;
    }
    ev->n_top = k;
    for (int j = 0; j < k; j++) ev->top_logprobs[j] = (float)lp_of(x[ev->top_ids[j]], mx, lse, n_inf);
}

/* End the request of slot sl (worker, lock not held); the cache stays. */
static void retire(gg_sched *s, slot *sl) {
    sreq *r = sl->r;
    gg_err err;
    gg_session_set_adapters(sl->s, NULL, NULL, 0, &err);
    pthread_mutex_lock(&s->mu);
    sl->r = NULL;
    sl->step_n = 0;
    adapter_unref(s, r->adapter);
    pthread_mutex_unlock(&s->mu);
    req_free(r);
}

/* A queued request that never ran (lock not held). */
static void retire_dead(gg_sched *s, sreq *r) {
    emit_final(s, r, GG_FINISH_CANCELLED, NULL);
    pthread_mutex_lock(&s->mu);
    adapter_unref(s, r->adapter);
    pthread_mutex_unlock(&s->mu);
    req_free(r);
}

/* After a step: slot sl fed step_n tokens of its request; lg holds their
 * logits (every row for an echoed prompt chunk, else the last row). Sends
 * the events: echoed prompt tokens, then the sampled token, if the prompt
 * is done. Sets r->done when the request ended. */
static void process_slot(gg_sched *s, slot *sl, const float *lg) {
    sreq *r = sl->r;
    int64_t V = s->vocab, n = sl->step_n, start = sl->fed;
    /* tokens [start, start + n) of hist were fed; the cache holds them */
    memcpy(sl->cached + sl->n_cached, r->hist + start, (size_t)n * sizeof *r->hist);
    sl->n_cached += n;
    sl->fed += n;
    int64_t np = (int64_t)r->n_prompt;
    int prompt_chunk = start < np;
    if (prompt_chunk) {
        pthread_mutex_lock(&s->mu);
        s->st.prompt_tokens += (uint64_t)n;
        pthread_mutex_unlock(&s->mu);
    }
    if (prompt_chunk && r->echo) {
        /* rows of this chunk are prompt positions start .. start + n - 1 */
        if (start == 0) {
            gg_sched_event ev = {.id = r->hist[0], .is_prompt = 1, .logprob = NAN};
            if (emit(s, r, &ev)) {
                emit_final(s, r, GG_FINISH_STOP, NULL);
                return;
            }
        }
        for (int64_t p = start; p < start + n && p + 1 < np; p++) {
            gg_sched_event ev = {.id = r->hist[p + 1], .is_prompt = 1};
            logprobs(lg + (p - start) * V, V, r->hist[p + 1], r->n_top, &ev);
            if (emit(s, r, &ev)) {
                emit_final(s, r, GG_FINISH_STOP, NULL);
                return;
            }
        }
    }
    if (sl->fed < np) return; /* more prompt to read */
    if (r->n_gen >= r->max_tokens) { /* max_tokens 0: scoring only */
        emit_final(s, r, GG_FINISH_LENGTH, NULL);
        return;
    }
    const float *row = lg + ((prompt_chunk && r->echo) ? (n - 1) * V : 0);
    /* the sampler changes its row in place: it gets a copy, the raw row
     * gives the logprobs */
    memcpy(s->tmp, row, (size_t)V * sizeof *s->tmp);
    int32_t tok = gg_sampler_next(r->smp, s->tmp, r->hist, r->n_hist);
    gg_sched_event ev = {.is_prompt = 0};
    if (!r->ignore_eos && s->eos >= 0 && tok == s->eos) {
        emit_final(s, r, GG_FINISH_STOP, NULL);
        return;
    }
    ev.id = tok;
    logprobs(row, V, tok, r->n_top, &ev);
    r->hist[r->n_hist++] = tok;
    r->n_gen++;
    pthread_mutex_lock(&s->mu);
    s->st.gen_tokens++;
    pthread_mutex_unlock(&s->mu);
    if (r->n_gen >= r->max_tokens) ev.finish = GG_FINISH_LENGTH;
    else if (sl->n_cached + 1 > s->o.slot_ctx) ev.finish = GG_FINISH_LENGTH;
    int stop = emit(s, r, &ev);
    if (ev.finish == GG_FINISH_NONE && stop) emit_final(s, r, GG_FINISH_STOP, NULL);
}

static void *worker_main(void *arg) {
    gg_sched *s = arg;
    int64_t V = s->vocab;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (;;) {
            int active = 0;
            for (int i = 0; i < s->o.n_slots; i++) active += s->slots[i].r != NULL;
            if (s->shutdown || active || s->qhead || s->dead) break;
            pthread_cond_wait(&s->cv, &s->mu);
        }
        sweep_queue(s);
        /* running requests cancelled (or everything, at shutdown) */
        for (int i = 0; i < s->o.n_slots; i++) {
            slot *sl = &s->slots[i];
            sl->step_n = 0;
            if (sl->r && (sl->r->cancelled == 1 || s->shutdown)) sl->step_n = -1;
            else if (sl->r && sl->r->cancelled == 2) sl->step_n = -2;
        }
        if (!s->shutdown) admit(s);
        for (int i = 0; i < s->o.n_slots; i++) /* failed admissions */
            if (s->slots[i].r && s->slots[i].r->cancelled == 2 && s->slots[i].step_n == 0) s->slots[i].step_n = -2;
        sreq *dead = s->dead;
        s->dead = NULL;
        int shutdown = s->shutdown;
        pthread_mutex_unlock(&s->mu);

        while (dead) {
            sreq *r = dead;
            dead = r->next;
            retire_dead(s, r);
        }
        for (int i = 0; i < s->o.n_slots; i++) {
            slot *sl = &s->slots[i];
            if (sl->step_n == -1 || sl->step_n == -2) {
                if (sl->step_n == -1) emit_final(s, sl->r, GG_FINISH_CANCELLED, NULL);
                else emit_final(s, sl->r, GG_FINISH_ERROR, "could not set the request's adapter");
                retire(s, sl);
            }
        }
        if (shutdown) {
            pthread_mutex_lock(&s->mu);
            int left = s->qhead != NULL || s->dead != NULL;
            if (!left) break;
            continue;
        }

        /* Plan the step: decode rows first, then prompt chunks, oldest first. */
        int64_t budget = s->o.max_step_tokens;
        size_t n_seq = 0;
        for (int i = 0; i < s->o.n_slots; i++) {
            slot *sl = &s->slots[i];
            if (!sl->r || sl->fed < (int64_t)sl->r->n_prompt) continue;
            sl->step_n = 1;
            budget--;
        }
        /* Echoed chunks want every row's logits on the host: at most
         * ECHO_LOGITS floats of them per step (at least one row). */
        int64_t echo_rows = ECHO_LOGITS / V > 0 ? ECHO_LOGITS / V : 1;
        for (;;) {
            slot *pick = NULL;
            for (int i = 0; i < s->o.n_slots; i++) {
                slot *sl = &s->slots[i];
                if (!sl->r || sl->step_n || sl->fed >= (int64_t)sl->r->n_prompt) continue;
                if (sl->r->echo && echo_rows <= 0) continue;
                if (!pick || sl->r->admit_seq < pick->r->admit_seq) pick = sl;
            }
            if (!pick || budget <= 0) break;
            int64_t left = (int64_t)pick->r->n_prompt - pick->fed, n = left < budget ? left : budget;
            if (pick->r->echo) {
                if (n > echo_rows) n = echo_rows;
                echo_rows -= n;
            }
            pick->step_n = n;
            budget -= n;
        }
        size_t rows_out = 0;
        for (int i = 0; i < s->o.n_slots; i++) {
            slot *sl = &s->slots[i];
            if (sl->step_n <= 0) continue;
            int all = sl->r->echo && sl->fed < (int64_t)sl->r->n_prompt;
            s->ss[n_seq] = sl->s;
            s->ids[n_seq] = sl->r->hist + sl->fed;
            s->ns[n_seq] = sl->step_n;
            s->all[n_seq] = all;
            s->stepslots[n_seq] = sl;
            rows_out += all ? (size_t)sl->step_n : 1;
            n_seq++;
        }
        if (n_seq == 0) {
            pthread_mutex_lock(&s->mu);
            continue;
        }
        if (rows_out * (size_t)V > s->lg_cap) {
            float *nl = realloc(s->lg, rows_out * (size_t)V * sizeof *nl);
            if (nl) {
                s->lg = nl;
                s->lg_cap = rows_out * (size_t)V;
            }
        }
        gg_err err;
        int rc = rows_out * (size_t)V > s->lg_cap
                     ? gg_errf(&err, "out of memory for %zu rows of logits", rows_out)
                     : gg_batch_eval(s->batch, s->ss, s->ids, s->ns, n_seq, s->lg, s->all, &err);
        pthread_mutex_lock(&s->mu);
        s->st.steps++;
        pthread_mutex_unlock(&s->mu);
        if (rc) {
            for (size_t k = 0; k < n_seq; k++) {
                slot *sl = s->stepslots[k];
                gg_session_truncate(sl->s, 0);
                sl->n_cached = 0;
                emit_final(s, sl->r, GG_FINISH_ERROR, err.msg);
                retire(s, sl);
            }
        } else {
            size_t off = 0;
            for (size_t k = 0; k < n_seq; k++) {
                slot *sl = s->stepslots[k];
                size_t rows = s->all[k] ? (size_t)s->ns[k] : 1;
                process_slot(s, sl, s->lg + off * (size_t)V);
                off += rows;
                if (sl->r->done) retire(s, sl);
            }
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int gg_sched_new(gg_sched **out, gg_model *m, const gg_sched_opts *o, gg_err *err) {
    *out = NULL;
    const gg_model_config *c = gg_model_cfg(m);
    gg_sched_opts d;
    gg_sched_opts_default(&d);
    if (o) {
        if (o->n_slots > 0) d.n_slots = o->n_slots;
        if (o->slot_ctx > 0) d.slot_ctx = o->slot_ctx;
        if (o->max_step_tokens > 0) d.max_step_tokens = o->max_step_tokens;
        if (o->queue_cap > 0) d.queue_cap = o->queue_cap;
        if (o->n_slots < 0 || o->slot_ctx < 0 || o->max_step_tokens < 0 || o->queue_cap < 0)
            return gg_errf(err, "scheduler: negative option");
    }
    if (d.slot_ctx == 0) d.slot_ctx = c->context_length < 4096 ? c->context_length : 4096;
    if (d.n_slots > 256) return gg_errf(err, "scheduler: %d slots; at most 256", d.n_slots);
    if (d.slot_ctx > c->context_length)
        return gg_errf(err, "scheduler: slot context %lld exceeds the model's %lld tokens", (long long)d.slot_ctx,
                       (long long)c->context_length);
    if (d.max_step_tokens < d.n_slots)
        return gg_errf(err, "scheduler: max_step_tokens %lld is below n_slots %d", (long long)d.max_step_tokens,
                       d.n_slots);
    gg_sched *s = calloc(1, sizeof *s);
    if (!s) return gg_errf(err, "out of memory");
    s->m = m;
    s->be = gg_model_backend(m);
    s->o = d;
    s->vocab = c->vocab;
    s->eos = c->eos_id;
    size_t ns = (size_t)d.n_slots;
    s->slots = calloc(ns, sizeof *s->slots);
    s->ss = calloc(ns, sizeof *s->ss);
    s->ids = calloc(ns, sizeof *s->ids);
    s->ns = calloc(ns, sizeof *s->ns);
    s->all = calloc(ns, sizeof *s->all);
    s->stepslots = calloc(ns, sizeof *s->stepslots);
    s->tmp = malloc((size_t)c->vocab * sizeof *s->tmp);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!s->slots || !s->ss || !s->ids || !s->ns || !s->all || !s->stepslots || !s->tmp) {
        gg_sched_free(s);
        return gg_errf(err, "out of memory");
    }
    if (gg_batch_new(&s->batch, m, d.max_step_tokens, err)) {
        gg_sched_free(s);
        return gg_err_prefix(err, "scheduler");
    }
    for (int i = 0; i < d.n_slots; i++) {
        slot *sl = &s->slots[i];
        sl->cache_adapter = -1;
        sl->cached = malloc((size_t)d.slot_ctx * sizeof *sl->cached);
        if (!sl->cached) {
            gg_sched_free(s);
            return gg_errf(err, "out of memory");
        }
        if (gg_session_new(&sl->s, m, d.slot_ctx, 1, err)) {
            gg_sched_free(s);
            return gg_err_prefix(err, "scheduler slot %d", i);
        }
    }
    if (pthread_create(&s->worker, NULL, worker_main, s)) {
        gg_sched_free(s);
        return gg_errf(err, "scheduler: could not start the worker thread");
    }
    s->started = 1;
    *out = s;
    return 0;
}

void gg_sched_free(gg_sched *s) {
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->shutdown = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->worker, NULL);
    }
    for (int i = 0; s->slots && i < s->o.n_slots; i++) {
        gg_session_free(s->slots[i].s);
        free(s->slots[i].cached);
    }
    for (int i = 0; i < s->n_ads; i++) gg_lora_free(s->ads[i].l);
    gg_batch_free(s->batch);
    free(s->ads);
    free(s->slots);
    free(s->ss);
    free(s->ids);
    free(s->ns);
    free(s->all);
    free(s->stepslots);
    free(s->lg);
    free(s->tmp);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

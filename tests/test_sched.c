/* test_sched.c — the continuous-batching scheduler (models/sched.h) on the
 * llama2-mha fixture with its PEFT adapter (A) and a random one (B):
 * greedy and seeded sampling through the scheduler (6 requests, 3 slots,
 * mixed adapters, max_step_tokens small enough to split prompts) give the
 * tokens of a plain gg_session + gg_sampler; echo logprobs equal the
 * log-softmax of gg_session_eval's logits (first token NaN, top-n sorted);
 * prefix reuse shows in the stats and changes no result; a full queue is
 * GG_SCHED_EFULL; cancel of a queued and of a running request; a callback
 * that stops; removing an adapter with requests queued (cancelled) and
 * running (they finish); bad requests are refused; submits from 4 threads;
 * gg_sched_free ends every request with exactly one final event. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "models/model_internal.h"
#include "models/sched.h"
#include "tests/check.h"
#include "tests/fixture_gg.h"
#include "tests/random_lora.h"
#include "tests/rng.h"
#include "tools/engine.h"

static char tmpdir[] = "/tmp/gg_test_sched_XXXXXX";
static gg_backend *be, *rbe; /* the scheduler's; the reference's (a backend serves one thread at a time) */
static gg_file *file;
static gg_model *model, *rmodel;
static int64_t V;
static char lora_dir[600];

/* ---- adapters ---- */

static gg_lora *random_lora(uint64_t seed) { return test_random_lora(model, seed, 4, 1.0f); }

static gg_lora *peft_lora_on(gg_model *m) {
    gg_lora *l = NULL;
    gg_err err;
    if (gg_tool_load_adapter(&l, m, file, lora_dir, &err)) fprintf(stderr, "peft: %s\n", err.msg);
    return l;
}

static gg_lora *peft_lora(void) { return peft_lora_on(model); }

/* Reference adapters (the scheduler owns its own copies). */
static gg_lora *refA, *refB;
static gg_lora *ref_adapter(int which) { return which == 1 ? refA : which == 2 ? refB : NULL; }

/* ---- the reference: a plain session and sampler ---- */

static int ref_generate(const int32_t *prompt, size_t np, int which, const gg_sample_params *sp, int64_t max_tokens,
                        int ignore_eos, int32_t *out) {
    gg_err err;
    gg_session *s;
    if (gg_session_new(&s, rmodel, 256, 64, &err)) return -1;
    gg_lora *l = ref_adapter(which);
    float one = 1.0f;
    if (l && gg_session_set_adapters(s, &l, &one, 1, &err)) return -1;
    float *lg = malloc((size_t)V * sizeof *lg);
    int32_t *hist = malloc((np + (size_t)max_tokens + 1) * sizeof *hist);
    memcpy(hist, prompt, np * sizeof *hist);
    size_t nh = np;
    gg_sampler *smp = gg_sampler_new(sp, V);
    int n = 0, rc = gg_session_eval(s, prompt, (int64_t)np, lg, 0, &err);
    while (rc == 0 && n < max_tokens) {
        int32_t t = gg_sampler_next(smp, lg, hist, nh);
        if (!ignore_eos && t == gg_model_cfg(model)->eos_id) break;
        out[n++] = t;
        hist[nh++] = t;
        if (n < max_tokens) rc = gg_session_eval(s, &t, 1, lg, 0, &err);
    }
    if (rc) fprintf(stderr, "ref: %s\n", err.msg);
    gg_sampler_free(smp);
    free(hist);
    free(lg);
    gg_session_free(s);
    return rc ? -1 : n;
}

/* ---- collecting events ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

typedef struct coll {
    int32_t toks[300];
    float lps[300];
    int n;          /* generated tokens reported */
    int32_t ptoks[300];
    float plps[300];
    int pntop[300];
    int32_t ptop[300][GG_SCHED_MAX_TOP];
    float ptoplp[300][GG_SCHED_MAX_TOP];
    int np;         /* prompt events */
    gg_finish fin;
    int32_t final_id;
    int done, after_final, bad_order;
    int stop_after; /* > 0: return 1 at that many generated tokens */
    int gate;       /* block in the first callback until gate_open */
    char error[256];
} coll;

static int gate_open = 1, gate_waiting = 0;

static int cb(void *user, const gg_sched_event *ev) {
    coll *c = user;
    pthread_mutex_lock(&mu);
    if (c->done) c->after_final++;
    if (ev->is_prompt) {
        if (c->n) c->bad_order = 1;
        if (c->np < 300) {
            c->ptoks[c->np] = ev->id;
            c->plps[c->np] = ev->logprob;
            c->pntop[c->np] = ev->n_top;
            memcpy(c->ptop[c->np], ev->top_ids, sizeof ev->top_ids);
            memcpy(c->ptoplp[c->np], ev->top_logprobs, sizeof ev->top_logprobs);
            c->np++;
        }
    } else if (ev->id >= 0 && c->n < 300) {
        c->lps[c->n] = ev->logprob;
        c->toks[c->n++] = ev->id;
    }
    if (ev->finish != GG_FINISH_NONE) {
        c->fin = ev->finish;
        c->final_id = ev->id;
        c->done = 1;
        if (ev->error) snprintf(c->error, sizeof c->error, "%s", ev->error);
        pthread_cond_broadcast(&cv);
    }
    if (c->gate) {
        gate_waiting = 1;
        pthread_cond_broadcast(&cv);
        while (!gate_open) pthread_cond_wait(&cv, &mu);
        c->gate = 0;
    }
    int stop = c->stop_after > 0 && c->n >= c->stop_after && ev->finish == GG_FINISH_NONE;
    pthread_mutex_unlock(&mu);
    return stop;
}

/* Wait for c's final event (at most 20 s). */
static int wait_done(coll *c) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    pthread_mutex_lock(&mu);
    int rc = 0;
    while (!c->done && rc == 0) rc = pthread_cond_timedwait(&cv, &mu, &ts);
    int done = c->done;
    pthread_mutex_unlock(&mu);
    return done;
}

/* Wait until a gated callback is blocked. */
static void wait_gate(void) {
    pthread_mutex_lock(&mu);
    while (!gate_waiting) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void set_gate(int open) {
    pthread_mutex_lock(&mu);
    gate_open = open;
    if (!open) gate_waiting = 0;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static gg_sched *new_sched(int n_slots, int64_t ctx, int64_t step, int qcap, int *hA, int *hB) {
    gg_sched_opts o;
    gg_sched_opts_default(&o);
    o.n_slots = n_slots;
    o.slot_ctx = ctx;
    o.max_step_tokens = step;
    o.queue_cap = qcap;
    gg_sched *s;
    gg_err err;
    if (gg_sched_new(&s, model, &o, &err)) {
        fprintf(stderr, "sched: %s\n", err.msg);
        return NULL;
    }
    if (hA) *hA = gg_sched_adapter_add(s, peft_lora(), 1.0f, &err);
    if (hB) *hB = gg_sched_adapter_add(s, random_lora(7), 1.0f, &err);
    return s;
}

static void make_prompt(int32_t *p, size_t n, uint64_t seed) {
    rng_seed(seed);
    for (size_t i = 0; i < n; i++) p[i] = (int32_t)(3 + rng_u64() % (uint64_t)(V - 3));
}

static gg_sched_req greq(const int32_t *p, size_t np, int adapter, int64_t max_tokens, coll *c) {
    gg_sched_req r = {.prompt = p, .n_prompt = np, .adapter = adapter, .max_tokens = max_tokens, .ignore_eos = 1,
                      .cb = cb, .user = c};
    gg_sample_params_default(&r.sample);
    r.sample.temp = 0;
    return r;
}

/* ---- tests ---- */

static void test_greedy_mixed(void) {
    int hA, hB;
    gg_sched *s = new_sched(3, 128, 12, 16, &hA, &hB);
    REQUIRE(s && hA >= 0 && hB >= 0, "scheduler");
    enum { N = 6 };
    size_t lens[N] = {5, 17, 1, 30, 9, 12};
    int which[N] = {0, 1, 2, 1, 0, 2};
    int64_t maxt[N] = {10, 7, 12, 9, 11, 8};
    int32_t prompts[N][32];
    static coll c[N];
    memset(c, 0, sizeof c);
    gg_err err;
    for (int i = 0; i < N; i++) {
        make_prompt(prompts[i], lens[i], 100 + (uint64_t)i);
        int h = which[i] == 0 ? -1 : which[i] == 1 ? hA : hB;
        gg_sched_req r = greq(prompts[i], lens[i], h, maxt[i], &c[i]);
        if (i == 4) { /* one seeded sampling request */
            r.sample.temp = 0.9f;
            r.sample.seed = 1234;
        }
        uint64_t id;
        CHECK(gg_sched_submit(s, &r, &id, &err) == 0, "submit %d: %s", i, err.msg);
    }
    for (int i = 0; i < N; i++) {
        REQUIRE(wait_done(&c[i]), "request %d did not finish", i);
        int32_t want[32];
        gg_sample_params sp;
        gg_sample_params_default(&sp);
        sp.temp = 0;
        if (i == 4) {
            sp.temp = 0.9f;
            sp.seed = 1234;
        }
        int nw = ref_generate(prompts[i], lens[i], which[i], &sp, maxt[i], 1, want);
        CHECK(c[i].n == nw && memcmp(c[i].toks, want, (size_t)nw * 4) == 0, "request %d: %d tokens vs %d, differ",
              i, c[i].n, nw);
        CHECK(c[i].fin == GG_FINISH_LENGTH && c[i].final_id == want[nw - 1], "request %d: finish %d id %d", i,
              c[i].fin, c[i].final_id);
        CHECK(c[i].np == 0 && !c[i].after_final, "request %d: prompt events %d, after final %d", i, c[i].np,
              c[i].after_final);
    }
    gg_sched_stats st;
    for (int k = 0; k < 1000; k++) { /* a slot is freed just after its final event */
        gg_sched_stats_get(s, &st);
        if (!st.active) break;
        usleep(1000);
    }
    uint64_t gen = 0, prompt = 0;
    for (int i = 0; i < N; i++) gen += (uint64_t)maxt[i], prompt += lens[i];
    CHECK(st.finished == N && st.gen_tokens == gen && st.prompt_tokens + st.reused_tokens == prompt &&
              st.active == 0 && st.queued == 0,
          "stats: finished %llu gen %llu prompt %llu reused %llu", (unsigned long long)st.finished,
          (unsigned long long)st.gen_tokens, (unsigned long long)st.prompt_tokens,
          (unsigned long long)st.reused_tokens);
    printf("  6 requests over 3 slots: %llu steps for %llu prompt + %llu generated tokens\n",
           (unsigned long long)st.steps, (unsigned long long)st.prompt_tokens, (unsigned long long)st.gen_tokens);
    gg_sched_free(s);
}

/* log-softmax of a row, in double. */
static void log_softmax(const float *x, int64_t n, double *out) {
    double mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    for (int64_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    for (int64_t i = 0; i < n; i++) out[i] = (double)x[i] - mx - log(sum);
}

static int argmax_row(const float *x, int64_t n) {
    int b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = (int)i;
    return b;
}

/* Echo: every prompt token's logprob and top-5 equal the log-softmax of
 * the session's all-position logits; the generated tokens' too. The
 * prompt (20 tokens) is read in chunks of at most 8. */
static void test_echo_logprobs(void) {
    int hA;
    gg_sched *s = new_sched(2, 64, 8, 8, &hA, NULL);
    REQUIRE(s && hA >= 0, "scheduler");
    enum { NP = 20, NG = 3 };
    int32_t p[NP];
    make_prompt(p, NP, 55);
    static coll c[2];
    memset(c, 0, sizeof c);
    gg_err err;
    gg_sched_req r = greq(p, NP, hA, NG, &c[0]);
    r.echo = 1;
    r.n_top = 5;
    CHECK(gg_sched_submit(s, &r, NULL, &err) == 0, "%s", err.msg);
    r = greq(p, NP, -1, 0, &c[1]);
    r.echo = 1;
    r.n_top = 2;
    CHECK(gg_sched_submit(s, &r, NULL, &err) == 0, "%s", err.msg);
    REQUIRE(wait_done(&c[0]) && wait_done(&c[1]), "not finished");

    for (int k = 0; k < 2; k++) {
        /* reference logits: prompt rows, then each generated token */
        gg_session *ss;
        REQUIRE(gg_session_new(&ss, rmodel, 64, 64, &err) == 0, "%s", err.msg);
        gg_lora *l = k == 0 ? refA : NULL;
        float one = 1.0f;
        REQUIRE(gg_session_set_adapters(ss, &l, &one, l ? 1 : 0, &err) == 0, "%s", err.msg);
        float *lg = malloc((size_t)(NP + NG) * (size_t)V * sizeof *lg);
        double *ls = malloc((size_t)V * sizeof *ls);
        REQUIRE(gg_session_eval(ss, p, NP, lg, 1, &err) == 0, "%s", err.msg);
        coll *cc = &c[k];
        int ng = k == 0 ? NG : 0;
        CHECK(cc->np == NP && cc->n == ng, "request %d: %d prompt events, %d tokens", k, cc->np, cc->n);
        CHECK(cc->fin == GG_FINISH_LENGTH && !cc->bad_order && !cc->after_final, "request %d: finish %d", k, cc->fin);
        if (k == 1) CHECK(cc->final_id == -1, "scoring only: final id %d", cc->final_id);
        for (int g = 0; g + 1 < ng && g < cc->n; g++)
            CHECK(gg_session_eval(ss, &cc->toks[g], 1, lg + (size_t)(NP + g) * (size_t)V, 0, &err) == 0, "%s",
                  err.msg);
        double worst = 0;
        int ntop = k == 0 ? 5 : 2;
        for (int j = 0; j < cc->np && j < NP; j++) {
            CHECK(cc->ptoks[j] == p[j], "prompt token %d: %d vs %d", j, cc->ptoks[j], p[j]);
            if (j == 0) {
                CHECK(isnan(cc->plps[0]) && cc->pntop[0] == 0, "first prompt token: logprob %g, n_top %d",
                      cc->plps[0], cc->pntop[0]);
                continue;
            }
            const float *row = lg + (size_t)(j - 1) * (size_t)V;
            log_softmax(row, V, ls);
            double d = fabs(ls[p[j]] - cc->plps[j]);
            if (d > worst) worst = d;
            CHECK(cc->pntop[j] == ntop && cc->ptop[j][0] == argmax_row(row, V), "token %d: n_top %d, top %d", j,
                  cc->pntop[j], cc->ptop[j][0]);
            for (int t = 0; t < cc->pntop[j]; t++) {
                double dt = fabs(ls[cc->ptop[j][t]] - cc->ptoplp[j][t]);
                if (dt > worst) worst = dt;
                if (t) CHECK(cc->ptoplp[j][t] <= cc->ptoplp[j][t - 1], "token %d: top not sorted", j);
            }
        }
        for (int g = 0; g < cc->n && g < ng; g++) {
            const float *row = lg + (size_t)(NP - 1 + g) * (size_t)V;
            log_softmax(row, V, ls);
            CHECK(cc->toks[g] == argmax_row(row, V), "generated %d: %d is not the argmax", g, cc->toks[g]);
            double d = fabs(ls[cc->toks[g]] - cc->lps[g]);
            if (d > worst) worst = d;
        }
        CHECK(worst < 1e-4, "request %d: logprob difference %.3g", k, worst);
        if (k == 0) printf("  echo logprobs vs log-softmax of session logits: max abs diff %.2e\n", worst);
        free(lg);
        free(ls);
        gg_session_free(ss);
    }
    gg_sched_free(s);
}

/* One slot: the same prompt again reuses all but its last token; a prompt
 * sharing 10 tokens reuses 10; another adapter or echo reuses nothing;
 * results equal the plain session's. */
static void test_prefix_reuse(void) {
    int hA;
    gg_sched *s = new_sched(1, 128, 16, 8, &hA, NULL);
    REQUIRE(s && hA >= 0, "scheduler");
    int32_t P[20], Q[16];
    make_prompt(P, 20, 77);
    memcpy(Q, P, 10 * sizeof *Q);
    make_prompt(Q + 10, 6, 78);
    struct {
        const int32_t *p;
        size_t n;
        int which, echo;
        uint64_t reused; /* after it */
    } rs[] = {{P, 20, 0, 0, 0}, {P, 20, 0, 0, 19}, {Q, 16, 0, 0, 29}, {P, 20, 1, 0, 29}, {P, 20, 1, 0, 48},
              {P, 20, 1, 1, 48}};
    gg_err err;
    for (size_t i = 0; i < sizeof rs / sizeof *rs; i++) {
        coll c;
        memset(&c, 0, sizeof c);
        gg_sched_req r = greq(rs[i].p, rs[i].n, rs[i].which ? hA : -1, 5, &c);
        r.echo = rs[i].echo;
        CHECK(gg_sched_submit(s, &r, NULL, &err) == 0, "%s", err.msg);
        REQUIRE(wait_done(&c), "request %zu", i);
        int32_t want[8];
        gg_sample_params sp;
        gg_sample_params_default(&sp);
        sp.temp = 0;
        int nw = ref_generate(rs[i].p, rs[i].n, rs[i].which, &sp, 5, 1, want);
        CHECK(c.n == nw && memcmp(c.toks, want, (size_t)nw * 4) == 0, "request %zu: tokens differ", i);
        gg_sched_stats st;
        gg_sched_stats_get(s, &st);
        CHECK(st.reused_tokens == rs[i].reused, "request %zu: reused %llu, expected %llu", i,
              (unsigned long long)st.reused_tokens, (unsigned long long)rs[i].reused);
    }
    gg_sched_stats st;
    gg_sched_stats_get(s, &st);
    printf("  prefix reuse: %llu prompt tokens evaluated, %llu reused\n", (unsigned long long)st.prompt_tokens,
           (unsigned long long)st.reused_tokens);
    gg_sched_free(s);
}

/* The worker held in a callback: the queue fills (EFULL), a queued and the
 * running request are cancelled, the rest runs. */
static void test_queue_full_cancel(void) {
    gg_sched *s = new_sched(1, 128, 16, 2, NULL, NULL);
    REQUIRE(s, "scheduler");
    int32_t p[4][6];
    for (int i = 0; i < 4; i++) make_prompt(p[i], 6, 200 + (uint64_t)i);
    static coll c[4];
    memset(c, 0, sizeof c);
    uint64_t id[4];
    gg_err err;
    set_gate(0);
    c[0].gate = 1;
    gg_sched_req r = greq(p[0], 6, -1, 50, &c[0]);
    CHECK(gg_sched_submit(s, &r, &id[0], &err) == 0, "%s", err.msg);
    wait_gate();
    for (int i = 1; i < 3; i++) {
        r = greq(p[i], 6, -1, 4, &c[i]);
        CHECK(gg_sched_submit(s, &r, &id[i], &err) == 0, "%s", err.msg);
    }
    r = greq(p[3], 6, -1, 4, &c[3]);
    CHECK(gg_sched_submit(s, &r, &id[3], &err) == GG_SCHED_EFULL && strstr(err.msg, "full"), "full queue: %s",
          err.msg);
    gg_sched_stats st;
    gg_sched_stats_get(s, &st);
    CHECK(st.rejected == 1 && st.queued == 2 && st.active == 1, "stats: rejected %llu queued %d active %d",
          (unsigned long long)st.rejected, st.queued, st.active);
    gg_sched_cancel(s, id[1]);
    gg_sched_cancel(s, id[0]);
    gg_sched_cancel(s, 987654); /* unknown: ignored */
    set_gate(1);
    REQUIRE(wait_done(&c[0]) && wait_done(&c[1]) && wait_done(&c[2]), "not finished");
    CHECK(c[0].fin == GG_FINISH_CANCELLED && c[0].final_id == -1 && c[0].n >= 1 && c[0].n < 50,
          "running: finish %d, %d tokens", c[0].fin, c[0].n);
    CHECK(c[1].fin == GG_FINISH_CANCELLED && c[1].n == 0, "queued: finish %d, %d tokens", c[1].fin, c[1].n);
    int32_t want[8];
    gg_sample_params sp;
    gg_sample_params_default(&sp);
    sp.temp = 0;
    int nw = ref_generate(p[2], 6, 0, &sp, 4, 1, want);
    CHECK(c[2].fin == GG_FINISH_LENGTH && c[2].n == nw && memcmp(c[2].toks, want, 16) == 0, "third: finish %d",
          c[2].fin);
    gg_sched_cancel(s, id[2]); /* finished: ignored */
    for (int i = 0; i < 3; i++) CHECK(!c[i].after_final, "request %d: events after the final one", i);
    gg_sched_free(s);
}

/* A callback that answers nonzero ends the request: final event id -1 STOP. */
static void test_callback_stop(void) {
    gg_sched *s = new_sched(2, 64, 16, 4, NULL, NULL);
    REQUIRE(s, "scheduler");
    int32_t p[5];
    make_prompt(p, 5, 300);
    coll c;
    memset(&c, 0, sizeof c);
    c.stop_after = 3;
    gg_sched_req r = greq(p, 5, -1, 10, &c);
    gg_err err;
    CHECK(gg_sched_submit(s, &r, NULL, &err) == 0, "%s", err.msg);
    REQUIRE(wait_done(&c), "not finished");
    CHECK(c.n == 3 && c.fin == GG_FINISH_STOP && c.final_id == -1 && !c.after_final, "%d tokens, finish %d, id %d",
          c.n, c.fin, c.final_id);
    gg_sched_free(s);
}

/* Removing an adapter: its queued request ends CANCELLED, the running one
 * finishes with the adapter's tokens; the handle is gone after. */
static void test_adapter_remove(void) {
    int hA, hB;
    gg_sched *s = new_sched(1, 128, 16, 4, &hA, &hB);
    REQUIRE(s && hA >= 0 && hB >= 0, "scheduler");
    int32_t p[2][7];
    make_prompt(p[0], 7, 400);
    make_prompt(p[1], 7, 401);
    static coll c[2];
    memset(c, 0, sizeof c);
    gg_err err;
    set_gate(0);
    c[0].gate = 1;
    gg_sched_req r = greq(p[0], 7, hB, 6, &c[0]);
    CHECK(gg_sched_submit(s, &r, NULL, &err) == 0, "%s", err.msg);
    wait_gate();
    r = greq(p[1], 7, hA, 6, &c[1]);
    CHECK(gg_sched_submit(s, &r, NULL, &err) == 0, "%s", err.msg);
    CHECK(gg_sched_adapter_remove(s, hA, &err) == 0, "%s", err.msg);
    CHECK(gg_sched_adapter_remove(s, hA, &err) == -1, "removed twice");
    CHECK(gg_sched_adapter_remove(s, hB, &err) == 0, "%s", err.msg);
    r = greq(p[1], 7, hA, 6, &c[1]);
    CHECK(gg_sched_submit(s, &r, NULL, &err) == -1 && strstr(err.msg, "adapter"), "removed adapter accepted: %s",
          err.msg);
    set_gate(1);
    REQUIRE(wait_done(&c[0]) && wait_done(&c[1]), "not finished");
    int32_t want[8];
    gg_sample_params sp;
    gg_sample_params_default(&sp);
    sp.temp = 0;
    int nw = ref_generate(p[0], 7, 2, &sp, 6, 1, want);
    CHECK(c[0].fin == GG_FINISH_LENGTH && c[0].n == nw && memcmp(c[0].toks, want, (size_t)nw * 4) == 0,
          "running: finish %d, %d tokens", c[0].fin, c[0].n);
    CHECK(c[1].fin == GG_FINISH_CANCELLED && c[1].n == 0, "queued: finish %d", c[1].fin);
    int h = gg_sched_adapter_add(s, random_lora(9), 1.0f, &err);
    CHECK(h >= 0 && h != hA && h != hB, "new handle %d", h);
    gg_sched_free(s);
}

static void test_bad_requests(void) {
    int hA;
    gg_sched *s = new_sched(1, 32, 16, 4, &hA, NULL);
    REQUIRE(s, "scheduler");
    REQUIRE(gg_sched_slot_ctx(s) == 32, "slot ctx %lld", (long long)gg_sched_slot_ctx(s));
    int32_t p[20];
    make_prompt(p, 20, 500);
    coll c;
    memset(&c, 0, sizeof c);
    gg_err err;
    gg_sched_req r = greq(p, 20, -1, 13, &c);
    CHECK(gg_sched_submit(s, &r, NULL, &err) == -1 && strstr(err.msg, "context"), "%s", err.msg);
    r = greq(p, 20, -1, 12, &c);
    r.n_prompt = 0;
    CHECK(gg_sched_submit(s, &r, NULL, &err) == -1 && strstr(err.msg, "empty"), "%s", err.msg);
    r = greq(p, 20, -1, 12, &c);
    r.n_top = GG_SCHED_MAX_TOP + 1;
    CHECK(gg_sched_submit(s, &r, NULL, &err) == -1 && strstr(err.msg, "n_top"), "%s", err.msg);
    r = greq(p, 20, 99, 12, &c);
    CHECK(gg_sched_submit(s, &r, NULL, &err) == -1 && strstr(err.msg, "adapter"), "%s", err.msg);
    r = greq(p, 20, -1, 12, &c);
    r.sample.temp = NAN;
    CHECK(gg_sched_submit(s, &r, NULL, &err) == -1 && strstr(err.msg, "temp"), "%s", err.msg);
    int32_t bad[2] = {1, (int32_t)V};
    r = greq(bad, 2, -1, 2, &c);
    CHECK(gg_sched_submit(s, &r, NULL, &err) == -1 && strstr(err.msg, "vocabulary"), "%s", err.msg);
    r = greq(p, 20, -1, -1, &c);
    CHECK(gg_sched_submit(s, &r, NULL, &err) == -1, "negative max_tokens accepted");
    /* exactly the context: accepted */
    r = greq(p, 20, hA, 12, &c);
    CHECK(gg_sched_submit(s, &r, NULL, &err) == 0, "%s", err.msg);
    REQUIRE(wait_done(&c), "not finished");
    CHECK(c.fin == GG_FINISH_LENGTH && c.n == 12, "finish %d, %d tokens", c.fin, c.n);
    gg_sched_stats st;
    gg_sched_stats_get(s, &st);
    CHECK(st.rejected == 0 && st.finished == 1, "rejected %llu finished %llu", (unsigned long long)st.rejected,
          (unsigned long long)st.finished);
    gg_sched_free(s);
    gg_sched_opts o;
    gg_sched_opts_default(&o);
    o.n_slots = 8;
    o.max_step_tokens = 4;
    CHECK(gg_sched_new(&s, model, &o, &err) == -1 && strstr(err.msg, "max_step_tokens"), "%s", err.msg);
    o.max_step_tokens = 16;
    o.slot_ctx = 100000;
    CHECK(gg_sched_new(&s, model, &o, &err) == -1 && strstr(err.msg, "context"), "%s", err.msg);
}

/* Four threads submit five requests each (adapters mixed). */
enum { TH = 4, PER = 5 };
static gg_sched *th_sched;
static int th_handles[3];
static coll th_c[TH][PER];
static int32_t th_p[TH][PER][16];
static size_t th_n[TH][PER];

static void *th_main(void *arg) {
    int t = (int)(intptr_t)arg;
    gg_err err;
    for (int i = 0; i < PER; i++) {
        gg_sched_req r = greq(th_p[t][i], th_n[t][i], th_handles[(t + i) % 3], 6, &th_c[t][i]);
        int rc;
        while ((rc = gg_sched_submit(th_sched, &r, NULL, &err)) == GG_SCHED_EFULL) usleep(1000);
        if (rc) fprintf(stderr, "submit: %s\n", err.msg);
    }
    for (int i = 0; i < PER; i++) wait_done(&th_c[t][i]);
    return NULL;
}

static void test_threads(void) {
    int hA, hB;
    th_sched = new_sched(3, 128, 16, 64, &hA, &hB);
    REQUIRE(th_sched, "scheduler");
    th_handles[0] = -1;
    th_handles[1] = hA;
    th_handles[2] = hB;
    memset(th_c, 0, sizeof th_c);
    for (int t = 0; t < TH; t++)
        for (int i = 0; i < PER; i++) {
            th_n[t][i] = 3 + (size_t)((t * 7 + i * 3) % 13);
            make_prompt(th_p[t][i], th_n[t][i], 1000 + (uint64_t)(t * PER + i));
        }
    pthread_t th[TH];
    for (int t = 0; t < TH; t++) pthread_create(&th[t], NULL, th_main, (void *)(intptr_t)t);
    for (int t = 0; t < TH; t++) pthread_join(th[t], NULL);
    gg_sample_params sp;
    gg_sample_params_default(&sp);
    sp.temp = 0;
    int bad = 0;
    for (int t = 0; t < TH; t++)
        for (int i = 0; i < PER; i++) {
            int32_t want[8];
            int nw = ref_generate(th_p[t][i], th_n[t][i], (t + i) % 3, &sp, 6, 1, want);
            coll *c = &th_c[t][i];
            if (!c->done || c->fin != GG_FINISH_LENGTH || c->n != nw || memcmp(c->toks, want, (size_t)nw * 4)) bad++;
        }
    CHECK(bad == 0, "%d of %d requests differ", bad, TH * PER);
    gg_sched_stats st;
    gg_sched_stats_get(th_sched, &st);
    CHECK(st.finished == TH * PER, "finished %llu", (unsigned long long)st.finished);
    gg_sched_free(th_sched);
}

/* gg_sched_free with requests running and queued: each gets one final event. */
static void test_free_cancels(void) {
    gg_sched *s = new_sched(2, 128, 16, 16, NULL, NULL);
    REQUIRE(s, "scheduler");
    enum { N = 8 };
    int32_t p[N][6];
    static coll c[N];
    memset(c, 0, sizeof c);
    gg_err err;
    for (int i = 0; i < N; i++) {
        make_prompt(p[i], 6, 600 + (uint64_t)i);
        gg_sched_req r = greq(p[i], 6, -1, 100, &c[i]);
        CHECK(gg_sched_submit(s, &r, NULL, &err) == 0, "%s", err.msg);
    }
    gg_sched_free(s);
    int cancelled = 0;
    for (int i = 0; i < N; i++) {
        CHECK(c[i].done && !c[i].after_final, "request %d: done %d, after final %d", i, c[i].done, c[i].after_final);
        cancelled += c[i].fin == GG_FINISH_CANCELLED;
    }
    CHECK(cancelled >= N - 2, "%d cancelled", cancelled);
}

/* End of sequence: a prompt whose greedy continuation reaches eos stops
 * there (final event id -1 STOP, eos not reported); with ignore_eos it
 * goes on. */
static void test_eos(void) {
    int64_t eos = gg_model_cfg(model)->eos_id;
    gg_sample_params sp;
    gg_sample_params_default(&sp);
    sp.temp = 1.5f;
    int32_t p[6], want[40];
    int nw = -1;
    uint64_t seed = 0;
    for (seed = 1; seed < 300 && eos >= 0; seed++) {
        make_prompt(p, 6, 700 + seed);
        sp.seed = seed;
        nw = ref_generate(p, 6, 0, &sp, 40, 0, want);
        if (nw >= 0 && nw < 40) break;
    }
    if (eos < 0 || nw < 0 || nw >= 40) {
        printf("  (no sampled continuation reached eos; skipped)\n");
        return;
    }
    gg_sched *s = new_sched(2, 128, 16, 4, NULL, NULL);
    REQUIRE(s, "scheduler");
    static coll c[2];
    memset(c, 0, sizeof c);
    gg_err err;
    for (int k = 0; k < 2; k++) {
        gg_sched_req r = greq(p, 6, -1, 40, &c[k]);
        r.sample = sp;
        r.ignore_eos = k;
        CHECK(gg_sched_submit(s, &r, NULL, &err) == 0, "%s", err.msg);
    }
    REQUIRE(wait_done(&c[0]) && wait_done(&c[1]), "not finished");
    CHECK(c[0].fin == GG_FINISH_STOP && c[0].final_id == -1 && c[0].n == nw &&
              memcmp(c[0].toks, want, (size_t)nw * 4) == 0,
          "eos: finish %d, %d tokens (want %d)", c[0].fin, c[0].n, nw);
    CHECK(c[1].fin == GG_FINISH_LENGTH && c[1].n == 40 && c[1].toks[nw] == eos, "ignore_eos: finish %d, %d tokens",
          c[1].fin, c[1].n);
    printf("  eos after %d sampled tokens (seed %llu)\n", nw, (unsigned long long)seed);
    gg_sched_free(s);
}

/* Random traffic from two threads: submits with random lengths, adapters,
 * echo, top-n, sampling and callback stops; cancels of random requests;
 * an adapter removed and another added midway. Every accepted request gets
 * exactly one final event, last; echoed prompts are complete unless the
 * request was cut short; the stats add up. */
enum { ST_TH = 2, ST_N = 40 };
static gg_sched *st_sched;
static coll st_c[ST_TH][ST_N];
static uint64_t st_id[ST_TH][ST_N];
static int st_ok[ST_TH][ST_N], st_np[ST_TH][ST_N], st_echo[ST_TH][ST_N], st_hA, st_hB;

static void *st_main(void *arg) {
    int t = (int)(intptr_t)arg;
    uint64_t x = 0x1234567ull + (uint64_t)t * 977;
#define NEXT() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
    gg_err err;
    for (int i = 0; i < ST_N; i++) {
        int32_t p[30];
        int np = 1 + (int)(NEXT() % 30);
        for (int k = 0; k < np; k++) p[k] = (int32_t)(NEXT() % (uint64_t)V);
        int64_t mt = (int64_t)(NEXT() % 12);
        int ad = (int)(NEXT() % 3);
        int hB = __atomic_load_n(&st_hB, __ATOMIC_RELAXED);
        gg_sched_req r = greq(p, (size_t)np, ad == 0 ? -1 : ad == 1 ? st_hA : hB, mt, &st_c[t][i]);
        r.echo = NEXT() % 3 == 0;
        r.n_top = (int)(NEXT() % 21);
        r.ignore_eos = (int)(NEXT() % 2);
        if (NEXT() % 2) {
            r.sample.temp = 0.8f;
            r.sample.seed = NEXT();
        }
        st_c[t][i].stop_after = NEXT() % 5 == 0 ? 1 + (int)(NEXT() % 4) : 0;
        st_np[t][i] = np;
        st_echo[t][i] = r.echo;
        int rc;
        while ((rc = gg_sched_submit(st_sched, &r, &st_id[t][i], &err)) == GG_SCHED_EFULL) usleep(2000);
        st_ok[t][i] = rc == 0;
        if (NEXT() % 4 == 0 && i > 0) gg_sched_cancel(st_sched, st_id[t][NEXT() % (uint64_t)i]);
        if (t == 0 && i == ST_N / 2) {
            gg_sched_adapter_remove(st_sched, st_hB, &err);
            __atomic_store_n(&st_hB, gg_sched_adapter_add(st_sched, random_lora(21), 0.5f, &err), __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

static void test_stress(void) {
    st_sched = new_sched(3, 64, 8, 6, &st_hA, &st_hB);
    REQUIRE(st_sched, "scheduler");
    memset(st_c, 0, sizeof st_c);
    pthread_t th[ST_TH];
    for (int t = 0; t < ST_TH; t++) pthread_create(&th[t], NULL, st_main, (void *)(intptr_t)t);
    for (int t = 0; t < ST_TH; t++) pthread_join(th[t], NULL);
    int accepted = 0, bad = 0, fins[5] = {0};
    for (int t = 0; t < ST_TH; t++)
        for (int i = 0; i < ST_N; i++) {
            if (!st_ok[t][i]) continue;
            accepted++;
            coll *c = &st_c[t][i];
            if (!wait_done(c) || c->after_final || c->bad_order) {
                bad++;
                continue;
            }
            fins[c->fin]++;
            int cut = c->fin == GG_FINISH_CANCELLED || c->stop_after || c->fin == GG_FINISH_ERROR;
            if (st_echo[t][i] && !cut && c->np != st_np[t][i]) bad++;
            if (!st_echo[t][i] && c->np) bad++;
        }
    CHECK(bad == 0, "%d of %d requests broke the event rules", bad, accepted);
    gg_sched_stats st;
    gg_sched_stats_get(st_sched, &st);
    CHECK(st.finished == (uint64_t)accepted && fins[GG_FINISH_ERROR] == 0, "finished %llu of %d, %d errors",
          (unsigned long long)st.finished, accepted, fins[GG_FINISH_ERROR]);
    printf("  stress: %d requests (%d length, %d stop, %d cancelled), %llu steps\n", accepted, fins[GG_FINISH_LENGTH],
           fins[GG_FINISH_STOP], fins[GG_FINISH_CANCELLED], (unsigned long long)st.steps);
    gg_sched_free(st_sched);
}

static void cleanup(void) { check_rm_tree(tmpdir); }

int main(void) {
    if (!check_have_fixture("hf/llama2-mha/config.json")) return check_done();
    if (!mkdtemp(tmpdir)) return 1;
    gg_err err;
    be = gg_backend_cpu_new(2, &err);
    rbe = be ? gg_backend_cpu_new(2, &err) : NULL;
    char path[600];
    snprintf(lora_dir, sizeof lora_dir, "%s/hf/llama2-mha/lora", check_fixtures());
    if (!rbe || fixture_gg("llama2-mha", GG_TYPE_F32, tmpdir, path, sizeof path) ||
        gg_file_open(&file, path, 0, &err) || gg_model_load(&model, file, be, &err) ||
        gg_model_load(&rmodel, file, rbe, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    V = gg_model_cfg(model)->vocab;
    refA = peft_lora_on(rmodel);
    refB = test_random_lora(rmodel, 7, 4, 1.0f);
    if (!refA || !refB) return 1;
    RUN(test_greedy_mixed);
    RUN(test_echo_logprobs);
    RUN(test_prefix_reuse);
    RUN(test_queue_full_cancel);
    RUN(test_callback_stop);
    RUN(test_adapter_remove);
    RUN(test_bad_requests);
    RUN(test_threads);
    RUN(test_free_cancels);
    RUN(test_eos);
    RUN(test_stress);
    gg_lora_free(refA);
    gg_lora_free(refB);
    gg_model_free(model);
    gg_model_free(rmodel);
    gg_file_close(file);
    gg_backend_free(be);
    gg_backend_free(rbe);
    cleanup();
    return check_done();
}

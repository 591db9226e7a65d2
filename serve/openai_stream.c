/* openai_stream.c — a job's life after gg_oa_parse: submitting its
 * requests to the scheduler (gg_oa_submit), the per-token callback (text
 * with stop strings and whole characters, logprobs with text_offset, SSE
 * chunks) and the final non-streamed response (gg_oa_response). See
 * server.h. */
#define GG_SERVE_INTERNAL
#include "serve/server.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/openai_internal.h"

/* ---- per-token events ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static json_t *lp_new(const gg_job *j) {
    if (j->chat) return json_pack("{s:[]}", "content");
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

static void lp_add(gg_job *j, gg_choice *c, json_t *lp, const gg_sched_event *ev, const char *piece, size_t plen,
                   size_t offset) {
    const gg_tokenizer *tok = j->srv->tok;
    int ntop = ev->n_top < j->n_top ? ev->n_top : j->n_top;
    if (j->chat) {
        json_t *top = json_array();
        for (int i = 0; i < ntop; i++) {
            char *k = gg_detok_piece(tok, c->prev_id, ev->top_ids[i]);
            if (!k) continue;
            json_array_append_new(top, json_pack("{s:o, s:o, s:o}", "token", oa_jstr(k, strlen(k)), "logprob",
                                                 oa_jreal(ev->top_logprobs[i]), "bytes", oa_jbytes(k, strlen(k))));
            free(k);
        }
        json_array_append_new(json_object_get(lp, "content"),
                              json_pack("{s:o, s:o, s:o, s:o}", "token", oa_jstr(piece, plen), "logprob",
                                        oa_jreal(ev->logprob), "bytes", oa_jbytes(piece, plen), "top_logprobs", top));
        return;
    }
    json_array_append_new(json_object_get(lp, "tokens"), oa_jstr(piece, plen));
    json_array_append_new(json_object_get(lp, "token_logprobs"), oa_jreal(ev->logprob));
    json_array_append_new(json_object_get(lp, "text_offset"), json_integer((json_int_t)offset));
    json_t *top = json_null();
    if (ev->n_top > 0 && j->n_top > 0) {
        top = json_object();
        for (int i = 0; i < ntop; i++) {
            char *k = gg_detok_piece(tok, c->prev_id, ev->top_ids[i]);
            if (!k) continue;
            if (gg_utf8_valid(k, strlen(k)) && !json_object_get(top, k))
                json_object_set_new(top, k, oa_jreal(ev->top_logprobs[i]));
            free(k);
        }
    }
    json_array_append_new(json_object_get(lp, "top_logprobs"), top);
}

static void sse_put(gg_job *j, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) return;
    gg_sbuf_adds(&j->sse, "data: ");
    gg_sbuf_adds(&j->sse, s);
    gg_sbuf_adds(&j->sse, "\n\n");
    free(s);
}

static json_t *chunk_head(gg_job *j) {
    return json_pack("{s:s, s:s, s:I, s:s}", "id", j->id, "object", j->chat ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)time(NULL), "model", j->model);
}

/* One SSE chunk for choice c: text (may be empty), lp (stolen, may be
 * NULL), finish (NULL: none), role (chat: the opening delta). */
static void sse_chunk(gg_job *j, gg_choice *c, const char *text, size_t n, json_t *lp, const char *finish, int role) {
    json_t *ch = json_pack("{s:i}", "index", c->index);
    if (j->chat) {
        json_t *delta = json_object();
        if (role) {
            json_object_set_new(delta, "role", json_string("assistant"));
            json_object_set_new(delta, "content", json_string(""));
        } else if (!finish) {
            json_object_set_new(delta, "content", oa_jstr(text ? text : "", n));
        }
        json_object_set_new(ch, "delta", delta);
    } else {
        json_object_set_new(ch, "text", oa_jstr(text ? text : "", n));
    }
    json_object_set_new(ch, "logprobs", lp ? lp : json_null());
    json_object_set_new(ch, "finish_reason", finish ? json_string(finish) : json_null());
    json_t *o = chunk_head(j);
    json_object_set_new(o, "choices", json_pack("[o]", ch));
    sse_put(j, o);
}

static json_t *usage(gg_job *j) {
    int64_t p = 0, g = 0;
    for (int i = 0; i < j->n_choices; i++) {
        p += (int64_t)j->ch[i].n_prompt;
        g += j->ch[i].n_gen;
    }
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)p, "completion_tokens", (json_int_t)g,
                     "total_tokens", (json_int_t)(p + g));
}

static const char *finish_name(gg_finish f) {
    switch (f) {
    case GG_FINISH_LENGTH: return "length";
    case GG_FINISH_STOP: return "stop";
    case GG_FINISH_CANCELLED: return "cancelled";
    default: return "error";
    }
}

static int on_event(void *user, const gg_sched_event *ev) {
    gg_choice *c = user;
    gg_job *j = c->job;
    gg_srv *s = j->srv;
    int stop = 0, final = ev->finish != GG_FINISH_NONE, gen = 0;
    double t = now_s();
    gg_sbuf emit = {0};
    json_t *lp_delta = NULL;
    pthread_mutex_lock(&j->mu);
    if (j->stream && j->chat && c->n_events == 0) sse_chunk(j, c, NULL, 0, NULL, NULL, 1);
    c->n_events++;
    if (ev->id >= 0) {
        int eos = !ev->is_prompt && !j->ignore_eos && (ev->id == s->eos[0] || ev->id == s->eos[1]);
        if (!ev->is_prompt) {
            c->n_gen++;
            gen = 1;
            if (j->t_first == 0) j->t_first = t;
        }
        if (!eos && !c->st.hit && !c->error) {
            char *add;
            size_t alen;
            gg_err err;
            if (gg_detok_push(&c->dt, ev->id, &add, &alen, &err)) {
                c->error = strdup(err.msg);
                stop = 1;
            } else {
                size_t off = c->text_bytes;
                c->text_bytes += alen;
                if (j->logprobs) {
                    json_t *target = j->stream ? (lp_delta = lp_new(j)) : (c->lp ? c->lp : (c->lp = lp_new(j)));
                    lp_add(j, c, target, ev, add, alen, off);
                }
                if (ev->is_prompt) gg_sbuf_add(&emit, add, alen);
                else if (gg_stopper_feed(&c->st, add, alen, 0, &emit) == 0 && c->st.hit) stop = 1;
                free(add);
            }
        } else if (eos && !c->st.hit && !c->error) {
            /* The scheduler runs with ignore_eos and the end-of-sequence
             * token ends the request here: it adds no text but is reported
             * (usage, and its place in the logprobs, which
             * lm-evaluation-harness reads by position). */
            if (j->logprobs) {
                json_t *target = j->stream ? (lp_delta = lp_new(j)) : (c->lp ? c->lp : (c->lp = lp_new(j)));
                lp_add(j, c, target, ev, "", 0, c->text_bytes);
            }
            c->finish = "stop";
            stop = 1;
        }
        c->prev_id = ev->id;
    }
    if (final && !c->done) {
        if (!c->st.hit && !c->error && (ev->finish == GG_FINISH_STOP || ev->finish == GG_FINISH_LENGTH))
            gg_stopper_feed(&c->st, "", 0, 1, &emit);
        c->finish = c->st.hit || c->finish ? "stop" : finish_name(ev->finish);
        if (ev->finish == GG_FINISH_ERROR && !c->error) c->error = strdup(ev->error ? ev->error : "generation failed");
        c->done = 1;
        j->n_done++;
    }
    int all_done = j->n_done == j->n_choices;
    if (j->stream && !j->sse_ended) {
        if (emit.n || lp_delta) sse_chunk(j, c, emit.p, emit.n, lp_delta, NULL, 0);
        else if (lp_delta) json_decref(lp_delta);
        if (final) {
            if (c->error) {
                char *es = gg_srv_error_json(c->error, "server_error", NULL, NULL);
                json_t *e = es ? json_loads(es, 0, NULL) : NULL;
                free(es);
                if (e) sse_put(j, e);
            }
            sse_chunk(j, c, NULL, 0, NULL, c->finish, 0);
            if (all_done) {
                if (j->include_usage) {
                    json_t *o = chunk_head(j);
                    json_object_set_new(o, "choices", json_array());
                    json_object_set_new(o, "usage", usage(j));
                    sse_put(j, o);
                }
                gg_sbuf_adds(&j->sse, "data: [DONE]\n\n");
                j->sse_ended = 1;
            }
        }
    } else if (!j->stream) {
        if (lp_delta) json_decref(lp_delta);
        gg_sbuf_add(&c->text, emit.p ? emit.p : "", emit.n);
    } else if (lp_delta) {
        json_decref(lp_delta);
    }
    gg_sbuf_free(&emit);
    /* Wake the connection (after unlocking: it stays suspended, so valid,
     * until resumed). */
    struct MHD_Connection *wake = NULL;
    if (j->suspended && (j->stream ? j->sse.n > 0 || j->sse_ended : all_done)) {
        j->suspended = 0;
        wake = j->conn;
    }
    int left = final ? --j->refs : 1;
    int cancelled = final && ev->finish == GG_FINISH_CANCELLED, stop_hit = final && c->st.hit;
    pthread_mutex_unlock(&j->mu);
    if (wake) MHD_resume_connection(wake);

    gg_metrics *m = &s->met;
    if (gen || final) {
        pthread_mutex_lock(&m->mu);
        if (gen) m->gen_tokens++;
        if (cancelled) m->cancelled++;
        if (stop_hit) m->stop_strings++;
        pthread_mutex_unlock(&m->mu);
    }
    if (!left) oa_job_free(j);
    return stop;
}

int gg_oa_submit(gg_job *j, char **errjson) {
    gg_srv *s = j->srv;
    int status = 0;
    *errjson = NULL;
    for (int i = 0; i < j->n_choices; i++) {
        gg_choice *c = &j->ch[i];
        gg_sched_req r = {.prompt = c->prompt, .n_prompt = c->n_prompt, .adapter = j->adapter, .sample = j->sp,
                          .max_tokens = j->max_tokens, .ignore_eos = 1 /* on_event stops at EOS */, .echo = j->echo,
                          .n_top = j->logprobs ? j->n_top : 0, .cb = on_event, .user = c};
        if (j->sp.seed) r.sample.seed = j->sp.seed + (uint64_t)i;
        pthread_mutex_lock(&j->mu);
        j->refs++;
        pthread_mutex_unlock(&j->mu);
        uint64_t id = 0;
        gg_err err;
        pthread_mutex_lock(&s->mu);
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        int rc = stopping ? GG_SCHED_EFULL : gg_sched_submit(s->sched, &r, &id, &err);
        if (stopping) snprintf(err.msg, sizeof err.msg, "the server is shutting down");
        if (rc != 0) {
            pthread_mutex_lock(&j->mu);
            j->refs--;
            pthread_mutex_unlock(&j->mu);
            gg_job_cancel(j);
            if (rc == GG_SCHED_EFULL) {
                *errjson = oa_err(&status, 503, "server_error", NULL, "server_overloaded",
                                   "The server is busy (%s); retry later", err.msg);
            } else if (j->adapter >= 0 && gg_srv_find_model(s, j->model) == -2) {
                *errjson = oa_err(&status, 404, "invalid_request_error", "model", "model_not_found",
                                   "The model '%s' was removed", j->model);
            } else {
                *errjson = oa_err(&status, 400, "invalid_request_error", NULL, NULL, "%s", err.msg);
            }
            return status;
        }
        pthread_mutex_lock(&j->mu);
        c->sched_id = id;
        c->submitted = 1;
        pthread_mutex_unlock(&j->mu);
        pthread_mutex_lock(&s->met.mu);
        s->met.prompt_tokens += c->n_prompt;
        pthread_mutex_unlock(&s->met.mu);
    }
    return 0;
}

/* A choice that never ran (submit failed part way) counts as done for the
 * connection's side: the caller answers with the error. */

char *gg_oa_response(gg_job *j, int *status) {
    pthread_mutex_lock(&j->mu);
    for (int i = 0; i < j->n_choices; i++)
        if (j->ch[i].error) {
            char *e = oa_err(status, 500, "server_error", NULL, NULL, "%s", j->ch[i].error);
            pthread_mutex_unlock(&j->mu);
            return e;
        }
    json_t *choices = json_array();
    for (int i = 0; i < j->n_choices; i++) {
        gg_choice *c = &j->ch[i];
        json_t *lp = c->lp ? json_incref((json_t *)c->lp) : j->logprobs ? lp_new(j) : json_null();
        json_t *text = oa_jstr(c->text.p ? c->text.p : "", c->text.n);
        json_t *o;
        if (j->chat)
            o = json_pack("{s:i, s:{s:s, s:o}, s:o, s:s}", "index", i, "message", "role", "assistant", "content", text,
                          "logprobs", lp, "finish_reason", c->finish ? c->finish : "stop");
        else
            o = json_pack("{s:i, s:o, s:o, s:s}", "index", i, "text", text, "logprobs", lp, "finish_reason",
                          c->finish ? c->finish : "stop");
        json_array_append_new(choices, o);
    }
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "id", j->id, "object",
                          j->chat ? "chat.completion" : "text_completion", "created", (json_int_t)time(NULL), "model",
                          j->model, "choices", choices, "usage", usage(j));
    pthread_mutex_unlock(&j->mu);
    *status = 200;
    return oa_dump(o);
}

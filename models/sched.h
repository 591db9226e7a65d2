/* sched.h — continuous batching of many generation requests over one model.
 *
 * Owns: a fixed set of slots (each a KV-cache session, models/model.h), a
 * bounded FIFO queue of waiting requests, and one worker thread that runs
 * steps: each step is ONE batched forward (gg_batch_eval) over every active
 * slot — prompt chunks of newly admitted requests and the single next token
 * of generating ones mixed — where each sequence gets its own LoRA adapter
 * (or none) inside the batched matmul, its own sampler (models/sample.h) and
 * its own limits. Prefix reuse: a request is admitted to the free slot whose
 * cached tokens share the longest prefix with its prompt, and only the rest
 * of the prompt is evaluated.
 *
 * Threads: gg_sched_submit / gg_sched_cancel / gg_sched_adapter_* /
 * gg_sched_stats_get may be called from any thread at any time. Callbacks
 * run on the worker thread, in token order per request; they must not call
 * back into the scheduler except gg_sched_cancel and must not block long.
 *
 * Log-probabilities are always log-softmax of the raw logits (temperature
 * 1, no sampling filters, adapter applied): what OpenAI's `logprobs` and
 * lm-evaluation-harness's `loglikelihood` read.
 *
 * Errors: 0 / -1 with gg_err (one line); GG_SCHED_EFULL when the queue is
 * full (the server answers 503 + Retry-After). */
#ifndef GG_SCHED_H
#define GG_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "ggfmt/err.h"
#include "models/model.h"
#include "models/sample.h"

#define GG_SCHED_EFULL (-2)
#define GG_SCHED_MAX_TOP 20

typedef struct gg_sched_opts {
    int n_slots;             /* parallel sequences (default 4; <= 256) */
    int64_t slot_ctx;        /* KV-cache tokens per slot (default: the model's context, at most 4096) */
    int64_t max_step_tokens; /* most tokens in one batched forward (default 512; >= n_slots) */
    int queue_cap;           /* requests that may wait for a slot (default 64) */
} gg_sched_opts;

/* n_slots 4, slot_ctx 0 (= model context capped at 4096), max_step_tokens
 * 512, queue_cap 64. */
void gg_sched_opts_default(gg_sched_opts *o);

typedef enum gg_finish {
    GG_FINISH_NONE = 0, /* more events follow */
    GG_FINISH_LENGTH,   /* max_tokens generated, or the slot's context is full */
    GG_FINISH_STOP,     /* end-of-sequence token, or the callback returned nonzero */
    GG_FINISH_CANCELLED,/* gg_sched_cancel, scheduler shut down, or adapter removed while queued */
    GG_FINISH_ERROR     /* see gg_sched_event.error */
} gg_finish;

/* One event of a request. Prompt tokens (with echo) come first, then each
 * generated token. The last event of every request has finish != NONE; it
 * carries a token (id >= 0) when the token that ended it is reported (e.g.
 * the max_tokens-th token), else id = -1. After it the scheduler never
 * touches the request's user pointer again. */
typedef struct gg_sched_event {
    int32_t id;        /* the token, or -1 */
    int is_prompt;     /* 1: an echoed prompt token */
    float logprob;     /* log p(id | tokens before it); NAN for the first prompt token */
    int n_top;         /* entries in top_* (0 for the first prompt token) */
    int32_t top_ids[GG_SCHED_MAX_TOP];   /* most probable first */
    float top_logprobs[GG_SCHED_MAX_TOP];
    gg_finish finish;
    const char *error; /* GG_FINISH_ERROR: one line; else NULL */
} gg_sched_event;

/* Called for every event; return nonzero to end the request now with
 * finish = GG_FINISH_STOP (e.g. a stop string matched) — the scheduler then
 * sends the final event (id = -1). */
typedef int (*gg_sched_cb)(void *user, const gg_sched_event *ev);

typedef struct gg_sched_req {
    const int32_t *prompt;  /* copied at submit; >= 1 token */
    size_t n_prompt;
    int adapter;            /* -1: the base model; else a handle from gg_sched_adapter_add */
    gg_sample_params sample;
    int64_t max_tokens;     /* tokens to generate; 0: only score the prompt (echo) */
    int ignore_eos;         /* do not stop at the model's end-of-sequence token */
    int echo;               /* report the prompt tokens (with logprobs) first */
    int n_top;              /* 0..GG_SCHED_MAX_TOP top logprobs per reported token */
    gg_sched_cb cb;
    void *user;
} gg_sched_req;

typedef struct gg_sched gg_sched;

/* Start the scheduler (and its worker thread) for model m. */
int gg_sched_new(gg_sched **out, gg_model *m, const gg_sched_opts *o, gg_err *err);
/* Cancel everything (each request gets its final CANCELLED event), stop
 * the worker, free the slots and every adapter still registered. */
void gg_sched_free(gg_sched *s);

/* Tokens per slot (a request needs n_prompt + max_tokens <= this). */
int64_t gg_sched_slot_ctx(const gg_sched *s);

/* Register an adapter (the scheduler takes ownership of l and frees it);
 * scale multiplies its own alpha/r. Returns a handle >= 0, or -1. */
int gg_sched_adapter_add(gg_sched *s, gg_lora *l, float scale, gg_err *err);
/* Unregister: queued requests for it end CANCELLED, running ones finish
 * normally; the adapter is freed when the last of them ends. -1 if the
 * handle is unknown. */
int gg_sched_adapter_remove(gg_sched *s, int handle, gg_err *err);

/* Queue a request. 0 and *id on success; -1 with err for a bad request
 * (empty prompt, unknown adapter, n_prompt + max_tokens > slot_ctx, bad
 * sampling params, n_top out of range); GG_SCHED_EFULL when the queue is
 * full (err says so). On success exactly one final event will follow. */
int gg_sched_submit(gg_sched *s, const gg_sched_req *r, uint64_t *id, gg_err *err);
/* End a request early (final event CANCELLED); unknown or finished ids
 * are ignored. */
void gg_sched_cancel(gg_sched *s, uint64_t id);

typedef struct gg_sched_stats {
    int n_slots, active, queued;
    uint64_t steps;          /* batched forwards run */
    uint64_t prompt_tokens;  /* prompt tokens evaluated */
    uint64_t reused_tokens;  /* prompt tokens taken from a slot's cache instead */
    uint64_t gen_tokens;     /* tokens generated */
    uint64_t finished, rejected; /* requests ended; submits refused (full) */
} gg_sched_stats;
void gg_sched_stats_get(gg_sched *s, gg_sched_stats *st);

#endif

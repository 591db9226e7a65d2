/* server.h — ggserve's HTTP layer: an OpenAI-compatible server over one
 * model, its tokenizer and a continuous-batching scheduler
 * (models/sched.h), with any number of LoRA adapters chosen per request.
 *
 * Owns: the libmicrohttpd daemon (serve/http.c: routing, auth, body limit,
 * suspend/resume of connections that wait on the scheduler, SSE streaming),
 * the OpenAI request/response shapes (serve/openai.c), the adapter table
 * (name → scheduler handle), the Prometheus metrics (serve/metrics.c) and
 * the chat page (serve/page.c). It does not own the model, file, tokenizer
 * or scheduler: the caller (tools/ggserve.c) frees them after gg_srv_stop.
 *
 * Threads: libmicrohttpd's pool runs the handlers; the scheduler's worker
 * runs the per-token callbacks; a monitor thread notices clients that went
 * away while their request waits. Shared state is under gg_srv.mu.
 * Errors: 0 / -1 with gg_err. */
#ifndef GG_SERVE_SERVER_H
#define GG_SERVE_SERVER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "ggfmt/err.h"
#include "ggfmt/ggfmt.h"
#include "models/model.h"
#include "models/sched.h"
#include "models/tokenizer.h"

typedef struct gg_srv_opts {
    const char *host;        /* default 127.0.0.1 */
    int port;                /* 0: any free port (see gg_srv_port) */
    const char *api_key;     /* NULL: no auth */
    const char *admin_key;   /* for /v1/adapters; NULL: api_key */
    const char *adapter_dir; /* NULL: no loading at run time */
    size_t max_body;         /* bytes (default 1 MiB) */
    unsigned timeout_s;      /* idle connection timeout (default 600) */
    int http_threads;        /* default 2 */
    unsigned max_conns;      /* default 4096 */
    const char *model_name;  /* the base model's id in the API */
    const char *chat_template; /* Jinja source; NULL: the tokenizer's */
    int64_t max_tokens_default; /* completions without max_tokens (default 16) */
    int verbose;
    /* Loads an adapter (.gg file or PEFT folder) for the model: the tool
     * supplies it (tools/engine.h); NULL: adapters cannot be loaded. */
    int (*load_adapter)(void *ctx, const char *path, gg_lora **out, gg_err *err);
    void *load_ctx;
} gg_srv_opts;

void gg_srv_opts_default(gg_srv_opts *o);

typedef struct gg_srv gg_srv;

/* Start serving. m/f/tok/sched must outlive the server. */
int gg_srv_start(gg_srv **out, gg_model *m, const gg_file *f, const gg_tokenizer *tok, gg_sched *sched,
                 const gg_srv_opts *o, gg_err *err);
/* The port actually bound. */
int gg_srv_port(const gg_srv *s);
/* Register an adapter (a .gg file or PEFT folder) under name (as --lora
 * NAME=PATH[:SCALE] does); path is not confined. */
int gg_srv_adapter_load(gg_srv *s, const char *name, const char *path, float scale, gg_err *err);
/* Stop accepting, end every request (clients get what they have), stop
 * the daemon and free the server. */
void gg_srv_stop(gg_srv *s);

/* ---- shared by the files of serve/ ---- */
#ifdef GG_SERVE_INTERNAL
#include <microhttpd.h>

#include "serve/util.h"

#define GG_SRV_MAX_ADAPTERS 256

typedef struct gg_srv_adapter {
    char name[72];
    char *path;
    float scale;
    int handle; /* scheduler handle */
    int used;
} gg_srv_adapter;

/* Histogram buckets (seconds) shared by the latency histograms. */
#define GG_MET_NB 14
typedef struct gg_hist {
    uint64_t b[GG_MET_NB + 1]; /* last: +Inf */
    double sum;
    uint64_t count;
} gg_hist;

enum { GG_EP_COMPLETIONS, GG_EP_CHAT, GG_EP_MODELS, GG_EP_HEALTH, GG_EP_METRICS, GG_EP_ADAPTERS, GG_EP_TOKENIZE,
       GG_EP_PAGE, GG_EP_OTHER, GG_EP_COUNT };
enum { GG_CODE_2XX, GG_CODE_400, GG_CODE_401, GG_CODE_403, GG_CODE_404, GG_CODE_405, GG_CODE_413, GG_CODE_503,
       GG_CODE_500, GG_CODE_OTHER, GG_CODE_COUNT };

typedef struct gg_metrics {
    pthread_mutex_t mu;
    uint64_t requests[GG_EP_COUNT][GG_CODE_COUNT];
    uint64_t prompt_tokens, gen_tokens, cancelled, stop_strings;
    gg_hist latency, ttft, per_token;
    int64_t inflight;
} gg_metrics;

struct gg_job;

struct gg_srv {
    gg_model *model;
    const gg_file *file;
    const gg_tokenizer *tok;
    gg_sched *sched;
    gg_srv_opts o;
    char *model_name, *api_key, *admin_key, *adapter_dir, *chat_template, *host;
    int64_t vocab, slot_ctx;
    int32_t eos[2];
    long created;
    struct MHD_Daemon *d;
    int port;

    pthread_mutex_t mu;            /* adapters, jobs list, stopping */
    gg_srv_adapter ad[GG_SRV_MAX_ADAPTERS];
    struct gg_job *jobs;           /* in flight (doubly linked) */
    int stopping;
    uint64_t next_id;

    pthread_t monitor;
    int monitor_on;
    pthread_mutex_t mon_mu;
    pthread_cond_t mon_cv;

    gg_metrics met;
};

/* One choice (one prompt) of a generation request: one scheduler request. */
typedef struct gg_choice {
    struct gg_job *job;
    int index;
    int32_t *prompt;
    size_t n_prompt;
    uint64_t sched_id;
    int submitted, done;
    gg_detok dt;
    gg_stopper st;
    gg_sbuf text;       /* non-stream: the whole text */
    size_t text_bytes;  /* bytes of text so far (echo + generated, before stop cut) */
    int64_t n_gen;
    int n_events;
    int32_t prev_id;
    const char *finish; /* "stop" / "length" / NULL */
    char *error;
    void *lp;           /* json_t*: logprobs being built (NULL: none) */
} gg_choice;

/* A generation request (completions or chat) shared by its connection and
 * the scheduler's worker; freed when both let go (refs). */
typedef struct gg_job {
    pthread_mutex_t mu;
    int refs;
    gg_srv *srv;
    struct gg_job *prev, *next; /* gg_srv.jobs */
    int listed;
    struct MHD_Connection *conn;
    int fd;
    int suspended;   /* the connection waits for us */
    int conn_gone;   /* the connection's side ended */
    int chat, stream, echo, n_top, logprobs, include_usage;
    char id[48];
    char *model;     /* as requested */
    int adapter;     /* scheduler handle or -1 */
    int n_choices, n_done;
    gg_choice *ch;
    gg_sbuf sse;     /* stream: bytes not yet sent */
    int sse_started, sse_ended;
    double t0, t_first;
    int64_t max_tokens;
    int ignore_eos;
    gg_sample_params sp;
} gg_job;

/* openai.c */
/* Parse a /v1/completions (chat = 0) or /v1/chat/completions body into a
 * new job (refs 1); on failure *status and *errjson (malloc'd) say what to
 * answer. */
gg_job *gg_oa_parse(gg_srv *s, int chat, const char *body, size_t len, int *status, char **errjson);
/* Submit every choice. 0, or an HTTP status with *errjson. */
int gg_oa_submit(gg_job *j, char **errjson);
/* The full JSON response of a finished non-stream job (malloc'd), or an
 * error with *status. */
char *gg_oa_response(gg_job *j, int *status);
void gg_job_release(gg_job *j); /* drop one reference (locks j->mu) */
void gg_job_cancel(gg_job *j);  /* cancel every unfinished choice */
/* POST /tokenize, /detokenize; GET /tokenizer_info, /v1/models; adapters. */
char *gg_oa_tokenize(gg_srv *s, const char *body, size_t len, int *status);
char *gg_oa_detokenize(gg_srv *s, const char *body, size_t len, int *status);
char *gg_oa_tokenizer_info(gg_srv *s);
char *gg_oa_models(gg_srv *s);
char *gg_oa_adapter_post(gg_srv *s, const char *body, size_t len, int *status);
char *gg_oa_adapter_delete(gg_srv *s, const char *name, int *status);
/* Look up a model id: -1 base, >= 0 scheduler handle, -2 unknown. */
int gg_srv_find_model(gg_srv *s, const char *name);

/* metrics.c */
void gg_met_init(gg_metrics *m);
void gg_met_request(gg_metrics *m, int ep, int status);
void gg_met_observe(gg_metrics *m, gg_hist *h, double v);
char *gg_met_text(gg_srv *s);

/* page.c */
extern const char gg_serve_page[];
size_t gg_serve_page_len(void);
#endif

#endif

/* http.c — the libmicrohttpd daemon of ggserve: an internal pool of
 * polling threads (epoll), request bodies up to --max-body, Bearer keys
 * compared in constant time, routing, and connections that wait on the
 * scheduler: a non-streaming request suspends its connection until its
 * last choice ends; a streaming one answers 200 at once with a content
 * reader that hands out SSE bytes as the worker produces them and suspends
 * the connection while there are none. A monitor thread peeks at the
 * sockets of suspended connections (libmicrohttpd does not watch them) and
 * cancels the requests of clients that went away. See server.h. */
#define GG_SERVE_INTERNAL
#include "serve/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_READING, ST_WAITING, ST_STREAMING, ST_DONE };

typedef struct conn_ctx {
    int ep, state, too_big, status;
    gg_sbuf body;
    gg_job *job;
    double t0;
} conn_ctx;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void gg_srv_opts_default(gg_srv_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->max_body = 1 << 20;
    o->timeout_s = 600;
    o->http_threads = 2;
    o->max_conns = 4096;
    o->model_name = "base";
    o->max_tokens_default = 16;
}

int gg_srv_port(const gg_srv *s) { return s->port; }

/* ---- responses ---- */

static enum MHD_Result reply(struct MHD_Connection *conn, conn_ctx *cc, int status, const char *ctype, char *body,
                             int owned) {
    if (!body) {
        status = 500;
        ctype = "application/json";
        body = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        owned = 0;
    }
    size_t n = strlen(body);
    struct MHD_Response *r;
    if (owned) {
        r = MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
    } else {
        r = MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_PERSISTENT);
    }
    if (!r) {
        if (owned) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 405) MHD_add_response_header(r, "Allow", "GET, POST, DELETE");
    if (cc) {
        cc->status = status;
        cc->state = ST_DONE;
    }
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result reply_json(struct MHD_Connection *conn, conn_ctx *cc, int status, char *json) {
    return reply(conn, cc, status, "application/json", json, 1);
}

static enum MHD_Result reply_err(struct MHD_Connection *conn, conn_ctx *cc, int status, const char *type,
                                 const char *code, const char *msg) {
    return reply_json(conn, cc, status, gg_srv_error_json(msg, type, NULL, code));
}

/* ---- jobs list (for the monitor and shutdown) ---- */

static void list_add(gg_srv *s, gg_job *j) {
    pthread_mutex_lock(&s->mu);
    j->next = s->jobs;
    j->prev = NULL;
    if (s->jobs) s->jobs->prev = j;
    s->jobs = j;
    j->listed = 1;
    pthread_mutex_unlock(&s->mu);
}

static void list_del(gg_srv *s, gg_job *j) {
    pthread_mutex_lock(&s->mu);
    if (j->listed) {
        if (j->prev) j->prev->next = j->next;
        else s->jobs = j->next;
        if (j->next) j->next->prev = j->prev;
        j->listed = 0;
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- streaming ---- */

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    gg_job *j = cls;
    ssize_t r;
    pthread_mutex_lock(&j->mu);
    if (j->sse.n) {
        size_t n = j->sse.n < max ? j->sse.n : max;
        memcpy(buf, j->sse.p, n);
        gg_sbuf_consume(&j->sse, n);
        r = (ssize_t)n;
    } else if (j->sse_ended) {
        r = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        j->suspended = 1;
        MHD_suspend_connection(j->conn);
        r = 0;
    }
    pthread_mutex_unlock(&j->mu);
    return r;
}

static void sse_free(void *cls) {
    gg_job *j = cls;
    gg_job_cancel(j); /* the client went away mid-stream, or it ended: a no-op */
    gg_job_release(j);
}

/* ---- auth ---- */

static int key_ok(struct MHD_Connection *conn, const char *want, const char *also) {
    if (!want && !also) return 1;
    size_t n = 0;
    const char *k = gg_srv_bearer(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"), &n);
    if (!k) return 0;
    int ok = 0;
    if (want) ok |= gg_srv_key_equal(k, n, want);
    if (also) ok |= gg_srv_key_equal(k, n, also);
    return ok;
}

/* ---- routing ---- */

static int endpoint_of(const char *url) {
    if (!strcmp(url, "/v1/completions")) return GG_EP_COMPLETIONS;
    if (!strcmp(url, "/v1/chat/completions")) return GG_EP_CHAT;
    if (!strncmp(url, "/v1/models", 10)) return GG_EP_MODELS;
    if (!strcmp(url, "/health")) return GG_EP_HEALTH;
    if (!strcmp(url, "/metrics")) return GG_EP_METRICS;
    if (!strncmp(url, "/v1/adapters", 12)) return GG_EP_ADAPTERS;
    if (strstr(url, "tokeniz")) return GG_EP_TOKENIZE;
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) return GG_EP_PAGE;
    return GG_EP_OTHER;
}

static enum MHD_Result respond_job(struct MHD_Connection *conn, conn_ctx *cc) {
    int status = 500;
    char *body = gg_oa_response(cc->job, &status);
    gg_srv *s = cc->job->srv;
    gg_met_observe(&s->met, &s->met.latency, now_s() - cc->t0);
    if (cc->job->t_first > 0) gg_met_observe(&s->met, &s->met.ttft, cc->job->t_first - cc->t0);
    return reply_json(conn, cc, status, body);
}

static enum MHD_Result start_job(gg_srv *s, struct MHD_Connection *conn, conn_ctx *cc, int chat) {
    int status = 400;
    char *err = NULL;
    gg_job *j = gg_oa_parse(s, chat, cc->body.p ? cc->body.p : "", cc->body.n, &status, &err);
    if (!j) return reply_json(conn, cc, status, err);
    j->conn = conn;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    j->t0 = cc->t0;
    cc->job = j; /* the connection's reference */
    list_add(s, j);
    status = gg_oa_submit(j, &err);
    if (status) return reply_json(conn, cc, status, err);
    if (j->stream) {
        pthread_mutex_lock(&j->mu);
        j->refs++; /* the response's reference */
        pthread_mutex_unlock(&j->mu);
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_reader, j, sse_free);
        if (!r) {
            gg_job_release(j);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        MHD_add_response_header(r, "X-Accel-Buffering", "no");
        cc->state = ST_STREAMING;
        cc->status = 200;
        enum MHD_Result rc = MHD_queue_response(conn, 200, r);
        MHD_destroy_response(r);
        return rc;
    }
    pthread_mutex_lock(&j->mu);
    int done = j->n_done == j->n_choices;
    if (!done) {
        cc->state = ST_WAITING;
        j->suspended = 1;
        MHD_suspend_connection(conn);
    }
    pthread_mutex_unlock(&j->mu);
    return done ? respond_job(conn, cc) : MHD_YES;
}

static enum MHD_Result route(gg_srv *s, struct MHD_Connection *conn, conn_ctx *cc, const char *url,
                             const char *method) {
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    int del = !strcmp(method, "DELETE");
    const char *body = cc->body.p ? cc->body.p : "";
    int status = 400;
    /* /v1/tokenize etc. are accepted as well as /tokenize */
    const char *u = url;
    if (!strncmp(u, "/v1/tokeniz", 11) || !strncmp(u, "/v1/detokeniz", 13)) u += 3;
    switch (cc->ep) {
    case GG_EP_PAGE:
        if (!get) break;
        return reply(conn, cc, 200, "text/html; charset=utf-8", (char *)gg_serve_page, 0);
    case GG_EP_HEALTH:
        if (!get) break;
        {
            gg_sched_stats st;
            gg_sched_stats_get(s->sched, &st);
            char *b = NULL;
            if (asprintf(&b, "{\"status\":\"ok\",\"slots\":%d,\"active\":%d,\"queued\":%d}", st.n_slots, st.active,
                         st.queued) < 0)
                b = NULL;
            return reply_json(conn, cc, 200, b);
        }
    case GG_EP_METRICS:
        if (!get) break;
        return reply(conn, cc, 200, "text/plain; version=0.0.4; charset=utf-8", gg_met_text(s), 1);
    case GG_EP_MODELS:
        if (!get) break;
        if (!strcmp(url, "/v1/models")) return reply_json(conn, cc, 200, gg_oa_models(s));
        if (!strncmp(url, "/v1/models/", 11)) {
            const char *name = url + 11;
            if (gg_srv_find_model(s, name) == -2)
                return reply_json(conn, cc, 404,
                                  gg_srv_error_json("no such model", "invalid_request_error", "model",
                                                    "model_not_found"));
            json_t *o = json_pack("{s:s, s:s, s:I, s:s}", "id", name, "object", "model", "created",
                                  (json_int_t)s->created, "owned_by", "gg");
            char *b = o ? json_dumps(o, JSON_COMPACT) : NULL;
            json_decref(o);
            return reply_json(conn, cc, 200, b);
        }
        return reply_err(conn, cc, 404, "invalid_request_error", NULL, "no such endpoint");
    case GG_EP_COMPLETIONS:
    case GG_EP_CHAT:
        if (!post) break;
        return start_job(s, conn, cc, cc->ep == GG_EP_CHAT);
    case GG_EP_TOKENIZE:
        if (!strcmp(u, "/tokenize") && post) {
            char *b = gg_oa_tokenize(s, body, cc->body.n, &status);
            return reply_json(conn, cc, status, b);
        }
        if (!strcmp(u, "/detokenize") && post) {
            char *b = gg_oa_detokenize(s, body, cc->body.n, &status);
            return reply_json(conn, cc, status, b);
        }
        if (!strcmp(u, "/tokenizer_info") && get) return reply_json(conn, cc, 200, gg_oa_tokenizer_info(s));
        if (strcmp(u, "/tokenize") && strcmp(u, "/detokenize") && strcmp(u, "/tokenizer_info"))
            return reply_err(conn, cc, 404, "invalid_request_error", NULL, "no such endpoint");
        break;
    case GG_EP_ADAPTERS:
        if (!key_ok(conn, s->admin_key, NULL))
            return reply_err(conn, cc, 401, "authentication_error", "invalid_api_key",
                             "this endpoint needs the admin key (Authorization: Bearer KEY)");
        if (!strcmp(url, "/v1/adapters") && post) {
            char *b = gg_oa_adapter_post(s, body, cc->body.n, &status);
            return reply_json(conn, cc, status, b);
        }
        if (!strcmp(url, "/v1/adapters") && get) return reply_json(conn, cc, 200, gg_oa_models(s));
        if (!strncmp(url, "/v1/adapters/", 13) && del) {
            char *b = gg_oa_adapter_delete(s, url + 13, &status);
            return reply_json(conn, cc, status, b);
        }
        if (strcmp(url, "/v1/adapters") && strncmp(url, "/v1/adapters/", 13))
            return reply_err(conn, cc, 404, "invalid_request_error", NULL, "no such endpoint");
        break;
    default: return reply_err(conn, cc, 404, "invalid_request_error", NULL, "no such endpoint");
    }
    return reply_err(conn, cc, 405, "invalid_request_error", NULL, "method not allowed on this endpoint");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    gg_srv *s = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        cc = calloc(1, sizeof *cc);
        if (!cc) return MHD_NO;
        cc->t0 = now_s();
        cc->ep = endpoint_of(url);
        *con_cls = cc;
        if (cc->ep != GG_EP_HEALTH && cc->ep != GG_EP_PAGE && cc->ep != GG_EP_ADAPTERS &&
            !key_ok(conn, s->api_key, s->admin_key))
            return reply_err(conn, cc, 401, "authentication_error", "invalid_api_key",
                             "missing or wrong API key (Authorization: Bearer KEY)");
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno || *end || v > s->o.max_body) {
                cc->too_big = 1;
                char msg[128];
                snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", s->o.max_body);
                return reply_err(conn, cc, 413, "invalid_request_error", "request_too_large", msg);
            }
        }
        return MHD_YES;
    }
    if (cc->state == ST_READING) {
        if (*upload_size) {
            if (!cc->too_big && cc->body.n + *upload_size <= s->o.max_body) {
                if (gg_sbuf_add(&cc->body, upload, *upload_size)) cc->too_big = 1;
            } else {
                cc->too_big = 1;
                gg_sbuf_free(&cc->body);
            }
            *upload_size = 0;
            return MHD_YES;
        }
        if (cc->too_big) {
            char msg[128];
            snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", s->o.max_body);
            return reply_err(conn, cc, 413, "invalid_request_error", "request_too_large", msg);
        }
        return route(s, conn, cc, url, method);
    }
    if (cc->state == ST_WAITING) { /* resumed: the job is done */
        gg_job *j = cc->job;
        pthread_mutex_lock(&j->mu);
        int done = j->n_done == j->n_choices;
        if (!done) {
            j->suspended = 1;
            MHD_suspend_connection(conn);
        }
        pthread_mutex_unlock(&j->mu);
        return done ? respond_job(conn, cc) : MHD_YES;
    }
    *upload_size = 0; /* answered early (401, 413): the rest of the body is dropped */
    return MHD_YES;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    gg_srv *s = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) return;
    *con_cls = NULL;
    int status = cc->status ? cc->status : 499;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && cc->state == ST_STREAMING) status = 200;
    gg_met_request(&s->met, cc->ep, status);
    if (cc->job) {
        gg_job *j = cc->job;
        list_del(s, j);
        pthread_mutex_lock(&j->mu);
        j->conn_gone = 1;
        j->suspended = 0;
        pthread_mutex_unlock(&j->mu);
        if (cc->state == ST_STREAMING) {
            gg_met_observe(&s->met, &s->met.latency, now_s() - cc->t0);
            if (j->t_first > 0) gg_met_observe(&s->met, &s->met.ttft, j->t_first - cc->t0);
        }
        gg_job_cancel(j);
        gg_job_release(j);
    }
    gg_sbuf_free(&cc->body);
    free(cc);
}

/* ---- the monitor: clients that left while their connection is suspended ---- */

static void *monitor(void *arg) {
    gg_srv *s = arg;
    pthread_mutex_lock(&s->mon_mu);
    while (s->monitor_on) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->mon_cv, &s->mon_mu, &ts);
        if (!s->monitor_on) break;
        pthread_mutex_unlock(&s->mon_mu);
        gg_job *gone[64];
        int n = 0;
        pthread_mutex_lock(&s->mu);
        for (gg_job *j = s->jobs; j && n < 64; j = j->next) {
            pthread_mutex_lock(&j->mu);
            if (j->suspended && j->fd >= 0 && j->n_done < j->n_choices) {
                char c;
                ssize_t k = recv(j->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                    j->refs++;
                    gone[n++] = j;
                }
            }
            pthread_mutex_unlock(&j->mu);
        }
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < n; i++) {
            if (s->o.verbose) fprintf(stderr, "ggserve: %s: client went away, cancelling\n", gone[i]->id);
            gg_job_cancel(gone[i]);
            gg_job_release(gone[i]);
        }
        pthread_mutex_lock(&s->mon_mu);
    }
    pthread_mutex_unlock(&s->mon_mu);
    return NULL;
}

/* ---- start / stop ---- */

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    gg_srv *s = cls;
    if (!s->o.verbose) return;
    fputs("ggserve: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

static char *dup_or_null(const char *x) { return x ? strdup(x) : NULL; }

int gg_srv_start(gg_srv **out, gg_model *m, const gg_file *f, const gg_tokenizer *tok, gg_sched *sched,
                 const gg_srv_opts *o, gg_err *err) {
    *out = NULL;
    gg_srv *s = calloc(1, sizeof *s);
    if (!s) return gg_errf(err, "out of memory");
    s->model = m;
    s->file = f;
    s->tok = tok;
    s->sched = sched;
    s->o = *o;
    s->model_name = strdup(o->model_name ? o->model_name : "base");
    s->api_key = o->api_key && *o->api_key ? strdup(o->api_key) : NULL;
    s->admin_key = o->admin_key && *o->admin_key ? strdup(o->admin_key) : dup_or_null(s->api_key);
    s->adapter_dir = dup_or_null(o->adapter_dir);
    s->chat_template = dup_or_null(o->chat_template ? o->chat_template : gg_tokenizer_chat_template(tok));
    s->host = strdup(o->host ? o->host : "127.0.0.1");
    s->vocab = gg_model_cfg(m)->vocab;
    s->slot_ctx = gg_sched_slot_ctx(sched);
    s->eos[0] = (int32_t)gg_model_cfg(m)->eos_id;
    s->eos[1] = gg_tokenizer_eos_id(tok);
    s->created = (long)time(NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->mon_mu, NULL);
    pthread_cond_init(&s->mon_cv, NULL);
    gg_met_init(&s->met);
    s->port = o->port;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    if (getaddrinfo(s->host, port, &hints, &ai) != 0 || !ai) {
        gg_errf(err, "--host '%s': not an IPv4 or IPv6 address or a known host name", s->host);
        goto fail;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)(o->max_conns ? o->max_conns : 4096), NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)o->timeout_s, NULL},
        {MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, 64 * 1024, NULL},
        {o->http_threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_ARRAY, o->http_threads > 1 ? o->http_threads : 0,
         NULL},
        {MHD_OPTION_END, 0, NULL}};
    if (o->http_threads <= 1) opts[4].option = MHD_OPTION_END;
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                            MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        gg_errf(err, "cannot listen on %s port %d: %s", s->host, o->port, errno ? strerror(errno) : "libmicrohttpd failed");
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    if (di) s->port = di->port;
    s->monitor_on = 1;
    if (pthread_create(&s->monitor, NULL, monitor, s) != 0) {
        s->monitor_on = 0;
        MHD_stop_daemon(s->d);
        gg_errf(err, "cannot start a thread");
        goto fail;
    }
    *out = s;
    return 0;
fail:
    free(s->model_name);
    free(s->api_key);
    free(s->admin_key);
    free(s->adapter_dir);
    free(s->chat_template);
    free(s->host);
    free(s);
    return -1;
}

int gg_srv_adapter_load(gg_srv *s, const char *name, const char *path, float scale, gg_err *err) {
    if (!gg_srv_name_ok(name)) return gg_errf(err, "adapter name '%s': use 1 to 64 of A-Z a-z 0-9 . _ -", name);
    if (!strcmp(name, s->model_name)) return gg_errf(err, "adapter name '%s' is the base model's", name);
    if (!s->o.load_adapter) return gg_errf(err, "this server cannot load adapters");
    if (gg_srv_find_model(s, name) != -2) return gg_errf(err, "adapter '%s' is already loaded", name);
    gg_lora *l;
    if (s->o.load_adapter(s->o.load_ctx, path, &l, err)) return -1;
    int h = gg_sched_adapter_add(s->sched, l, scale, err);
    if (h < 0) return -1;
    pthread_mutex_lock(&s->mu);
    int slot = -1;
    for (int i = 0; i < GG_SRV_MAX_ADAPTERS; i++) {
        if (s->ad[i].used && !strcmp(s->ad[i].name, name)) {
            slot = -2; /* lost a race with another load of the same name */
            break;
        }
        if (!s->ad[i].used && slot == -1) slot = i;
    }
    if (slot >= 0) {
        gg_srv_adapter *a = &s->ad[slot];
        snprintf(a->name, sizeof a->name, "%s", name);
        a->path = strdup(path);
        a->scale = scale;
        a->handle = h;
        a->used = 1;
    }
    pthread_mutex_unlock(&s->mu);
    if (slot < 0) {
        gg_sched_adapter_remove(s->sched, h, NULL);
        if (slot == -2) return gg_errf(err, "adapter '%s' is already loaded", name);
        return gg_errf(err, "too many adapters (at most %d)", GG_SRV_MAX_ADAPTERS);
    }
    return 0;
}

void gg_srv_stop(gg_srv *s) {
    if (!s) return;
    MHD_socket ls = MHD_quiesce_daemon(s->d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_mutex_unlock(&s->mu);
    /* End every request, then wait (a few seconds at most) for their
     * connections to be answered: none may stay suspended. */
    for (int tries = 0; tries < 250; tries++) {
        gg_job *js[256];
        int n = 0, suspended = 0;
        pthread_mutex_lock(&s->mu);
        for (gg_job *j = s->jobs; j; j = j->next) {
            pthread_mutex_lock(&j->mu);
            suspended |= j->suspended;
            if (n < 256 && j->n_done < j->n_choices) {
                j->refs++;
                js[n++] = j;
            }
            pthread_mutex_unlock(&j->mu);
        }
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < n; i++) {
            gg_job_cancel(js[i]);
            gg_job_release(js[i]);
        }
        if (!n && !suspended) break;
        usleep(20000);
    }
    usleep(50000); /* a worker may be between clearing j->suspended and resuming */
    pthread_mutex_lock(&s->mon_mu);
    s->monitor_on = 0;
    pthread_cond_signal(&s->mon_cv);
    pthread_mutex_unlock(&s->mon_mu);
    pthread_join(s->monitor, NULL);
    MHD_stop_daemon(s->d);
    for (int i = 0; i < GG_SRV_MAX_ADAPTERS; i++) free(s->ad[i].path);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->mon_mu);
    pthread_cond_destroy(&s->mon_cv);
    pthread_mutex_destroy(&s->met.mu);
    free(s->model_name);
    free(s->api_key);
    free(s->admin_key);
    free(s->adapter_dir);
    free(s->chat_template);
    free(s->host);
    free(s);
}

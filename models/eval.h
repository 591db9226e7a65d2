/* eval.h — scoring requests on a model, as lm-evaluation-harness defines
 * them: loglikelihood (context, continuation → Σ log p, is-greedy),
 * loglikelihood_rolling (lm-eval's disjoint rolling windows), greedy
 * generate_until (stop strings, a token budget), and the KL divergence of a
 * model against a base over the same windows.
 *
 * Owns: one gg_session per gg_eval and a mirror of the token ids in its KV
 * cache, so that a request whose tokens begin like the cached ones reuses
 * that prefix (gg_session_truncate to the common prefix, then feed the rest)
 * — the choices of a multiple-choice question share their context this way.
 * Requests are scored in lexicographic token order (equal contexts become
 * neighbours); results go back into each request, in the caller's order.
 *
 * Only the rows that score continuation tokens are materialised: the
 * context is fed without logits, the scored tokens in chunks of at most the
 * session's batch, so memory is O(batch × vocab), never O(ctx × vocab).
 *
 * Numerics: log-softmax in double over the float32 logits of the backend;
 * is-greedy compares each continuation token with the row's argmax (first
 * index on ties, as torch.argmax).
 *
 * Errors: 0 / -1 with gg_err naming the request at fault. */
#ifndef GG_EVAL_H
#define GG_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "models/model.h"
#include "models/tokenizer.h"

typedef struct gg_eval gg_eval;

/* n_ctx: the longest input (the KV cache size, <= the model's context);
 * batch: tokens per forward step. */
int gg_eval_new(gg_eval **out, gg_model *m, int64_t n_ctx, int64_t batch, gg_err *err);
void gg_eval_free(gg_eval *e);
/* The session, e.g. for gg_session_set_adapters. */
gg_session *gg_eval_session(gg_eval *e);
int64_t gg_eval_ctx(const gg_eval *e);
/* Prefix reuse between consecutive requests (default on). Off: every
 * request starts from an empty cache. */
void gg_eval_set_reuse(gg_eval *e, int on);

typedef struct gg_eval_stats {
    int64_t requests;      /* requests scored */
    int64_t tokens_fed;    /* tokens run through the model */
    int64_t tokens_reused; /* tokens taken from the cache instead */
} gg_eval_stats;
void gg_eval_stats_get(const gg_eval *e, gg_eval_stats *st);

/* Progress: called after each request with (done, total). May be NULL. */
typedef void (*gg_eval_progress)(void *user, size_t done, size_t total);

/* ---- loglikelihood ---- */
typedef struct gg_ll_req {
    const int32_t *ctx; /* may be empty only when cont is */
    size_t n_ctx;
    const int32_t *cont;
    size_t n_cont;
    /* outputs */
    double logprob;        /* Σ log p(cont[i] | everything before it) */
    int greedy;            /* every cont token is its row's argmax */
    float *token_logprobs; /* optional [n_cont]: each token's log p */
} gg_ll_req;

/* Score n requests. lm-eval's truncation: the input is the last n_ctx+1
 * tokens of ctx ++ cont minus the final one; a continuation longer than
 * the context size is an error. */
int gg_eval_loglikelihood(gg_eval *e, gg_ll_req *reqs, size_t n, gg_eval_progress progress, void *user,
                          gg_err *err);

/* ---- rolling windows ---- */
/* One disjoint window: score tokens [pred_start, pred_start + pred_len)
 * given the context tokens [ctx_start, pred_start), or the single prefix
 * token (BOS/EOT) when ctx_prefix is set (the first window, which then has
 * no text context). */
typedef struct gg_window {
    size_t ctx_start, pred_start, pred_len;
    int ctx_prefix;
} gg_window;

/* lm-eval's get_rolling_token_windows(tokens, prefix, max_seq_len = max_len,
 * context_len = max_len - stride + 1) followed by make_disjoint_window:
 * the first window predicts min(max_len, n) tokens from the prefix token;
 * each later one predicts the next min(stride, rest) tokens with the
 * max_len - pred_len + 1 tokens before them as context. stride = max_len is
 * lm-eval's loglikelihood_rolling. Writes the windows to out (may be NULL)
 * and returns their count. max_len >= 1, 1 <= stride <= max_len. */
size_t gg_eval_rolling_windows(size_t n_tokens, size_t max_len, size_t stride, gg_window *out);

/* Σ log p of every token of toks under the rolling windows above, with
 * prefix as the first window's context; token_logprobs (optional, [n])
 * gets each token's log p; *n_windows (optional) their count.
 * max_len <= gg_eval_ctx(e). */
int gg_eval_rolling(gg_eval *e, const int32_t *toks, size_t n, int32_t prefix, size_t max_len, size_t stride,
                    double *logprob, float *token_logprobs, size_t *n_windows, gg_eval_progress progress,
                    void *user, gg_err *err);

/* ---- KL divergence against a base ---- */
typedef struct gg_kl_stats {
    int64_t n;                  /* positions compared */
    double kl_sum, kl_max;      /* KL(P_base ‖ P_model) per position, nats */
    int64_t top1_agree;         /* positions whose argmax is the same */
    double nll_model, nll_base; /* Σ −log p of the actual next token */
} gg_kl_stats;

/* Over the rolling windows of toks (as gg_eval_rolling), compare model's
 * next-token distribution with base's at every scored position. The two
 * models must share the vocabulary size. */
int gg_eval_kl(gg_eval *model, gg_eval *base, const int32_t *toks, size_t n, int32_t prefix, size_t max_len,
               size_t stride, gg_kl_stats *st, gg_eval_progress progress, void *user, gg_err *err);

/* ---- generate_until ---- */
typedef struct gg_gen_req {
    const int32_t *ctx;
    size_t n_ctx;
    const char *const *until; /* stop strings (empty ones ignored) */
    size_t n_until;
    int max_gen;              /* most tokens generated */
    /* outputs */
    char *text;               /* malloc'd: the decoded generation cut before the first stop string */
    size_t n_gen;             /* tokens generated */
} gg_gen_req;

/* Greedy decoding (argmax, as lm-eval's do_sample=False) from each
 * request's context (its last n_ctx - max_gen tokens, as lm-eval truncates
 * on the left), until a stop string appears in the decoded text, one of the
 * eos ids (n_eos of them; -1 entries ignored) is generated, max_gen tokens,
 * or a full cache. The text is decoded skipping special tokens, then cut
 * at the earliest occurrence of each stop string in turn (lm-eval's
 * s.split(term)[0]). gg_gen_req_free_text frees the outputs. */
int gg_eval_generate(gg_eval *e, const gg_tokenizer *tok, gg_gen_req *reqs, size_t n, const int32_t *eos,
                     size_t n_eos, gg_eval_progress progress, void *user, gg_err *err);
void gg_gen_req_free_text(gg_gen_req *reqs, size_t n);

/* log-softmax of row at token t, in double; *is_max (may be NULL) is set
 * when t is the row's argmax (first index on ties). */
double gg_eval_logprob(const float *row, int64_t vocab, int32_t t, int *is_max);

#endif

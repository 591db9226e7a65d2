/* task.h — evaluation tasks in the spirit of lm-evaluation-harness's task
 * YAML: the task file (a YAML subset or JSON), its JSONL documents,
 * few-shot sampling, prompts rendered with gg_jinja_render, the requests of
 * each document, per-document metrics and their aggregation with standard
 * errors. docs/EVAL.md documents every key; tools/tasks/ ships examples.
 *
 * Owns: the YAML subset reader (gg_task_yaml_parse: block mappings and
 * sequences by indentation, `- key: value` items, flow [..] / {..}, plain,
 * '...' and "..." scalars, | and > block scalars, # comments; anchors,
 * aliases, tags such as !function, and multi-document files are errors
 * naming the line), the task model, and running a task on a gg_eval.
 *
 * Output types (output_type): multiple_choice (acc, acc_norm, acc_bytes,
 * mc2), generate_until (exact_match after named filters: regex,
 * take_first, remove_whitespace, lowercase, uppercase), loglikelihood
 * (perplexity, acc = is-greedy), loglikelihood_rolling (word_perplexity,
 * byte_perplexity, bits_per_byte, token_perplexity).
 *
 * Errors: 0 / -1 with gg_err "FILE:LINE: what" for task files and JSONL
 * documents (the line of the key or document at fault). */
#ifndef GG_TASK_H
#define GG_TASK_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "models/eval.h"
#include "models/tokenizer.h"

/* Parse a task file's text (YAML subset, or JSON when the first non-blank
 * character is '{') into a jansson object. lines (may be NULL) gets, for
 * each top-level key, its 1-based line (an integer). label names the text
 * in messages. */
int gg_task_yaml_parse(json_t **out, json_t **lines, const char *buf, size_t len, const char *label, gg_err *err);

typedef enum gg_task_type {
    GG_TASK_MULTIPLE_CHOICE,
    GG_TASK_GENERATE_UNTIL,
    GG_TASK_LOGLIKELIHOOD,
    GG_TASK_ROLLING
} gg_task_type;

typedef struct gg_task gg_task;

/* Read and check a task file (no documents yet). */
int gg_task_load(gg_task **out, const char *path, gg_err *err);
/* The same from memory; label is the file name (documents are then
 * resolved relative to the current folder). */
int gg_task_parse(gg_task **out, const char *buf, size_t len, const char *label, gg_err *err);
void gg_task_free(gg_task *t);

const char *gg_task_name(const gg_task *t);
gg_task_type gg_task_type_of(const gg_task *t);
int gg_task_default_fewshot(const gg_task *t);

/* Read the documents: DATASET/TEST_SPLIT.jsonl (and the few-shot split),
 * DATASET being dataset_path relative to data_dir when given, else to the
 * task file's folder. */
int gg_task_load_docs(gg_task *t, const char *data_dir, gg_err *err);
size_t gg_task_ndocs(const gg_task *t);

typedef struct gg_task_opts {
    int num_fewshot;        /* -1: the task's num_fewshot */
    uint64_t seed;          /* few-shot draw */
    size_t limit;           /* 0: every document, else the first limit */
    int add_bos;            /* encode contexts with the tokenizer's special tokens */
    int bootstrap_iters;    /* resamples for the bootstrap standard errors (0: none) */
    int32_t prefix_token;   /* context of empty contexts and of the first rolling window (BOS, else EOS) */
    int32_t eos[2];         /* ids that end a generation (-1: none) */
    FILE *log_samples;      /* one JSON line per document (may be NULL) */
    gg_eval_progress progress;
    void *user;
} gg_task_opts;

typedef struct gg_metric {
    char name[32];   /* "acc", "exact_match", "word_perplexity" ... */
    char filter[32]; /* "none", "strict-match" ... */
    double value;
    double stderr_;  /* lm-eval's: sample stddev / sqrt(n) for means; the bootstrap otherwise */
    double stderr_boot;
    int has_stderr;
    int higher_is_better;
} gg_metric;

typedef struct gg_task_result {
    char name[128];
    int num_fewshot;
    size_t n_docs, n_requests;
    gg_metric m[24];
    size_t n_metrics;
    double seconds;
} gg_task_result;

/* Build the requests of the first limit documents, score them on e, and
 * aggregate the metrics. tok encodes the prompts. */
int gg_task_run(gg_task *t, gg_eval *e, const gg_tokenizer *tok, const gg_task_opts *o, gg_task_result *res,
                gg_err *err);

/* The context string of document i (few-shot examples included), as
 * gg_task_run builds it; malloc'd. For tests of the few-shot draw. */
int gg_task_context(gg_task *t, size_t i, int num_fewshot, uint64_t seed, char **out, gg_err *err);

/* ---- metrics (exposed for the tests) ---- */
/* Number of filter sets of a generate_until task (1: "none"), and the
 * name of set i. */
int gg_task_n_filters(const gg_task *t);
const char *gg_task_filter_name(const gg_task *t, int i);
/* Apply filter set i to a generated response and score it with the task's
 * exact_match options against target: 1 / 0; *filtered (may be NULL) gets
 * the filtered text (malloc'd). */
int gg_task_exact_match(const gg_task *t, int i, const char *resp, const char *target, char **filtered);
/* Python's len(re.split(r"\s+", s)). */
size_t gg_task_count_words(const char *s, size_t len);
/* Code points of UTF-8 text (Python len of the decoded str). */
size_t gg_task_count_chars(const char *s, size_t len);
/* Mean and lm-eval's stderr of x[0..n): sqrt(var_ddof1 / n). */
void gg_task_mean_stderr(const double *x, size_t n, double *mean, double *se);
/* Bootstrap standard error (ddof 1 over iters resamples with replacement,
 * seeded) of agg(x, w) where agg is the mean of x (w = NULL) or
 * exp(Σx / Σw) (perplexity: x = NLL, w = counts; kind 1) or
 * Σx / Σw / ln 2 (kind 2). */
double gg_task_bootstrap(const double *x, const double *w, size_t n, int kind, int iters, uint64_t seed);

#endif

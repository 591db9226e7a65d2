/* task_internal.h — the task model shared by task.c (files, documents,
 * prompts) and eval_task.c (requests, metrics). Not a public header. */
#ifndef GG_TASK_INTERNAL_H
#define GG_TASK_INTERNAL_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#include <stdarg.h>
#include <unistd.h>

#include "models/task.h"

enum { TM_ACC, TM_ACC_NORM, TM_ACC_BYTES, TM_MC2, TM_EXACT, TM_PPL, TM_WORD_PPL, TM_BYTE_PPL, TM_BPB, TM_TOKEN_PPL };
#define TMB(x) (1u << (x))
#define TASK_MAX_RE 16
#define TASK_MAX_FS 4
#define TASK_MAX_STEPS 8

enum { TF_REGEX, TF_TAKE_FIRST, TF_REMOVE_WS, TF_LOWER, TF_UPPER };

typedef struct task_fstep {
    int kind;
    pcre2_code *re;
    int group_select;
    char *fallback;
} task_fstep;

typedef struct task_filterset {
    char name[32];
    task_fstep steps[TASK_MAX_STEPS];
    int nsteps;
} task_filterset;

typedef struct task_docs {
    json_t *docs; /* array of objects */
    int *lines;   /* JSONL line of each */
    char *path;
} task_docs;

struct gg_task {
    char name[128];
    char *label, *dir;
    json_t *cfg, *lines;
    gg_task_type type;
    json_t *doc_to_text, *doc_to_target, *doc_to_choice, *doc_to_labels, *description;
    char *target_delim, *fewshot_delim;
    int num_fewshot, multiple_input;
    char *dataset_path, *test_split, *validation_split, *training_split, *fewshot_split;
    unsigned metrics;
    int em_ignore_case, em_ignore_punct, em_ignore_numbers;
    pcre2_code *ignore[TASK_MAX_RE];
    int n_ignore;
    task_filterset fs[TASK_MAX_FS];
    int nfs;
    char **until;
    size_t n_until;
    int max_gen;
    task_docs test, fewshot;
};

int task_key_err(const gg_task *t, const char *key, gg_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
json_t *task_resolve(const gg_task *t, json_t *tv, json_t *doc, const char *what, size_t doc_i, gg_err *err);
json_t *task_choices(const gg_task *t, json_t *doc, size_t doc_i, gg_err *err);
char *task_text(json_t *v);
int task_index_of(json_t *v, json_t *choices);

#endif

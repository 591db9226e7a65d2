/* task.c — task files, documents, few-shot contexts and prompts (task.h).
 * Requests, metrics and aggregation are in eval_task.c. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "models/task_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "models/jinja.h"

static const char *const KNOWN_KEYS[] = {
    "task", "output_type", "dataset_path", "test_split", "validation_split", "training_split", "fewshot_split",
    "doc_to_text", "doc_to_target", "doc_to_choice", "doc_to_labels", "description", "target_delimiter",
    "fewshot_delimiter", "num_fewshot", "metric_list", "metrics", "generation_kwargs", "filter_list",
    "multiple_input", "tag", "group", "dataset_name", "dataset_kwargs", "metadata", "should_decontaminate",
    "doc_to_decontamination_query", "fewshot_config", "repeats", "version", "include", "process_docs",
    "process_results", "unsafe_code", NULL};

/* Messages stay on one line: control characters (a template's newlines
 * quoted by a jinja error) become spaces. */
static void one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20) *s = ' ';
}

int task_key_err(const gg_task *t, const char *key, gg_err *err, const char *fmt, ...) {
    char m[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    one_line(m);
    json_t *ln = t->lines ? json_object_get(t->lines, key) : NULL;
    return gg_errf(err, "%s:%d: %s", t->label, ln ? (int)json_integer_value(ln) : 1, m);
}

static char *dup_str(const char *s) { return s ? strdup(s) : NULL; }

/* key as a string (or NULL when absent / null). */
static int get_str(gg_task *t, const char *key, char **out, const char *def, gg_err *err) {
    json_t *v = json_object_get(t->cfg, key);
    if (!v || json_is_null(v)) {
        *out = dup_str(def);
        return 0;
    }
    if (!json_is_string(v)) return task_key_err(t, key, err, "%s: expected a string", key);
    *out = strdup(json_string_value(v));
    return 0;
}

static int get_int(gg_task *t, const char *key, long *out, long def, long lo, long hi, gg_err *err) {
    json_t *v = json_object_get(t->cfg, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return task_key_err(t, key, err, "%s: expected an integer from %ld to %ld", key, lo, hi);
    *out = (long)json_integer_value(v);
    return 0;
}

static int get_bool(json_t *v, int def) { return !v || json_is_null(v) ? def : json_is_true(v); }

/* A template key: a string (template or field name), a number or a list. */
static int get_tmpl(gg_task *t, const char *key, json_t **out, gg_err *err) {
    json_t *v = json_object_get(t->cfg, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v) && !json_is_integer(v) && !json_is_array(v))
        return task_key_err(t, key, err, "%s: expected a template string, an integer or a list", key);
    if (json_is_string(v)) {
        char *o = NULL;
        gg_err je;
        json_t *empty = json_object();
        /* a syntax check: render against no variables (undefined prints "") */
        int bad = gg_jinja_render(json_string_value(v), empty, &o, NULL, &je);
        json_decref(empty);
        free(o);
        /* syntax errors only: with no variables, runtime errors are expected */
        if (bad && (strstr(je.msg, "unexpected") || strstr(je.msg, ": expected ")) && !strstr(je.msg, "expected iterable") &&
            !strstr(je.msg, "unexpected keyword argument"))
            return task_key_err(t, key, err, "%s: %s", key, je.msg);
    }
    *out = json_incref(v);
    return 0;
}

static int compile_re(gg_task *t, const char *key, const char *src, pcre2_code **out, gg_err *err) {
    int ec;
    PCRE2_SIZE off;
    *out = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ec, &off, NULL);
    if (!*out) {
        PCRE2_UCHAR b[160];
        pcre2_get_error_message(ec, b, sizeof b);
        return task_key_err(t, key, err, "%s: regex '%s' at offset %zu: %s", key, src, (size_t)off, (char *)b);
    }
    return 0;
}

static int add_metric(gg_task *t, const char *key, const char *name, json_t *spec, gg_err *err) {
    static const char *const names[] = {"acc", "acc_norm", "acc_bytes", "mc2", "exact_match", "perplexity",
                                        "word_perplexity", "byte_perplexity", "bits_per_byte", "token_perplexity",
                                        NULL};
    int id = -1;
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0) id = i;
    if (id < 0) return task_key_err(t, key, err, "%s: unknown metric '%s'", key, name);
    t->metrics |= 1u << id;
    if (id == TM_EXACT && spec) {
        t->em_ignore_case = get_bool(json_object_get(spec, "ignore_case"), 0);
        t->em_ignore_punct = get_bool(json_object_get(spec, "ignore_punctuation"), 0);
        t->em_ignore_numbers = get_bool(json_object_get(spec, "ignore_numbers"), 0);
        json_t *rx = json_object_get(spec, "regexes_to_ignore");
        if (rx && !json_is_null(rx)) {
            if (!json_is_array(rx)) return task_key_err(t, key, err, "%s: regexes_to_ignore: expected a list", key);
            size_t i;
            json_t *x;
            json_array_foreach(rx, i, x) {
                if (!json_is_string(x) || t->n_ignore == TASK_MAX_RE)
                    return task_key_err(t, key, err, "%s: regexes_to_ignore: expected at most %d strings", key,
                                        TASK_MAX_RE);
                if (compile_re(t, key, json_string_value(x), &t->ignore[t->n_ignore], err)) return -1;
                t->n_ignore++;
            }
        }
    }
    return 0;
}

static int read_metrics(gg_task *t, gg_err *err) {
    json_t *ml = json_object_get(t->cfg, "metric_list"), *m = json_object_get(t->cfg, "metrics");
    if (ml && !json_is_null(ml)) {
        if (!json_is_array(ml)) return task_key_err(t, "metric_list", err, "metric_list: expected a list");
        size_t i;
        json_t *x;
        json_array_foreach(ml, i, x) {
            json_t *name = json_is_object(x) ? json_object_get(x, "metric") : x;
            if (!json_is_string(name))
                return task_key_err(t, "metric_list", err, "metric_list: item %zu has no metric name", i + 1);
            if (add_metric(t, "metric_list", json_string_value(name), json_is_object(x) ? x : NULL, err)) return -1;
        }
    }
    if (m && !json_is_null(m)) {
        if (!json_is_array(m)) return task_key_err(t, "metrics", err, "metrics: expected a list of metric names");
        size_t i;
        json_t *x;
        json_array_foreach(m, i, x) {
            if (!json_is_string(x)) return task_key_err(t, "metrics", err, "metrics: expected metric names");
            if (add_metric(t, "metrics", json_string_value(x), NULL, err)) return -1;
        }
    }
    if (!t->metrics) {
        switch (t->type) {
        case GG_TASK_MULTIPLE_CHOICE: t->metrics = TMB(TM_ACC) | TMB(TM_ACC_NORM) | TMB(TM_ACC_BYTES); break;
        case GG_TASK_GENERATE_UNTIL: t->metrics = TMB(TM_EXACT); break;
        case GG_TASK_LOGLIKELIHOOD: t->metrics = TMB(TM_PPL) | TMB(TM_ACC); break;
        case GG_TASK_ROLLING:
            t->metrics = TMB(TM_WORD_PPL) | TMB(TM_BYTE_PPL) | TMB(TM_BPB) | TMB(TM_TOKEN_PPL);
            break;
        }
    }
    unsigned allowed = 0;
    switch (t->type) {
    case GG_TASK_MULTIPLE_CHOICE: allowed = TMB(TM_ACC) | TMB(TM_ACC_NORM) | TMB(TM_ACC_BYTES) | TMB(TM_MC2); break;
    case GG_TASK_GENERATE_UNTIL: allowed = TMB(TM_EXACT); break;
    case GG_TASK_LOGLIKELIHOOD: allowed = TMB(TM_PPL) | TMB(TM_ACC); break;
    case GG_TASK_ROLLING: allowed = TMB(TM_WORD_PPL) | TMB(TM_BYTE_PPL) | TMB(TM_BPB) | TMB(TM_TOKEN_PPL); break;
    }
    if (t->metrics & ~allowed)
        return task_key_err(t, ml ? "metric_list" : "metrics", err, "a metric does not apply to output_type %s",
                            json_string_value(json_object_get(t->cfg, "output_type")));
    return 0;
}

static int read_filters(gg_task *t, gg_err *err) {
    json_t *fl = json_object_get(t->cfg, "filter_list");
    if (!fl || json_is_null(fl)) {
        snprintf(t->fs[0].name, sizeof t->fs[0].name, "none");
        t->nfs = 1;
        return 0;
    }
    const char *K = "filter_list";
    if (!json_is_array(fl) || !json_array_size(fl) || json_array_size(fl) > TASK_MAX_FS)
        return task_key_err(t, K, err, "filter_list: expected a list of 1 to %d {name, filter} items", TASK_MAX_FS);
    size_t i;
    json_t *x;
    json_array_foreach(fl, i, x) {
        task_filterset *fs = &t->fs[t->nfs++];
        json_t *name = json_object_get(x, "name"), *steps = json_object_get(x, "filter");
        if (!json_is_string(name) || strlen(json_string_value(name)) >= sizeof fs->name)
            return task_key_err(t, K, err, "filter_list: item %zu needs a short name", i + 1);
        snprintf(fs->name, sizeof fs->name, "%s", json_string_value(name));
        if (!json_is_array(steps) || json_array_size(steps) > TASK_MAX_STEPS)
            return task_key_err(t, K, err, "filter_list: %s: 'filter' must be a list of at most %d steps", fs->name,
                                TASK_MAX_STEPS);
        size_t j;
        json_t *st;
        json_array_foreach(steps, j, st) {
            task_fstep *s = &fs->steps[fs->nsteps++];
            json_t *fn = json_object_get(st, "function");
            const char *f = json_string_value(fn);
            if (!f) return task_key_err(t, K, err, "filter_list: %s: step %zu has no function", fs->name, j + 1);
            if (strcmp(f, "regex") == 0) {
                s->kind = TF_REGEX;
                json_t *pat = json_object_get(st, "regex_pattern"), *gs = json_object_get(st, "group_select"),
                       *fb = json_object_get(st, "fallback");
                const char *ps = pat ? json_string_value(pat) : "#### (\\-?[0-9\\.\\,]+)";
                if (!ps) return task_key_err(t, K, err, "filter_list: %s: regex_pattern must be a string", fs->name);
                if (compile_re(t, K, ps, &s->re, err)) return -1;
                s->group_select = gs && json_is_integer(gs) ? (int)json_integer_value(gs) : 0;
                s->fallback = strdup(fb && json_is_string(fb) ? json_string_value(fb) : "[invalid]");
            } else if (strcmp(f, "take_first") == 0) s->kind = TF_TAKE_FIRST;
            else if (strcmp(f, "remove_whitespace") == 0) s->kind = TF_REMOVE_WS;
            else if (strcmp(f, "lowercase") == 0) s->kind = TF_LOWER;
            else if (strcmp(f, "uppercase") == 0) s->kind = TF_UPPER;
            else return task_key_err(t, K, err, "filter_list: %s: unknown filter function '%s' (regex, take_first, "
                                                "remove_whitespace, lowercase, uppercase)", fs->name, f);
        }
    }
    return 0;
}

static int read_gen(gg_task *t, gg_err *err) {
    json_t *g = json_object_get(t->cfg, "generation_kwargs");
    t->max_gen = 256;
    json_t *until = NULL;
    if (g && !json_is_null(g)) {
        if (!json_is_object(g)) return task_key_err(t, "generation_kwargs", err, "generation_kwargs: expected a mapping");
        until = json_object_get(g, "until");
        json_t *mg = json_object_get(g, "max_gen_toks");
        if (mg) {
            if (!json_is_integer(mg) || json_integer_value(mg) < 1 || json_integer_value(mg) > 1 << 20)
                return task_key_err(t, "generation_kwargs", err, "max_gen_toks: expected a positive integer");
            t->max_gen = (int)json_integer_value(mg);
        }
        json_t *ds = json_object_get(g, "do_sample"), *temp = json_object_get(g, "temperature");
        if ((ds && json_is_true(ds)) || (temp && json_number_value(temp) > 0))
            return task_key_err(t, "generation_kwargs", err, "sampling is not supported: ggeval decodes greedily "
                                                             "(do_sample: false, temperature: 0)");
    }
    if (until && json_is_string(until)) {
        t->until = calloc(1, sizeof *t->until);
        t->until[t->n_until++] = strdup(json_string_value(until));
    } else if (until && json_is_array(until)) {
        t->until = calloc(json_array_size(until) + 1, sizeof *t->until);
        size_t i;
        json_t *x;
        json_array_foreach(until, i, x) {
            if (!json_is_string(x)) return task_key_err(t, "generation_kwargs", err, "until: expected strings");
            t->until[t->n_until++] = strdup(json_string_value(x));
        }
    } else if (until && !json_is_null(until)) {
        return task_key_err(t, "generation_kwargs", err, "until: expected a string or a list of strings");
    } else {
        t->until = calloc(1, sizeof *t->until); /* lm-eval's default: the few-shot delimiter */
        t->until[t->n_until++] = strdup(t->fewshot_delim);
    }
    return 0;
}

int gg_task_parse(gg_task **out, const char *buf, size_t len, const char *label, gg_err *err) {
    *out = NULL;
    gg_task *t = calloc(1, sizeof *t);
    if (!t) return gg_errf(err, "out of memory");
    t->label = strdup(label);
    const char *slash = strrchr(label, '/');
    t->dir = slash ? strndup(label, (size_t)(slash - label)) : strdup(".");
    if (gg_task_yaml_parse(&t->cfg, &t->lines, buf, len, label, err)) goto fail;
    if (!json_is_object(t->cfg)) {
        gg_errf(err, "%s:1: a task file is a mapping", label);
        goto fail;
    }
    const char *k;
    json_t *v;
    json_object_foreach(t->cfg, k, v) {
        int ok = 0;
        for (int i = 0; KNOWN_KEYS[i]; i++) ok |= strcmp(KNOWN_KEYS[i], k) == 0;
        if (!ok) {
            task_key_err(t, k, err, "unknown key '%s' (see docs/EVAL.md)", k);
            goto fail;
        }
    }
    static const char *const unsupported[] = {"include", "process_docs", "process_results", "fewshot_config",
                                              "dataset_kwargs", NULL};
    for (int i = 0; unsupported[i]; i++)
        if (json_object_get(t->cfg, unsupported[i]) && !json_is_null(json_object_get(t->cfg, unsupported[i]))) {
            task_key_err(t, unsupported[i], err, "%s is not supported (Python functions and includes are lm-eval's; "
                                                 "preprocess the JSONL instead)", unsupported[i]);
            goto fail;
        }
    char *name = NULL;
    if (get_str(t, "task", &name, NULL, err)) goto fail;
    if (!name) {
        /* default: the file name without its extension */
        const char *b = slash ? slash + 1 : label;
        name = strdup(b);
        char *dot = strrchr(name, '.');
        if (dot && dot != name) *dot = 0;
    }
    snprintf(t->name, sizeof t->name, "%s", name);
    free(name);
    char *ot = NULL;
    if (get_str(t, "output_type", &ot, "multiple_choice", err)) goto fail;
    if (strcmp(ot, "multiple_choice") == 0) t->type = GG_TASK_MULTIPLE_CHOICE;
    else if (strcmp(ot, "generate_until") == 0) t->type = GG_TASK_GENERATE_UNTIL;
    else if (strcmp(ot, "loglikelihood") == 0) t->type = GG_TASK_LOGLIKELIHOOD;
    else if (strcmp(ot, "loglikelihood_rolling") == 0) t->type = GG_TASK_ROLLING;
    else {
        task_key_err(t, "output_type", err, "output_type '%s': expected multiple_choice, generate_until, "
                                            "loglikelihood or loglikelihood_rolling", ot);
        free(ot);
        goto fail;
    }
    free(ot);
    long nf, rep;
    if (get_str(t, "dataset_path", &t->dataset_path, ".", err) || get_str(t, "test_split", &t->test_split, NULL, err) ||
        get_str(t, "validation_split", &t->validation_split, NULL, err) ||
        get_str(t, "training_split", &t->training_split, NULL, err) ||
        get_str(t, "fewshot_split", &t->fewshot_split, NULL, err) ||
        get_str(t, "target_delimiter", &t->target_delim, " ", err) ||
        get_str(t, "fewshot_delimiter", &t->fewshot_delim, "\n\n", err) ||
        get_int(t, "num_fewshot", &nf, 0, 0, 1000, err) || get_int(t, "repeats", &rep, 1, 1, 1, err) ||
        get_tmpl(t, "doc_to_text", &t->doc_to_text, err) || get_tmpl(t, "doc_to_target", &t->doc_to_target, err) ||
        get_tmpl(t, "doc_to_choice", &t->doc_to_choice, err) || get_tmpl(t, "doc_to_labels", &t->doc_to_labels, err) ||
        get_tmpl(t, "description", &t->description, err))
        goto fail;
    t->num_fewshot = (int)nf;
    t->multiple_input = get_bool(json_object_get(t->cfg, "multiple_input"), 0);
    if (!t->test_split) t->test_split = dup_str(t->validation_split);
    if (!t->test_split) {
        task_key_err(t, "task", err, "no test_split (or validation_split): which documents to evaluate?");
        goto fail;
    }
    if (!t->fewshot_split)
        t->fewshot_split = dup_str(t->training_split ? t->training_split
                                                     : t->validation_split ? t->validation_split : t->test_split);
    if (t->type != GG_TASK_ROLLING && !t->doc_to_text && !t->multiple_input) {
        task_key_err(t, "task", err, "doc_to_text is required for output_type %s",
                     t->type == GG_TASK_MULTIPLE_CHOICE ? "multiple_choice"
                     : t->type == GG_TASK_GENERATE_UNTIL ? "generate_until" : "loglikelihood");
        goto fail;
    }
    if (!t->doc_to_target) {
        task_key_err(t, "task", err, "doc_to_target is required");
        goto fail;
    }
    if (t->type == GG_TASK_MULTIPLE_CHOICE && !t->doc_to_choice) {
        task_key_err(t, "output_type", err, "multiple_choice needs doc_to_choice");
        goto fail;
    }
    if (t->multiple_input && (t->type != GG_TASK_MULTIPLE_CHOICE || !t->doc_to_text)) {
        task_key_err(t, "multiple_input", err, "multiple_input needs output_type multiple_choice and doc_to_text "
                                               "giving the gold index");
        goto fail;
    }
    if (read_metrics(t, err) || read_filters(t, err)) goto fail;
    if (t->metrics & TMB(TM_MC2) && !t->doc_to_labels) t->doc_to_labels = json_string("{{mc2_targets.labels}}");
    if (t->type == GG_TASK_GENERATE_UNTIL && read_gen(t, err)) goto fail;
    if (t->type != GG_TASK_GENERATE_UNTIL && json_object_get(t->cfg, "filter_list") &&
        !json_is_null(json_object_get(t->cfg, "filter_list"))) {
        task_key_err(t, "filter_list", err, "filter_list applies to generate_until tasks only");
        goto fail;
    }
    *out = t;
    return 0;
fail:
    gg_task_free(t);
    return -1;
}

int gg_task_load(gg_task **out, const char *path, gg_err *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return gg_errf(err, "%s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) break;
        size_t k = fread(b + n, 1, cap - n, f);
        n += k;
        if (n > (4u << 20)) {
            fclose(f);
            free(b);
            return gg_errf(err, "%s: larger than 4 MiB; not a task file", path);
        }
        if (k == 0) break;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!b) return gg_errf(err, "out of memory");
    if (bad) {
        free(b);
        return gg_errf(err, "%s: read error", path);
    }
    int rc = gg_task_parse(out, b, n, path, err);
    free(b);
    return rc;
}

static void free_docs(task_docs *d) {
    json_decref(d->docs);
    free(d->lines);
    free(d->path);
    memset(d, 0, sizeof *d);
}

void gg_task_free(gg_task *t) {
    if (!t) return;
    json_decref(t->cfg);
    json_decref(t->lines);
    json_decref(t->doc_to_text);
    json_decref(t->doc_to_target);
    json_decref(t->doc_to_choice);
    json_decref(t->doc_to_labels);
    json_decref(t->description);
    free(t->label);
    free(t->dir);
    free(t->dataset_path);
    free(t->test_split);
    free(t->validation_split);
    free(t->training_split);
    free(t->fewshot_split);
    free(t->target_delim);
    free(t->fewshot_delim);
    for (size_t i = 0; i < t->n_until; i++) free(t->until[i]);
    free(t->until);
    for (int i = 0; i < t->n_ignore; i++) pcre2_code_free(t->ignore[i]);
    for (int i = 0; i < t->nfs; i++)
        for (int j = 0; j < t->fs[i].nsteps; j++) {
            pcre2_code_free(t->fs[i].steps[j].re);
            free(t->fs[i].steps[j].fallback);
        }
    free_docs(&t->test);
    free_docs(&t->fewshot);
    free(t);
}

const char *gg_task_name(const gg_task *t) { return t->name; }
gg_task_type gg_task_type_of(const gg_task *t) { return t->type; }
int gg_task_default_fewshot(const gg_task *t) { return t->num_fewshot; }
size_t gg_task_ndocs(const gg_task *t) { return t->test.docs ? json_array_size(t->test.docs) : 0; }

static int read_jsonl(task_docs *d, const char *path, gg_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return gg_errf(err, "%s: %s", path, strerror(errno));
    d->path = strdup(path);
    d->docs = json_array();
    size_t cap = 0, lcap = 0;
    char *line = NULL;
    ssize_t n;
    int no = 0, rc = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        no++;
        size_t a = 0;
        while (a < (size_t)n && isspace((unsigned char)line[a])) a++;
        if (a == (size_t)n) continue;
        json_error_t je;
        json_t *v = json_loadb(line, (size_t)n, 0, &je);
        if (!v || !json_is_object(v)) {
            rc = gg_errf(err, "%s:%d: %s", path, no, v ? "a document must be a JSON object" : je.text);
            json_decref(v);
            break;
        }
        if (json_array_size(d->docs) == lcap) {
            lcap = lcap ? lcap * 2 : 256;
            int *nl = realloc(d->lines, lcap * sizeof *nl);
            if (!nl) {
                json_decref(v);
                rc = gg_errf(err, "out of memory");
                break;
            }
            d->lines = nl;
        }
        d->lines[json_array_size(d->docs)] = no;
        json_array_append_new(d->docs, v);
    }
    free(line);
    if (!rc && ferror(f)) rc = gg_errf(err, "%s: read error", path);
    fclose(f);
    return rc;
}

int gg_task_load_docs(gg_task *t, const char *data_dir, gg_err *err) {
    free_docs(&t->test);
    free_docs(&t->fewshot);
    char base[4096], path[8192];
    if (t->dataset_path[0] == '/') snprintf(base, sizeof base, "%s", t->dataset_path);
    else snprintf(base, sizeof base, "%s/%s", data_dir ? data_dir : t->dir, t->dataset_path);
    snprintf(path, sizeof path, "%s/%s.jsonl", base, t->test_split);
    if (read_jsonl(&t->test, path, err)) return gg_err_prefix(err, "task %s", t->name);
    if (!json_array_size(t->test.docs)) return gg_errf(err, "task %s: %s: no documents", t->name, path);
    if (strcmp(t->fewshot_split, t->test_split) != 0) {
        snprintf(path, sizeof path, "%s/%s.jsonl", base, t->fewshot_split);
        if (access(path, R_OK) == 0 && read_jsonl(&t->fewshot, path, err)) return gg_err_prefix(err, "task %s", t->name);
    }
    return 0;
}

/* ---- templates ---- */

/* A dotted path "a.b[0].c" looked up in doc (borrowed), or NULL. */
static json_t *lookup_path(json_t *doc, const char *s, size_t n) {
    json_t *cur = doc;
    size_t i = 0;
    while (i < n && cur) {
        if (s[i] == '[') {
            size_t j = i + 1;
            long idx = 0;
            if (j >= n || !isdigit((unsigned char)s[j])) return NULL;
            while (j < n && isdigit((unsigned char)s[j])) idx = idx * 10 + (s[j++] - '0');
            if (j >= n || s[j] != ']') return NULL;
            cur = json_is_array(cur) ? json_array_get(cur, (size_t)idx) : NULL;
            i = j + 1;
        } else {
            if (s[i] == '.') i++;
            size_t j = i;
            while (j < n && (isalnum((unsigned char)s[j]) || s[j] == '_')) j++;
            if (j == i) return NULL;
            char key[128];
            if (j - i >= sizeof key) return NULL;
            memcpy(key, s + i, j - i);
            key[j - i] = 0;
            cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
            i = j;
        }
    }
    return cur;
}

json_t *task_resolve(const gg_task *t, json_t *tv, json_t *doc, const char *what, size_t doc_i, gg_err *err) {
    if (!json_is_string(tv)) return json_incref(tv);
    const char *s = json_string_value(tv);
    json_t *direct = json_object_get(doc, s);
    if (direct) return json_incref(direct);
    size_t n = strlen(s);
    if (n > 4 && s[0] == '{' && s[1] == '{' && s[n - 1] == '}' && s[n - 2] == '}') {
        size_t a = 2, b = n - 2;
        while (a < b && s[a] == ' ') a++;
        while (b > a && s[b - 1] == ' ') b--;
        int simple = a < b && (isalpha((unsigned char)s[a]) || s[a] == '_');
        for (size_t k = a; k < b && simple; k++)
            simple = isalnum((unsigned char)s[k]) || s[k] == '_' || s[k] == '.' || s[k] == '[' || s[k] == ']';
        json_t *hit = simple ? lookup_path(doc, s + a, b - a) : NULL;
        if (hit) return json_incref(hit);
    }
    char *o;
    size_t olen;
    if (gg_jinja_render(s, doc, &o, &olen, err)) {
        one_line(err->msg);
        gg_err_prefix(err, "%s:%d: %s", t->test.path && doc_i < json_array_size(t->test.docs) ? t->test.path : t->label,
                      t->test.lines && doc_i < json_array_size(t->test.docs) ? t->test.lines[doc_i] : 1, what);
        return NULL;
    }
    /* lm-eval renders with keep_trailing_newline=True */
    if (n && s[n - 1] == '\n') { /* jinja dropped the template's final newline */
        char *o2 = realloc(o, olen + 2);
        if (!o2) {
            free(o);
            gg_errf(err, "out of memory");
            return NULL;
        }
        o = o2;
        o[olen++] = '\n';
        o[olen] = 0;
    }
    json_t *v = json_stringn(o, olen);
    free(o);
    if (!v) gg_errf(err, "%s: %s rendered invalid UTF-8", t->label, what);
    return v;
}

/* doc_to_choice as a list of strings (new reference). */
json_t *task_choices(const gg_task *t, json_t *doc, size_t doc_i, gg_err *err) {
    json_t *v = task_resolve(t, t->doc_to_choice, doc, "doc_to_choice", doc_i, err);
    if (!v) return NULL;
    if (json_is_string(v)) {
        json_error_t je;
        json_t *l = json_loads(json_string_value(v), 0, &je);
        if (!l) { /* a Python list literal with single quotes: swap the quotes */
            char *s = strdup(json_string_value(v));
            for (char *p = s; *p; p++)
                if (*p == '\'') *p = '"';
            l = json_loads(s, 0, &je);
            free(s);
        }
        json_decref(v);
        v = l;
    } else if (json_is_object(v)) {
        json_t *l = json_array();
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) json_array_append(l, x);
        json_decref(v);
        v = l;
    }
    if (!json_is_array(v) || !json_array_size(v)) {
        json_decref(v);
        gg_errf(err, "%s:%d: doc_to_choice did not give a non-empty list", t->test.path ? t->test.path : t->label,
                t->test.lines ? t->test.lines[doc_i] : 1);
        return NULL;
    }
    /* a fresh list of strings (v may be the document's own array) */
    json_t *out = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if (json_is_string(x)) {
            json_array_append(out, x);
            continue;
        }
        char *d = json_dumps(x, JSON_ENCODE_ANY);
        json_array_append_new(out, json_string(d ? d : ""));
        free(d);
    }
    json_decref(v);
    return out;
}

/* A resolved value as text (malloc'd). */
char *task_text(json_t *v) {
    if (json_is_string(v)) return strdup(json_string_value(v));
    if (json_is_null(v) || !v) return strdup("");
    return json_dumps(v, JSON_ENCODE_ANY);
}

/* The gold index of a string or number against the choices, or -1. */
int task_index_of(json_t *v, json_t *choices) {
    if (json_is_integer(v)) return (int)json_integer_value(v);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = strlen(s), d = 0;
        while (d < n && isdigit((unsigned char)s[d])) d++;
        if (n && d == n && n < 9) return atoi(s);
        size_t i;
        json_t *x;
        json_array_foreach(choices, i, x) if (strcmp(json_string_value(x), s) == 0) return (int)i;
    }
    return -1;
}

/* Text of doc: for multiple_input the choice at the gold index. */
static int example_parts(const gg_task *t, json_t *doc, size_t di, char **text, char **target, gg_err *err) {
    *text = *target = NULL;
    json_t *choices = NULL;
    if (t->doc_to_choice && !(choices = task_choices(t, doc, di, err))) return -1;
    json_t *tx = t->doc_to_text ? task_resolve(t, t->doc_to_text, doc, "doc_to_text", di, err) : json_string("");
    json_t *tg = tx ? task_resolve(t, t->doc_to_target, doc, "doc_to_target", di, err) : NULL;
    if (!tx || !tg) {
        json_decref(tx);
        json_decref(choices);
        return -1;
    }
    if (t->multiple_input) {
        int gi = task_index_of(tx, choices);
        *text = task_text(gi >= 0 && (size_t)gi < json_array_size(choices) ? json_array_get(choices, (size_t)gi) : tx);
    } else if (json_is_integer(tx) && choices && (size_t)json_integer_value(tx) < json_array_size(choices)) {
        *text = task_text(json_array_get(choices, (size_t)json_integer_value(tx)));
    } else {
        *text = task_text(tx);
    }
    json_t *g = json_is_array(tg) ? json_array_get(tg, 0) : tg;
    int idx = -1;
    if (choices && !t->multiple_input) {
        if (json_is_integer(g)) idx = (int)json_integer_value(g);
        else if (json_is_string(g) && json_string_value(g)[0] &&
                 strspn(json_string_value(g), "0123456789") == strlen(json_string_value(g)))
            idx = task_index_of(g, choices);
    }
    *target = task_text(idx >= 0 && (size_t)idx < json_array_size(choices) ? json_array_get(choices, (size_t)idx) : g);
    json_decref(tx);
    json_decref(tg);
    json_decref(choices);
    return 0;
}

/* splitmix64 */
static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int gg_task_context(gg_task *t, size_t i, int num_fewshot, uint64_t seed, char **out, gg_err *err) {
    *out = NULL;
    json_t *doc = json_array_get(t->test.docs, i);
    if (!doc) return gg_errf(err, "task %s: no document %zu", t->name, i);
    size_t cap = 1024, len = 0;
    char *b = malloc(cap);
#define APPEND(s)                                                        \
    do {                                                                 \
        size_t n_ = strlen(s);                                           \
        if (len + n_ + 1 > cap) {                                        \
            while (len + n_ + 1 > cap) cap *= 2;                         \
            char *nb_ = realloc(b, cap);                                 \
            if (!nb_) goto oom;                                          \
            b = nb_;                                                     \
        }                                                                \
        memcpy(b + len, s, n_);                                          \
        len += n_;                                                       \
    } while (0)
    if (!b) return gg_errf(err, "out of memory");
    b[0] = 0;
    if (t->description) {
        json_t *d = task_resolve(t, t->description, doc, "description", i, err);
        if (!d) goto fail;
        char *ds = task_text(d);
        json_decref(d);
        APPEND(ds);
        free(ds);
    }
    if (num_fewshot > 0) {
        int same = t->fewshot.docs == NULL;
        json_t *pool = same ? t->test.docs : t->fewshot.docs;
        size_t N = json_array_size(pool), want = (size_t)num_fewshot + (same ? 1 : 0);
        if (want > N) want = N;
        /* Floyd's sample of `want` distinct indices, then the doc itself dropped */
        size_t *pick = malloc((want + 1) * sizeof *pick), np = 0;
        if (!pick) goto oom;
        uint64_t st = seed * 0x9E3779B97F4A7C15ull ^ (uint64_t)i;
        for (size_t j = N - want; j < N; j++) {
            size_t r = (size_t)(mix(&st) % (j + 1)), dup = 0;
            for (size_t q = 0; q < np; q++) dup |= pick[q] == r;
            pick[np++] = dup ? j : r;
        }
        /* a deterministic order: shuffle the picks */
        for (size_t j = np; j > 1; j--) {
            size_t r = (size_t)(mix(&st) % j), tmp = pick[j - 1];
            pick[j - 1] = pick[r];
            pick[r] = tmp;
        }
        int used = 0;
        for (size_t j = 0; j < np && used < num_fewshot; j++) {
            json_t *ex = json_array_get(pool, pick[j]);
            if (same ? pick[j] == i : json_equal(ex, doc)) continue;
            char *tx, *tg;
            if (example_parts(t, ex, same ? pick[j] : i, &tx, &tg, err)) {
                free(pick);
                goto fail;
            }
            APPEND(tx);
            if (tg[0]) {
                APPEND(t->target_delim);
                APPEND(tg);
                APPEND(t->fewshot_delim);
            }
            free(tx);
            free(tg);
            used++;
        }
        free(pick);
    }
    if (!t->multiple_input && t->doc_to_text) {
        json_t *tx = task_resolve(t, t->doc_to_text, doc, "doc_to_text", i, err);
        if (!tx) goto fail;
        char *s;
        if (json_is_integer(tx) && t->doc_to_choice) {
            json_t *ch = task_choices(t, doc, i, err);
            if (!ch) {
                json_decref(tx);
                goto fail;
            }
            json_t *c = json_array_get(ch, (size_t)json_integer_value(tx));
            s = task_text(c ? c : tx);
            json_decref(ch);
        } else {
            s = task_text(tx);
        }
        json_decref(tx);
        APPEND(s);
        free(s);
    }
    b[len] = 0;
    *out = b;
    return 0;
#undef APPEND
oom:
    gg_errf(err, "out of memory");
fail:
    free(b);
    return -1;
}

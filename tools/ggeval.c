/* ggeval — evaluate a .gg model (optionally with LoRA adapters): rolling
 * perplexity of a text (`ggeval ppl`, with KL against a base) and
 * lm-evaluation-harness-style tasks (`ggeval harness`).
 *
 *   ggeval ppl -m MODEL.gg [-a ADAPTER[:S]]... -f TEXT|- [--ctx N] [--stride S]
 *              [--batch B] [--kl-base BASE.gg] [--json]
 *   ggeval harness -m MODEL.gg [-a ADAPTER[:S]]... --tasks T1,T2|DIR
 *              [--num-fewshot K] [--limit N] [--output results.json]
 *              [--log-samples FILE] [--compare BASE_RESULTS.json] ...
 *   ggeval compare BASE_RESULTS.json RESULTS.json
 *
 * Flags and printing only: scoring is models/eval.c, tasks models/task.c. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "models/eval.h"
#include "models/task.h"
#include "models/tokenizer.h"
#include "tools/common.h"
#include "tools/engine.h"

static const char *TOOL = "ggeval";
#define MAX_ADAPTERS 16
#define MAX_TASKS 256

static void usage(FILE *f) {
    fprintf(f,
            "usage: ggeval ppl -m MODEL.gg -f TEXT|- [options]\n"
            "       ggeval harness -m MODEL.gg --tasks T1,T2|DIR [options]\n"
            "       ggeval compare BASE_RESULTS.json RESULTS.json\n"
            "Evaluate a model: rolling-window perplexity of a text (ppl), or\n"
            "lm-evaluation-harness-style tasks (harness). docs/EVAL.md has the details.\n"
            "\n"
            "Common:\n"
            "  -m, --model FILE        the .gg model\n"
            "  -a, --adapter A[:S]     LoRA adapter (.gg file or PEFT folder) with scale S\n"
            "                          (default 1); repeat for several\n"
            "      --ctx N             window / context length in tokens (default: the\n"
            "                          model's context, at most 4096)\n"
            "      --batch B           tokens per forward step (default 512)\n"
            "  -t, --threads N         CPU threads (default: number of cores)\n"
            "      --device D          cpu (default) or cuda\n"
            "      --int8-matmul       matmuls of many tokens on q8/nf4 weights with 8-bit\n"
            "                          activations (faster; scores move by the rounding)\n"
            "  -q, --quiet             no progress on stderr\n"
            "  -h, --help              this help\n"
            "      --version           print the version\n"
            "\n"
            "ppl:\n"
            "  -f, --file FILE         the text (- = stdin), encoded without special tokens\n"
            "      --stride S          tokens scored per window after the first (default:\n"
            "                          --ctx, lm-eval's disjoint loglikelihood_rolling)\n"
            "      --kl-base BASE.gg   also KL(base || model) and top-1 agreement per token\n"
            "      --json              print one JSON object instead of the table\n"
            "\n"
            "harness:\n"
            "      --tasks LIST        comma-separated task files, folders of them, or names\n"
            "                          of tasks in --task-dir / the shipped tools/tasks\n"
            "      --task-dir DIR      where to look up task names (before tools/tasks)\n"
            "      --data-dir DIR      base of each task's dataset_path (default: the task\n"
            "                          file's folder)\n"
            "      --num-fewshot K     few-shot examples (default: each task's num_fewshot)\n"
            "      --seed S            few-shot draw seed (default 1234)\n"
            "      --limit N           evaluate the first N documents of each task (default: all)\n"
            "      --output FILE       write results JSON (config, fingerprint, metrics)\n"
            "      --log-samples FILE  write one JSON line per document (prompt, scores)\n"
            "      --compare FILE      print deltas against an earlier results JSON\n"
            "      --bootstrap-iters N resamples for bootstrap standard errors (default 1000)\n"
            "      --add-bos           encode contexts with BOS (lm-eval add_bos_token=True)\n"
            "      --no-reuse          no KV prefix reuse between requests (for timing)\n");
}

/* ---- shared setup ---- */

typedef struct engine {
    gg_file *f;
    gg_backend *be;
    gg_model *m;
    gg_tokenizer *tok;
    gg_lora *loras[MAX_ADAPTERS];
    float scales[MAX_ADAPTERS];
    int nad;
} engine;

static void engine_open(engine *en, const char *path, gg_backend *be, const char *const *adapters, int nad,
                        int need_tok) {
    gg_err err;
    memset(en, 0, sizeof *en);
    en->be = be;
    if (gg_file_open(&en->f, path, 0, &err)) gg_die(TOOL, "%s", err.msg);
    if (gg_model_load(&en->m, en->f, be, &err)) gg_die(TOOL, "%s", err.msg);
    if (need_tok) {
        if (!gg_meta_find(en->f, "tokenizer.json")) gg_die(TOOL, "%s has no tokenizer", path);
        if (gg_tokenizer_load_gg(&en->tok, en->f, &err)) gg_die(TOOL, "%s", err.msg);
    }
    for (int i = 0; i < nad; i++) {
        char *p;
        if (gg_tool_adapter_arg(adapters[i], &p, &en->scales[i], &err) ||
            gg_tool_load_adapter(&en->loras[i], en->m, en->f, p, &err))
            gg_die(TOOL, "%s", err.msg);
        free(p);
        en->nad++;
    }
}

static void engine_close(engine *en) {
    for (int i = 0; i < en->nad; i++) gg_lora_free(en->loras[i]);
    gg_tokenizer_free(en->tok);
    gg_model_free(en->m);
    gg_file_close(en->f);
}

static gg_eval *engine_eval(engine *en, int64_t ctx, int64_t batch) {
    gg_err err;
    gg_eval *e;
    if (gg_eval_new(&e, en->m, ctx, batch, &err)) gg_die(TOOL, "%s", err.msg);
    if (en->nad && gg_session_set_adapters(gg_eval_session(e), en->loras, en->scales, (size_t)en->nad, &err))
        gg_die(TOOL, "%s", err.msg);
    return e;
}

static int32_t prefix_token(const engine *en) {
    const gg_model_config *c = gg_model_cfg(en->m);
    int32_t b = en->tok ? gg_tokenizer_bos_id(en->tok) : -1;
    if (b < 0) b = (int32_t)c->bos_id;
    if (b < 0 && en->tok) b = gg_tokenizer_eos_id(en->tok);
    if (b < 0) b = (int32_t)c->eos_id;
    return b < 0 ? 0 : b;
}

typedef struct prog {
    int on;
    const char *what;
    double last;
} prog;

static void progress(void *u, size_t done, size_t total) {
    prog *p = u;
    if (!p->on) return;
    double now = gg_now();
    if (done < total && now - p->last < 0.2) return;
    p->last = now;
    fprintf(stderr, "\r%s: %s %zu/%zu%s", TOOL, p->what, done, total, done == total ? "\033[K\r" : "");
    fflush(stderr);
}

/* ---- options ---- */

typedef struct opts {
    const char *model, *device, *file, *kl_base, *tasks, *task_dir, *data_dir, *output, *log_samples, *compare;
    const char *adapters[MAX_ADAPTERS];
    int nad, json, quiet, add_bos, no_reuse, int8;
    long ctx, stride, batch, threads, num_fewshot, limit, boot;
    unsigned long long seed;
} opts;

static long parse_long(const char *opt, const char *s, long lo, long hi) {
    long v;
    if (gg_parse_int(s, lo, hi, &v)) gg_die(TOOL, "%s: '%s' is not a number from %ld to %ld", opt, s, lo, hi);
    return v;
}

static void parse(int argc, char **argv, opts *o) {
    enum { O_CTX = 256, O_STRIDE, O_BATCH, O_KL, O_JSON, O_TASKS, O_TASKDIR, O_DATADIR, O_FEW, O_SEED, O_LIMIT,
           O_OUTPUT, O_LOG, O_COMPARE, O_BOOT, O_BOS, O_NOREUSE, O_DEVICE, O_VERSION, O_INT8 };
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},     {"adapter", required_argument, 0, 'a'},
        {"file", required_argument, 0, 'f'},      {"ctx", required_argument, 0, O_CTX},
        {"stride", required_argument, 0, O_STRIDE}, {"batch", required_argument, 0, O_BATCH},
        {"kl-base", required_argument, 0, O_KL},  {"json", no_argument, 0, O_JSON},
        {"tasks", required_argument, 0, O_TASKS}, {"task-dir", required_argument, 0, O_TASKDIR},
        {"data-dir", required_argument, 0, O_DATADIR}, {"num-fewshot", required_argument, 0, O_FEW},
        {"seed", required_argument, 0, O_SEED},   {"limit", required_argument, 0, O_LIMIT},
        {"output", required_argument, 0, O_OUTPUT}, {"log-samples", required_argument, 0, O_LOG},
        {"compare", required_argument, 0, O_COMPARE}, {"bootstrap-iters", required_argument, 0, O_BOOT},
        {"add-bos", no_argument, 0, O_BOS},       {"no-reuse", no_argument, 0, O_NOREUSE},
        {"threads", required_argument, 0, 't'},   {"device", required_argument, 0, O_DEVICE},
        {"quiet", no_argument, 0, 'q'},           {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, O_VERSION},   {"int8-matmul", no_argument, 0, O_INT8},
        {0, 0, 0, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:a:f:t:qh", lo, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'a':
            if (o->nad == MAX_ADAPTERS) gg_die(TOOL, "at most %d adapters", MAX_ADAPTERS);
            o->adapters[o->nad++] = optarg;
            break;
        case 'f': o->file = optarg; break;
        case O_CTX: o->ctx = parse_long("--ctx", optarg, 2, 1L << 20); break;
        case O_STRIDE: o->stride = parse_long("--stride", optarg, 1, 1L << 20); break;
        case O_BATCH: o->batch = parse_long("--batch", optarg, 1, 65536); break;
        case O_KL: o->kl_base = optarg; break;
        case O_JSON: o->json = 1; break;
        case O_TASKS: o->tasks = optarg; break;
        case O_TASKDIR: o->task_dir = optarg; break;
        case O_DATADIR: o->data_dir = optarg; break;
        case O_FEW: o->num_fewshot = parse_long("--num-fewshot", optarg, 0, 1000); break;
        case O_SEED: {
            char *end;
            errno = 0;
            o->seed = strtoull(optarg, &end, 10);
            if (!*optarg || *end || errno) gg_die(TOOL, "--seed: '%s' is not a number", optarg);
            break;
        }
        case O_LIMIT: o->limit = parse_long("--limit", optarg, 1, LONG_MAX / 2); break;
        case O_OUTPUT: o->output = optarg; break;
        case O_LOG: o->log_samples = optarg; break;
        case O_COMPARE: o->compare = optarg; break;
        case O_BOOT: o->boot = parse_long("--bootstrap-iters", optarg, 0, 1000000); break;
        case O_BOS: o->add_bos = 1; break;
        case O_NOREUSE: o->no_reuse = 1; break;
        case O_INT8: o->int8 = 1; break;
        case 't': o->threads = parse_long("--threads", optarg, 1, 1024); break;
        case O_DEVICE: o->device = optarg; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); exit(0);
        case O_VERSION: printf("ggeval %s\n", GG_VERSION_STRING); exit(0);
        case ':': gg_die(TOOL, "%s needs an argument (see ggeval --help)", argv[optind - 1]);
        default: gg_die(TOOL, "unknown option '%s' (see ggeval --help)", argv[optind - 1]);
        }
    }
    if (optind < argc) gg_die(TOOL, "unexpected argument '%s'", argv[optind]);
}

static int64_t pick_ctx(const opts *o, const gg_model *m) {
    int64_t mc = gg_model_cfg(m)->context_length;
    if (o->ctx) {
        if (o->ctx > mc) gg_die(TOOL, "--ctx %ld is larger than the model's context (%lld)", o->ctx, (long long)mc);
        return o->ctx;
    }
    return mc < 4096 ? mc : 4096;
}

/* ---- ppl ---- */

static int cmd_ppl(const opts *o) {
    if (!o->model) gg_die(TOOL, "ppl: missing -m MODEL.gg");
    if (!o->file) gg_die(TOOL, "ppl: missing -f TEXT_FILE (or -f - for stdin)");
    if (o->tasks || o->output || o->log_samples || o->compare) gg_die(TOOL, "ppl: --tasks, --output, --log-samples and --compare are harness options");
    size_t len;
    char *text;
    if (strcmp(o->file, "-") == 0) text = gg_read_stream(stdin, &len);
    else {
        FILE *f = fopen(o->file, "rb");
        if (!f) gg_die(TOOL, "%s: %s", o->file, strerror(errno));
        text = gg_read_stream(f, &len);
        fclose(f);
    }
    if (!text) gg_die(TOOL, "%s: %s", strcmp(o->file, "-") ? o->file : "stdin", strerror(errno));
    gg_err err;
    gg_backend *be = gg_tool_backend(o->device, (int)o->threads, &err);
    if (!be) gg_die(TOOL, "%s", err.msg);
    be->int8_matmul = o->int8;
    engine en, base;
    engine_open(&en, o->model, be, o->adapters, o->nad, 1);
    int64_t ctx = pick_ctx(o, en.m);
    long stride = o->stride ? o->stride : ctx;
    if (stride > ctx) gg_die(TOOL, "--stride %ld is larger than --ctx %lld", stride, (long long)ctx);
    int32_t *ids;
    size_t n;
    if (gg_tokenizer_encode(en.tok, text, len, 0, &ids, &n, &err)) gg_die(TOOL, "%s", err.msg);
    if (n == 0) gg_die(TOOL, "%s: no tokens to score", o->file);
    gg_eval *e = engine_eval(&en, ctx, o->batch ? o->batch : 512);
    prog p = {.on = !o->quiet && isatty(2), .what = "windows"};
    double t0 = gg_now(), lp;
    size_t nw;
    gg_kl_stats kl = {0};
    if (o->kl_base) {
        engine_open(&base, o->kl_base, be, NULL, 0, 0);
        gg_eval *eb = engine_eval(&base, ctx, o->batch ? o->batch : 512);
        if (gg_eval_kl(e, eb, ids, n, prefix_token(&en), (size_t)ctx, (size_t)stride, &kl, progress, &p, &err))
            gg_die(TOOL, "%s", err.msg);
        lp = -kl.nll_model;
        nw = gg_eval_rolling_windows(n, (size_t)ctx, (size_t)stride, NULL);
        gg_eval_free(eb);
        engine_close(&base);
    } else if (gg_eval_rolling(e, ids, n, prefix_token(&en), (size_t)ctx, (size_t)stride, &lp, NULL, &nw, progress,
                               &p, &err)) {
        gg_die(TOOL, "%s", err.msg);
    }
    double secs = gg_now() - t0;
    size_t words = gg_task_count_words(text, len);
    double nll = -lp;
    double tok_ppl = exp(nll / (double)n), word_ppl = exp(nll / (double)words), byte_ppl = exp(nll / (double)len),
           bpb = nll / (double)len / log(2.0);
    if (o->json) {
        printf("{\"file\": \"%s\", \"tokens\": %zu, \"words\": %zu, \"bytes\": %zu, \"windows\": %zu, \"ctx\": %lld, "
               "\"stride\": %ld, \"nll\": %.6f, \"token_perplexity\": %.6f, \"word_perplexity\": %.6f, "
               "\"byte_perplexity\": %.6f, \"bits_per_byte\": %.6f",
               o->file, n, words, len, nw, (long long)ctx, stride, nll, tok_ppl, word_ppl, byte_ppl, bpb);
        if (o->kl_base)
            printf(", \"kl_mean\": %.8f, \"kl_max\": %.8f, \"top1_agreement\": %.6f, \"base_token_perplexity\": %.6f",
                   kl.kl_sum / (double)kl.n, kl.kl_max, (double)kl.top1_agree / (double)kl.n,
                   exp(kl.nll_base / (double)kl.n));
        printf(", \"seconds\": %.3f}\n", secs);
    } else {
        printf("file              %s\n", o->file);
        printf("tokens            %zu (windows %zu, ctx %lld, stride %ld)\n", n, nw, (long long)ctx, stride);
        printf("words             %zu\n", words);
        printf("bytes             %zu\n", len);
        printf("nll               %.4f\n", nll);
        printf("token_perplexity  %.4f\n", tok_ppl);
        printf("word_perplexity   %.4f\n", word_ppl);
        printf("byte_perplexity   %.4f\n", byte_ppl);
        printf("bits_per_byte     %.4f\n", bpb);
        if (o->kl_base) {
            printf("kl_mean           %.6f (KL(base || model), nats per token)\n", kl.kl_sum / (double)kl.n);
            printf("kl_max            %.6f\n", kl.kl_max);
            printf("top1_agreement    %.4f\n", (double)kl.top1_agree / (double)kl.n);
            printf("base_perplexity   %.4f (token)\n", exp(kl.nll_base / (double)kl.n));
        }
    }
    if (!o->quiet) fprintf(stderr, "%s: %zu tokens in %.3f s (%.1f tokens/s)\n", TOOL, n, secs, (double)n / secs);
    free(ids);
    free(text);
    gg_eval_free(e);
    engine_close(&en);
    gg_backend_free(be);
    return 0;
}

/* ---- harness ---- */

static int has_ext(const char *n) {
    size_t l = strlen(n);
    return (l > 5 && strcmp(n + l - 5, ".yaml") == 0) || (l > 4 && strcmp(n + l - 4, ".yml") == 0) ||
           (l > 5 && strcmp(n + l - 5, ".json") == 0);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void add_task_file(char **paths, int *np, const char *p) {
    if (*np == MAX_TASKS) gg_die(TOOL, "at most %d tasks", MAX_TASKS);
    paths[(*np)++] = strdup(p);
}

static void add_dir(char **paths, int *np, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) gg_die(TOOL, "%s: %s", dir, strerror(errno));
    char *found[MAX_TASKS];
    int nf = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && has_ext(de->d_name) && nf < MAX_TASKS) {
            char p[PATH_MAX];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            found[nf++] = strdup(p);
        }
    closedir(d);
    if (!nf) gg_die(TOOL, "%s: no task files (*.yaml, *.yml, *.json)", dir);
    qsort(found, (size_t)nf, sizeof *found, cmp_str);
    for (int i = 0; i < nf; i++) {
        add_task_file(paths, np, found[i]);
        free(found[i]);
    }
}

static int find_named(const char *dir, const char *name, char *out, size_t len) {
    static const char *const ext[] = {".yaml", ".yml", ".json"};
    struct stat st;
    for (int i = 0; i < 3; i++) {
        snprintf(out, len, "%s/%s%s", dir, name, ext[i]);
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) return 1;
    }
    return 0;
}

static int resolve_tasks(const opts *o, char **paths) {
    int np = 0;
    char *list = strdup(o->tasks), *save = NULL;
    char shipped[PATH_MAX + 32] = "tools/tasks", exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = 0;
        char *sl = strrchr(exe, '/');
        if (sl) {
            *sl = 0;
            snprintf(shipped, sizeof shipped, "%s/../tools/tasks", exe);
        }
    }
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        struct stat st;
        char p[PATH_MAX * 2];
        if (stat(tok, &st) == 0) {
            if (S_ISDIR(st.st_mode)) add_dir(paths, &np, tok);
            else add_task_file(paths, &np, tok);
        } else if ((o->task_dir && find_named(o->task_dir, tok, p, sizeof p)) || find_named(shipped, tok, p, sizeof p) ||
                   find_named("tools/tasks", tok, p, sizeof p)) {
            add_task_file(paths, &np, p);
        } else {
            gg_die(TOOL, "--tasks: '%s' is not a task file, a folder, or a task name in %s%s%s", tok,
                   o->task_dir ? o->task_dir : "", o->task_dir ? " or " : "", shipped);
        }
    }
    free(list);
    if (!np) gg_die(TOOL, "--tasks: no tasks given");
    return np;
}

static void print_table(const gg_task_result *r, int n) {
    printf("|%-24s|%-16s|%6s|%-17s|%-3s|%10s|%-3s|%9s|\n", "Tasks", "Filter", "n-shot", "Metric", "", "Value", "",
           "Stderr");
    printf("|%.24s|%.16s|%.6s|%.17s|%.3s|%.10s|%.3s|%.9s|\n", "------------------------", "----------------",
           "-----:", "-----------------", "---", "---------:", "---", "--------:");
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < r[i].n_metrics; j++) {
            const gg_metric *m = &r[i].m[j];
            char se[32];
            if (m->has_stderr) snprintf(se, sizeof se, "%9.4f", m->stderr_);
            else snprintf(se, sizeof se, "%9s", "N/A");
            printf("|%-24s|%-16s|%6d|%-17s| %s |%10.4f| ± |%s|\n", j ? "" : r[i].name, m->filter, r[i].num_fewshot,
                   m->name, m->higher_is_better ? "↑" : "↓", m->value, se);
        }
}

static json_t *num(double v) { return v == v && !isinf(v) ? json_real(v) : json_null(); }

static json_t *results_json(const opts *o, const engine *en, const gg_task_result *r, int n, int64_t ctx,
                            const gg_eval_stats *st, double secs) {
    json_t *root = json_object(), *res = json_object(), *nshot = json_object(), *ns = json_object();
    for (int i = 0; i < n; i++) {
        json_t *t = json_object();
        json_object_set_new(t, "alias", json_string(r[i].name));
        for (size_t j = 0; j < r[i].n_metrics; j++) {
            const gg_metric *m = &r[i].m[j];
            char k[128];
            snprintf(k, sizeof k, "%s,%s", m->name, m->filter);
            json_object_set_new(t, k, num(m->value));
            snprintf(k, sizeof k, "%s_stderr,%s", m->name, m->filter);
            json_object_set_new(t, k, m->has_stderr ? num(m->stderr_) : json_string("N/A"));
            snprintf(k, sizeof k, "%s_bootstrap_stderr,%s", m->name, m->filter);
            json_object_set_new(t, k, num(m->stderr_boot));
        }
        json_object_set_new(t, "requests", json_integer((json_int_t)r[i].n_requests));
        json_object_set_new(t, "seconds", json_real(r[i].seconds));
        json_object_set_new(res, r[i].name, t);
        json_object_set_new(nshot, r[i].name, json_integer(r[i].num_fewshot));
        json_object_set_new(ns, r[i].name, json_integer((json_int_t)r[i].n_docs));
    }
    const gg_model_config *c = gg_model_cfg(en->m);
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)c->fingerprint);
    json_t *cfg = json_object(), *ads = json_array();
    for (int i = 0; i < o->nad; i++) json_array_append_new(ads, json_string(o->adapters[i]));
    json_object_set_new(cfg, "model", json_string(o->model));
    json_object_set_new(cfg, "model_fingerprint", json_string(fp));
    json_object_set_new(cfg, "model_arch", json_string(c->arch));
    json_object_set_new(cfg, "weight_type", json_string(gg_type_name(gg_model_weight_type(en->m))));
    json_object_set_new(cfg, "adapters", ads);
    json_object_set_new(cfg, "tasks", json_string(o->tasks));
    json_object_set_new(cfg, "num_fewshot", o->num_fewshot >= 0 ? json_integer(o->num_fewshot) : json_null());
    json_object_set_new(cfg, "limit", o->limit ? json_integer(o->limit) : json_null());
    json_object_set_new(cfg, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(cfg, "ctx", json_integer(ctx));
    json_object_set_new(cfg, "batch", json_integer(o->batch ? o->batch : 512));
    json_object_set_new(cfg, "device", json_string(o->device ? o->device : "cpu"));
    json_object_set_new(cfg, "add_bos", json_boolean(o->add_bos));
    json_object_set_new(cfg, "prefix_reuse", json_boolean(!o->no_reuse));
    json_object_set_new(cfg, "int8_matmul", json_boolean(o->int8));
    json_object_set_new(cfg, "bootstrap_iters", json_integer(o->boot));
    json_object_set_new(cfg, "requests", json_integer(st->requests));
    json_object_set_new(cfg, "tokens_fed", json_integer(st->tokens_fed));
    json_object_set_new(cfg, "tokens_reused", json_integer(st->tokens_reused));
    json_object_set_new(cfg, "seconds", json_real(secs));
    json_object_set_new(cfg, "gg_version", json_string(GG_VERSION_STRING));
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_object_set_new(cfg, "date", json_string(date));
    json_object_set_new(root, "results", res);
    json_object_set_new(root, "n-shot", nshot);
    json_object_set_new(root, "n-samples", ns);
    json_object_set_new(root, "config", cfg);
    return root;
}

static void write_json_file(const char *path, json_t *j) {
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (json_dump_file(j, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) gg_die(TOOL, "--output %s: cannot write", path);
    if (rename(tmp, path) != 0) gg_die(TOOL, "--output %s: %s", path, strerror(errno));
}

static json_t *load_results(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) gg_die(TOOL, "%s:%d: %s", path, je.line, je.text);
    if (!json_is_object(json_object_get(j, "results"))) gg_die(TOOL, "%s: no \"results\" object: not a results JSON", path);
    return j;
}

static double jnum(json_t *v, int *ok) {
    *ok = json_is_number(v);
    return *ok ? json_number_value(v) : NAN;
}

/* Deltas of every task,metric both results have. */
static void print_compare(const char *base_path, json_t *base, json_t *cur) {
    json_t *br = json_object_get(base, "results"), *cr = json_object_get(cur, "results");
    printf("\ncompared with %s:\n", base_path);
    printf("|%-24s|%-30s|%10s|%10s|%10s|%9s|\n", "Tasks", "Metric", "Base", "This", "Delta", "±");
    printf("|%.24s|%.30s|%.10s|%.10s|%.10s|%.9s|\n", "------------------------", "------------------------------",
           "---------:", "---------:", "---------:", "--------:");
    const char *task;
    json_t *ct;
    int shown = 0;
    json_object_foreach(cr, task, ct) {
        json_t *bt = json_object_get(br, task);
        if (!bt) continue;
        const char *key;
        json_t *cv;
        int first = 1;
        json_object_foreach(ct, key, cv) {
            if (!strchr(key, ',') || strstr(key, "_stderr,")) continue;
            int ok1, ok2;
            double a = jnum(json_object_get(bt, key), &ok1), b = jnum(cv, &ok2);
            if (!ok1 || !ok2) continue;
            const char *comma = strchr(key, ',');
            char sek[160];
            snprintf(sek, sizeof sek, "%.*s_stderr%s", (int)(comma - key), key, comma);
            int s1, s2;
            double e1 = jnum(json_object_get(bt, sek), &s1), e2 = jnum(json_object_get(ct, sek), &s2);
            char se[32] = "      N/A";
            if (s1 && s2) snprintf(se, sizeof se, "%9.4f", sqrt(e1 * e1 + e2 * e2));
            printf("|%-24s|%-30s|%10.4f|%10.4f|%+10.4f|%s|\n", first ? task : "", key, a, b, b - a, se);
            first = 0;
            shown++;
        }
    }
    if (!shown) printf("(no task and metric in common)\n");
}

static int cmd_harness(opts *o) {
    if (!o->model) gg_die(TOOL, "harness: missing -m MODEL.gg");
    if (!o->tasks) gg_die(TOOL, "harness: missing --tasks T1,T2|DIR");
    if (o->file || o->kl_base || o->stride) gg_die(TOOL, "harness: -f, --kl-base and --stride are ppl options");
    char *paths[MAX_TASKS];
    int nt = resolve_tasks(o, paths);
    gg_err err;
    gg_task *tasks[MAX_TASKS];
    for (int i = 0; i < nt; i++) {
        if (gg_task_load(&tasks[i], paths[i], &err) || gg_task_load_docs(tasks[i], o->data_dir, &err))
            gg_die(TOOL, "%s", err.msg);
        for (int j = 0; j < i; j++)
            if (strcmp(gg_task_name(tasks[j]), gg_task_name(tasks[i])) == 0)
                gg_die(TOOL, "%s: task '%s' is given twice", paths[i], gg_task_name(tasks[i]));
    }
    json_t *base = o->compare ? load_results(o->compare) : NULL;
    FILE *log = NULL;
    if (o->log_samples && !(log = fopen(o->log_samples, "w"))) gg_die(TOOL, "--log-samples %s: %s", o->log_samples, strerror(errno));
    gg_backend *be = gg_tool_backend(o->device, (int)o->threads, &err);
    if (!be) gg_die(TOOL, "%s", err.msg);
    be->int8_matmul = o->int8;
    engine en;
    engine_open(&en, o->model, be, o->adapters, o->nad, 1);
    int64_t ctx = pick_ctx(o, en.m);
    gg_eval *e = engine_eval(&en, ctx, o->batch ? o->batch : 512);
    gg_eval_set_reuse(e, !o->no_reuse);
    gg_task_result *res = calloc((size_t)nt, sizeof *res);
    double t0 = gg_now();
    for (int i = 0; i < nt; i++) {
        prog p = {.on = !o->quiet && isatty(2), .what = gg_task_name(tasks[i])};
        const gg_model_config *c = gg_model_cfg(en.m);
        gg_task_opts to = {.num_fewshot = (int)o->num_fewshot, .seed = o->seed, .limit = (size_t)o->limit,
                           .add_bos = o->add_bos, .bootstrap_iters = (int)o->boot, .log_samples = log,
                           .prefix_token = prefix_token(&en), .progress = progress, .user = &p,
                           .eos = {(int32_t)c->eos_id, gg_tokenizer_eos_id(en.tok)}};
        if (gg_task_run(tasks[i], e, en.tok, &to, &res[i], &err)) gg_die(TOOL, "%s", err.msg);
        if (!o->quiet)
            fprintf(stderr, "%s: %s: %zu documents, %zu requests, %.2f s\n", TOOL, res[i].name, res[i].n_docs,
                    res[i].n_requests, res[i].seconds);
    }
    double secs = gg_now() - t0;
    gg_eval_stats st;
    gg_eval_stats_get(e, &st);
    if (log && fclose(log) != 0) gg_die(TOOL, "--log-samples %s: %s", o->log_samples, strerror(errno));
    print_table(res, nt);
    json_t *j = results_json(o, &en, res, nt, ctx, &st, secs);
    if (o->output) write_json_file(o->output, j);
    if (base) print_compare(o->compare, base, j);
    if (!o->quiet)
        fprintf(stderr, "%s: %lld requests in %.2f s (%.1f requests/s); tokens fed %lld, reused from the cache %lld\n",
                TOOL, (long long)st.requests, secs, secs > 0 ? (double)st.requests / secs : 0.0,
                (long long)st.tokens_fed, (long long)st.tokens_reused);
    if (fflush(stdout) || ferror(stdout)) gg_die(TOOL, "writing stdout: %s", strerror(errno ? errno : EIO));
    json_decref(j);
    json_decref(base);
    for (int i = 0; i < nt; i++) {
        gg_task_free(tasks[i]);
        free(paths[i]);
    }
    free(res);
    gg_eval_free(e);
    engine_close(&en);
    gg_backend_free(be);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) gg_die(TOOL, "missing command: ppl, harness or compare (see ggeval --help)");
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("ggeval %s\n", GG_VERSION_STRING);
        return 0;
    }
    if (strcmp(cmd, "compare") == 0) {
        if (argc != 4) gg_die(TOOL, "usage: ggeval compare BASE_RESULTS.json RESULTS.json");
        json_t *a = load_results(argv[2]), *b = load_results(argv[3]);
        print_compare(argv[2], a, b);
        json_decref(a);
        json_decref(b);
        return 0;
    }
    opts o = {.device = "cpu", .num_fewshot = -1, .boot = 1000, .seed = 1234};
    if (strcmp(cmd, "ppl") != 0 && strcmp(cmd, "harness") != 0)
        gg_die(TOOL, "unknown command '%s': expected ppl, harness or compare (see ggeval --help)", cmd);
    parse(argc - 1, argv + 1, &o);
    return strcmp(cmd, "ppl") == 0 ? cmd_ppl(&o) : cmd_harness(&o);
}

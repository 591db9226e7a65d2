/* ggtrain — LoRA / QLoRA fine-tuning of a .gg base model on JSONL data.
 *
 *   ggtrain -m BASE.gg -d DATA.jsonl -o ADAPTER.gg [options]
 *   ggtrain -m BASE.gg --estimate [options]
 *   ggtrain -m BASE.gg -d DATA.jsonl --preprocess-only [--debug-data]
 *
 * Every option is a long flag with its default in --help; --config FILE
 * (YAML or JSON, convert/config.h) sets the same keys, flags override it.
 * This file parses flags and runs the loop (accumulation, schedule,
 * clipping, eval, checkpoints, logs); the math is models/train.c, the data
 * models/data.c, the state file models/checkpoint.c. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/adapter.h"
#include "convert/config.h"
#include "convert/json_util.h"
#include "convert/plot.h"
#include "models/chat.h"
#include "models/checkpoint.h"
#include "models/data.h"
#include "models/tokenizer.h"
#include "models/train.h"
#include "tools/common.h"
#include "tools/dist.h"
#include "tools/engine.h"

static const char *TOOL = "ggtrain"; /* "ggtrain (rank R)" under mpirun */

/* ------------------------------------------------------------------------ */
/* Options: one table drives getopt, --config keys and --help                  */

typedef struct optdef {
    const char *name;
    int arg;          /* 0: a switch ("true" when given) */
    const char *def;  /* default as text ("" = none) */
    const char *help;
} optdef;

static const optdef OPTS[] = {
    {"model", 1, "", "the base model (.gg; f32/f16/bf16/q8/nf4 — nf4 is QLoRA)"},
    {"data", 1, "", "training data, JSONL (repeat or comma-separate for several files)"},
    {"out", 1, "", "the trained adapter (.gg)"},
    {"config", 1, "", "recipe file (YAML or JSON) with these keys; flags override it"},
    /* data */
    {"format", 1, "auto", "auto|alpaca|sharegpt|chat|completion|pretokenized"},
    {"chat-template", 1, "", "chat template for sharegpt/chat data: a built-in name or a Jinja file"},
    {"train-on-inputs", 0, "false", "train on prompt tokens too (default: responses only)"},
    {"seq-len", 1, "512", "longest sample in tokens (capped at the model's context); a longer one keeps its first N"},
    {"pack", 0, "false", "pack several samples into each seq-len row (no attention across them)"},
    {"val-split", 1, "0", "hold out this fraction (< 1) or count (>= 1) of samples for eval"},
    {"val-data", 1, "", "evaluation data (JSONL), instead of --val-split"},
    {"eval-every", 1, "0", "evaluate every N optimizer steps (0: ten times per run) and at the end"},
    {"no-shuffle", 0, "false", "keep the file order in every epoch"},
    {"skip-bad", 0, "false", "skip malformed lines (counted) instead of stopping"},
    {"preprocess-only", 0, "false", "tokenize and report the data, then exit"},
    {"debug-data", 1, "", "with --preprocess-only: print N samples token by token (T trained, M masked)"},
    /* LoRA */
    {"r", 1, "16", "LoRA rank"},
    {"alpha", 1, "32", "LoRA alpha (scale alpha/r, or alpha/sqrt(r) with --rslora)"},
    {"lora-dropout", 1, "0.05", "dropout on each LoRA module's input"},
    {"rslora", 0, "false", "rank-stabilised scaling alpha/sqrt(r)"},
    {"targets", 1, "all", "all | comma list of q,k,v,o,gate,up,down (HF names like q_proj too)"},
    {"init-adapter", 1, "", "start from this adapter (.gg or PEFT folder) instead of PEFT's init"},
    /* optimizer */
    {"optim", 1, "adamw", "adamw (f32 moments) | adamw8bit (blockwise 8-bit moments)"},
    {"lr", 1, "2e-4", "peak learning rate"},
    {"weight-decay", 1, "0", "AdamW weight decay"},
    {"adam-beta1", 1, "0.9", "AdamW beta1"},
    {"adam-beta2", 1, "0.999", "AdamW beta2"},
    {"adam-eps", 1, "1e-8", "AdamW epsilon"},
    {"schedule", 1, "cosine", "constant|linear|cosine"},
    {"warmup", 1, "0.03", "warmup steps, or a fraction of all steps when < 1"},
    {"max-grad-norm", 1, "1.0", "clip the gradient's L2 norm (0 = off)"},
    {"micro-batch", 1, "4", "samples (or packed rows) per micro-batch"},
    {"grad-accum", 1, "1", "micro-batches per optimizer step"},
    {"epochs", 1, "1", "passes over the data (ignored with --max-steps)"},
    {"max-steps", 1, "0", "stop after N optimizer steps (0: from --epochs)"},
    {"seed", 1, "42", "seed of the initialisation, data order and dropout"},
    {"grad-ckpt", 0, "false", "gradient checkpointing: recompute each block in backward"},
    /* outputs */
    {"peft-out", 1, "", "also write a PEFT folder (adapter_config.json + adapter_model.safetensors)"},
    {"save-every", 1, "0", "write a checkpoint every N steps (0 = only on Ctrl-C / SIGUSR1)"},
    {"keep", 1, "2", "checkpoints to keep"},
    {"checkpoint-dir", 1, "", "where checkpoints go (default OUT.ckpt)"},
    {"resume", 1, "", "continue from a checkpoint (its folder, or the checkpoint-dir for the latest)"},
    {"metrics", 1, "", "append one JSON object per step (and per eval) to FILE"},
    {"plot", 1, "", "write loss and learning-rate curves to FILE.svg at every eval"},
    {"dump-grads", 1, "", "write the first step's accumulated gradients (safetensors, PEFT names)"},
    {"loss-spike", 1, "0", "stop when the loss exceeds X times its running mean ..."},
    {"spike-steps", 1, "10", "... for this many steps in a row (0 disables with --loss-spike 0)"},
    {"log-every", 1, "10", "without a terminal: print a progress line every N steps"},
    {"estimate", 0, "false", "print the predicted peak memory for these settings and exit"},
    {"threads", 1, "0", "CPU threads (0 = one per core, shared among the ranks of a host under mpirun)"},
    {"dist-timeout", 1, "600", "under mpirun: abort the job when the other ranks do not answer for N seconds"},
    {"device", 1, "cpu", "cpu|cuda"},
    {"quiet", 0, "false", "no progress output"},
};
#define N_OPTS (sizeof OPTS / sizeof *OPTS)

/* Config-file aliases (Axolotl / HF names) → our names. */
static const char *const ALIASES[][2] = {
    {"base-model", "model"},          {"lora-r", "r"},
    {"lora-alpha", "alpha"},          {"learning-rate", "lr"},
    {"num-epochs", "epochs"},         {"micro-batch-size", "micro-batch"},
    {"gradient-accumulation-steps", "grad-accum"}, {"sequence-len", "seq-len"},
    {"lr-scheduler", "schedule"},     {"warmup-steps", "warmup"},
    {"gradient-checkpointing", "grad-ckpt"}, {"sample-packing", "pack"},
    {"val-set-size", "val-split"},    {"optimizer", "optim"},
    {"lora-target-modules", "targets"}, {"output", "out"},
    {"lora-out-dir", "peft-out"},     {"use-rslora", "rslora"},
    {"max-steps", "max-steps"},
};

static const char *val[N_OPTS];
static char *owned[N_OPTS];
static char where[N_OPTS][300]; /* "--lr" or "FILE:LINE (lr)" for messages */
static char **data_files;
static size_t n_data_files;

static int opt_index(const char *name) {
    for (size_t i = 0; i < sizeof ALIASES / sizeof *ALIASES; i++)
        if (strcmp(name, ALIASES[i][0]) == 0) name = ALIASES[i][1];
    for (size_t i = 0; i < N_OPTS; i++)
        if (strcmp(OPTS[i].name, name) == 0) return (int)i;
    return -1;
}

/* The placeholder --help shows for an option's value. */
static const char *metavar(const char *name) {
    static const char *const M[][2] = {
        {"model", "BASE.gg"},
        {"data", "FILE"},
        {"out", "ADAPTER.gg"},
        {"config", "FILE"},
        {"format", "NAME"},
        {"chat-template", "T"},
        {"seq-len", "N"},
        {"val-split", "F|N"},
        {"val-data", "FILE"},
        {"eval-every", "N"},
        {"debug-data", "N"},
        {"r", "N"},
        {"alpha", "A"},
        {"lora-dropout", "P"},
        {"targets", "LIST"},
        {"init-adapter", "PATH"},
        {"optim", "NAME"},
        {"lr", "LR"},
        {"weight-decay", "W"},
        {"adam-beta1", "B1"},
        {"adam-beta2", "B2"},
        {"adam-eps", "EPS"},
        {"schedule", "NAME"},
        {"warmup", "N|F"},
        {"max-grad-norm", "G"},
        {"micro-batch", "N"},
        {"grad-accum", "N"},
        {"epochs", "N"},
        {"max-steps", "N"},
        {"seed", "S"},
        {"peft-out", "DIR"},
        {"save-every", "N"},
        {"keep", "K"},
        {"checkpoint-dir", "DIR"},
        {"resume", "DIR"},
        {"metrics", "FILE"},
        {"plot", "FILE.svg"},
        {"dump-grads", "FILE"},
        {"dist-timeout", "S"},
        {"loss-spike", "X"},
        {"spike-steps", "N"},
        {"log-every", "N"},
        {"threads", "N"},
        {"device", "DEV"}};
    for (size_t i = 0; i < sizeof M / sizeof *M; i++)
        if (!strcmp(M[i][0], name)) return M[i][1];
    return "X";
}

static void usage(FILE *f) {
    fprintf(f, "usage: ggtrain -m BASE.gg -d DATA.jsonl -o ADAPTER.gg [options]\n"
               "       ggtrain -m BASE.gg --estimate [options]\n"
               "Fine-tune a LoRA adapter on a frozen base (QLoRA when the base is nf4).\n\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        char lhs[64];
        const char *s = OPTS[i].name;
        char shortf = !strcmp(s, "model") ? 'm' : !strcmp(s, "data") ? 'd' : !strcmp(s, "out") ? 'o' : !strcmp(s, "quiet") ? 'q' : 0;
        if (shortf) snprintf(lhs, sizeof lhs, "-%c, --%s%s%s", shortf, s, OPTS[i].arg ? " " : "", OPTS[i].arg ? metavar(s) : "");
        else snprintf(lhs, sizeof lhs, "    --%s%s%s", s, OPTS[i].arg ? " " : "", OPTS[i].arg ? metavar(s) : "");
        fprintf(f, "  %-27s %s", lhs, OPTS[i].help);
        if (OPTS[i].arg && *OPTS[i].def) fprintf(f, " (default %s)", OPTS[i].def);
        fputc('\n', f);
    }
    fprintf(f, "  -h, --help                  this help\n\n"
               "Config files use the same names; Axolotl's (lora_r, learning_rate, micro_batch_size, ...)\n"
               "are accepted too. The step's loss is the mean over all target tokens of its\n"
               "micro-batches. Ctrl-C writes a checkpoint and exits; --resume continues bit-identically.\n");
}

static void set_opt(int i, const char *v, const char *from) {
    free(owned[i]);
    owned[i] = strdup(v);
    val[i] = owned[i];
    snprintf(where[i], sizeof where[i], "%s", from);
    if (strcmp(OPTS[i].name, "data") == 0) {
        /* several files: repeated flags or a comma list */
        char *dup = strdup(v), *save = NULL;
        for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            data_files = realloc(data_files, (n_data_files + 1) * sizeof *data_files);
            data_files[n_data_files++] = strdup(tok);
        }
        free(dup);
    }
}

static const char *sv(const char *name) {
    int i = opt_index(name);
    return val[i] ? val[i] : OPTS[i].def;
}

static const char *from_of(const char *name) {
    int i = opt_index(name);
    static char buf[320];
    if (where[i][0]) return where[i];
    snprintf(buf, sizeof buf, "--%s", name);
    return buf;
}

static int bv(const char *name) {
    const char *s = sv(name);
    if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes")) return 1;
    if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no") || !*s) return 0;
    gg_die(TOOL, "%s: expected true or false, got '%s'", from_of(name), s);
}

static double dv(const char *name, double lo, double hi) {
    const char *s = sv(name);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= lo && v <= hi))
        gg_die(TOOL, "%s: expected a number in [%g, %g], got '%s'", from_of(name), lo, hi, s);
    return v;
}

static int64_t iv(const char *name, long lo, long hi) {
    long v;
    if (gg_parse_int(sv(name), lo, hi, &v))
        gg_die(TOOL, "%s: expected a whole number in [%ld, %ld], got '%s'", from_of(name), lo, hi, sv(name));
    return v;
}

static void parse_args(int argc, char **argv) {
    struct option lo[N_OPTS + 2];
    for (size_t i = 0; i < N_OPTS; i++)
        lo[i] = (struct option){OPTS[i].name, OPTS[i].arg ? required_argument : no_argument, NULL, (int)(1000 + i)};
    lo[N_OPTS] = (struct option){"help", no_argument, NULL, 'h'};
    lo[N_OPTS + 1] = (struct option){0, 0, 0, 0};
    /* pass 1: --config only */
    const char *config = NULL;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "m:d:o:qh", lo, NULL)) != -1)
        if (opt == 1000 + opt_index("config")) config = optarg;
    if (config) {
        gg_config *c = NULL;
        gg_err err;
        if (gg_config_load(&c, config, &err)) gg_die(TOOL, "%s", err.msg);
        for (size_t k = 0; k < gg_config_count(c); k++) {
            const char *key = gg_config_key(c, k);
            int i = opt_index(key);
            if (i < 0) gg_die(TOOL, "%s:%d: unknown key '%s' (see ggtrain --help)", config, gg_config_line(c, k), key);
            char from[300];
            snprintf(from, sizeof from, "%s:%d (%s)", config, gg_config_line(c, k), key);
            const char *v = gg_config_value(c, k);
            if (!strcmp(OPTS[i].name, "optim")) v = !strncmp(v, "adamw_bnb_8bit", 14) || !strcmp(v, "adamw_8bit")
                                                        ? "adamw8bit"
                                                        : !strncmp(v, "adamw", 5) && strcmp(v, "adamw8bit") ? "adamw" : v;
            set_opt(i, v, from);
        }
        gg_config_free(c);
    }
    /* pass 2: flags override */
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":m:d:o:qh", lo, NULL)) != -1) {
        int i = -1;
        switch (opt) {
        case 'h': usage(stdout); exit(0);
        case 'm': i = opt_index("model"); break;
        case 'd': i = opt_index("data"); break;
        case 'o': i = opt_index("out"); break;
        case 'q': i = opt_index("quiet"); break;
        case ':': gg_die(TOOL, "%s needs a value", argv[optind - 1]);
        case '?': gg_die(TOOL, "unknown option '%s' (see ggtrain --help)", argv[optind - 1]);
        default: i = opt - 1000;
        }
        if (i == opt_index("config")) continue;
        char from[300];
        snprintf(from, sizeof from, "--%s", OPTS[i].name);
        if (i == opt_index("data") && where[i][0] && strchr(where[i], ':')) { /* flags replace config files */
            for (size_t k = 0; k < n_data_files; k++) free(data_files[k]);
            n_data_files = 0;
            where[i][0] = 0;
        }
        set_opt(i, OPTS[i].arg ? optarg : "true", from);
    }
    if (optind < argc) gg_die(TOOL, "unexpected argument '%s' (see ggtrain --help)", argv[optind]);
}

/* ------------------------------------------------------------------------ */
/* Settings                                                                   */

typedef struct settings {
    const char *model, *out, *peft_out, *ckpt_dir, *resume, *metrics, *plot, *dump_grads, *val_data, *init_adapter;
    gg_data_opts data;
    gg_batch_opts batch;
    double val_split;
    gg_train_cfg tc;
    gg_adamw_hp hp;
    gg_lr_schedule schedule;
    double lr;
    double warmup, max_grad_norm, loss_spike;
    int64_t grad_accum, epochs, max_steps, eval_every, save_every, keep, spike_steps, log_every;
    int threads, quiet, estimate, preprocess_only;
    double dist_timeout;
    long debug_data;
    const char *device;
} settings;

static unsigned parse_targets(const char *s) {
    static const struct {
        const char *name;
        unsigned mask;
    } T[] = {{"q", 1u << GG_LIN_Q},       {"k", 1u << GG_LIN_K},         {"v", 1u << GG_LIN_V},
             {"o", 1u << GG_LIN_O},       {"gate", 1u << GG_LIN_GATE},   {"up", 1u << GG_LIN_UP},
             {"down", 1u << GG_LIN_DOWN}, {"q_proj", 1u << GG_LIN_Q},    {"k_proj", 1u << GG_LIN_K},
             {"v_proj", 1u << GG_LIN_V},  {"o_proj", 1u << GG_LIN_O},    {"gate_proj", 1u << GG_LIN_GATE},
             {"up_proj", 1u << GG_LIN_UP}, {"down_proj", 1u << GG_LIN_DOWN},
             {"query_key_value", 7u},     {"dense", 1u << GG_LIN_O},     {"dense_h_to_4h", 1u << GG_LIN_UP},
             {"dense_4h_to_h", 1u << GG_LIN_DOWN}, {"all", GG_TARGETS_ALL}, {"all-linear", GG_TARGETS_ALL},
             {"all_linear", GG_TARGETS_ALL}};
    unsigned m = 0;
    char *dup = strdup(s), *save = NULL;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        size_t k;
        for (k = 0; k < sizeof T / sizeof *T; k++)
            if (!strcmp(tok, T[k].name)) break;
        if (k == sizeof T / sizeof *T)
            gg_die(TOOL, "%s: unknown target '%s' (all, or q,k,v,o,gate,up,down)", from_of("targets"), tok);
        m |= T[k].mask;
    }
    free(dup);
    if (!m) gg_die(TOOL, "%s: no targets", from_of("targets"));
    return m;
}

static const char *opt_str(const char *name) {
    const char *s = sv(name);
    return *s ? s : NULL;
}

static void resolve(settings *S) {
    memset(S, 0, sizeof *S);
    S->model = opt_str("model");
    S->out = opt_str("out");
    S->peft_out = opt_str("peft-out");
    S->resume = opt_str("resume");
    S->metrics = opt_str("metrics");
    S->plot = opt_str("plot");
    S->dump_grads = opt_str("dump-grads");
    S->val_data = opt_str("val-data");
    S->init_adapter = opt_str("init-adapter");
    S->device = sv("device");
    S->estimate = bv("estimate");
    S->preprocess_only = bv("preprocess-only");
    S->quiet = bv("quiet");
    S->threads = (int)iv("threads", 0, 4096);
    S->dist_timeout = dv("dist-timeout", 1, 1e9);
    S->debug_data = opt_str("debug-data") ? (long)iv("debug-data", 0, 1L << 30) : -1;

    gg_err err;
    S->data = gg_data_opts_default();
    if (gg_data_format_from_name(sv("format"), &S->data.format, &err)) gg_die(TOOL, "%s: %s", from_of("format"), err.msg);
    S->data.seq_len = (size_t)iv("seq-len", 2, 1L << 24);
    S->data.train_on_inputs = bv("train-on-inputs");
    S->data.skip_bad = bv("skip-bad");
    S->data.chat_template = opt_str("chat-template");
    if (S->data.chat_template && !gg_chat_builtin(S->data.chat_template)) { /* a Jinja file */
        static char *tmpl;
        size_t len;
        if (gg_read_small_file(S->data.chat_template, 1 << 20, "chat template", &tmpl, &len, &err))
            gg_die(TOOL, "%s: %s (expected a built-in name: alpaca, chatml, llama2, llama3, or a Jinja file)",
                   from_of("chat-template"), err.msg);
        S->data.chat_template = tmpl;
    }
    S->val_split = dv("val-split", 0, 1e12);
    S->eval_every = iv("eval-every", 0, 1L << 40);

    S->batch.micro_batch = (size_t)iv("micro-batch", 1, 1 << 20);
    S->batch.seq_len = S->data.seq_len;
    S->batch.pack = bv("pack");
    S->batch.shuffle = !bv("no-shuffle");
    S->batch.seed = (uint64_t)iv("seed", 0, 0x7fffffffffffffffL);

    S->tc.r = iv("r", 1, 65536);
    S->tc.alpha = dv("alpha", 1e-9, 1e9);
    S->tc.rslora = bv("rslora");
    S->tc.targets = parse_targets(sv("targets"));
    S->tc.dropout = (float)dv("lora-dropout", 0, 0.99);
    S->tc.seed = S->batch.seed;
    S->tc.grad_ckpt = bv("grad-ckpt");
    const char *optim = sv("optim");
    if (!strcmp(optim, "adamw8bit")) S->tc.optim_8bit = 1;
    else if (strcmp(optim, "adamw")) gg_die(TOOL, "%s: expected adamw or adamw8bit, got '%s'", from_of("optim"), optim);

    S->lr = dv("lr", 0, 10);
    S->hp.lr = (float)S->lr;
    S->hp.weight_decay = (float)dv("weight-decay", 0, 10);
    S->hp.beta1 = (float)dv("adam-beta1", 0, 0.999999);
    S->hp.beta2 = (float)dv("adam-beta2", 0, 0.99999999);
    S->hp.eps = (float)dv("adam-eps", 0, 1);
    const char *sch = sv("schedule");
    if (!strcmp(sch, "constant")) S->schedule = GG_SCHED_CONSTANT;
    else if (!strcmp(sch, "linear")) S->schedule = GG_SCHED_LINEAR;
    else if (!strcmp(sch, "cosine")) S->schedule = GG_SCHED_COSINE;
    else gg_die(TOOL, "%s: expected constant, linear or cosine, got '%s'", from_of("schedule"), sch);
    S->warmup = dv("warmup", 0, 1e12);
    S->max_grad_norm = dv("max-grad-norm", 0, 1e12);
    S->grad_accum = iv("grad-accum", 1, 1 << 20);
    S->epochs = iv("epochs", 1, 1 << 20);
    S->max_steps = iv("max-steps", 0, 1L << 40);
    S->save_every = iv("save-every", 0, 1L << 40);
    S->keep = iv("keep", 1, 1 << 20);
    S->loss_spike = dv("loss-spike", 0, 1e12);
    S->spike_steps = iv("spike-steps", 1, 1 << 20);
    S->log_every = iv("log-every", 1, 1 << 30);

    if (!S->model) gg_die(TOOL, "no base model: give -m BASE.gg (see ggtrain --help)");
    if (!S->estimate && !n_data_files) gg_die(TOOL, "no training data: give -d DATA.jsonl");
    if (!S->estimate && !S->preprocess_only && !S->out) gg_die(TOOL, "no output: give -o ADAPTER.gg");
    if (S->val_data && S->val_split > 0) gg_die(TOOL, "--val-data and --val-split: give one of them");
    if (S->debug_data >= 0 && !S->preprocess_only) gg_die(TOOL, "--debug-data goes with --preprocess-only");
    static char ck[4096];
    if (opt_str("checkpoint-dir")) S->ckpt_dir = opt_str("checkpoint-dir");
    else if (S->out) {
        snprintf(ck, sizeof ck, "%s.ckpt", S->out);
        S->ckpt_dir = ck;
    }
}

/* ------------------------------------------------------------------------ */
/* Memory                                                                     */

static double peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}

/* Bytes of the base model's tensors (the weights the run reads). */
static double base_bytes(const gg_file *f) {
    double s = 0;
    for (size_t i = 0; gg_tensor_at(f, i); i++) s += (double)gg_tensor_at(f, i)->size;
    return s;
}

/* The process besides the model and the trainer: code and libraries
 * (8 MB measured on a model without a tokenizer) and the parsed tokenizer
 * (about 3x its JSON: 13-17 MB in all measured with Llama 2's). */
static double runtime_bytes(const gg_file *f) {
    const gg_value *tj = gg_meta_find(f, "tokenizer.json");
    return 8e6 + (tj && tj->type == GG_V_STR ? 3.0 * (double)tj->v.s.len : 0);
}

static void print_estimate(const settings *S, const gg_file *f, const gg_model_config *c, int64_t max_tokens,
                           FILE *out) {
    gg_train_cfg tc = S->tc;
    tc.max_tokens = max_tokens;
    gg_train_mem m;
    gg_train_mem_predict(&m, c, &tc);
    double base = base_bytes(f), rt = runtime_bytes(f), total = base + m.params + m.grads + m.optim + m.acts + rt;
    char b[6][32];
    fprintf(out,
            "ggtrain: predicted peak memory on %s, %lld tokens per micro-batch, r %lld, %s%s:\n"
            "  base weights      %s\n  LoRA parameters   %s\n  gradients         %s\n"
            "  optimizer state   %s\n  activations       %s\n  runtime           %s (code, tokenizer, data)\n"
            "  total             %.1f MB\n",
            S->device, (long long)max_tokens, (long long)tc.r, tc.optim_8bit ? "8-bit AdamW" : "AdamW",
            tc.grad_ckpt ? ", gradient checkpointing" : "", gg_human_bytes((uint64_t)base, b[0]),
            gg_human_bytes((uint64_t)m.params, b[1]), gg_human_bytes((uint64_t)m.grads, b[2]),
            gg_human_bytes((uint64_t)m.optim, b[3]), gg_human_bytes((uint64_t)m.acts, b[4]),
            gg_human_bytes((uint64_t)rt, b[5]), total / 1e6);
}

/* ------------------------------------------------------------------------ */
/* Adapter output                                                             */

static gg_adapter *adapter_of(gg_trainer *t, gg_model *m, int grads, gg_err *err) {
    const gg_model_config *c = gg_model_cfg(m);
    gg_lora_module *mods = NULL;
    size_t n = 0;
    if (gg_trainer_modules(t, grads, &mods, &n, err)) return NULL;
    gg_adapter *a = calloc(1, sizeof *a);
    if (a) a->t = calloc(n, sizeof *a->t);
    if (!a || !a->t) {
        free(a);
        gg_trainer_modules_free(mods);
        gg_errf(err, "out of memory");
        return NULL;
    }
    unsigned targets;
    gg_trainer_lora_info(t, &a->r, &a->alpha, &a->rslora, &targets);
    snprintf(a->label, sizeof a->label, "ggtrain");
    snprintf(a->arch, sizeof a->arch, "%s", c->arch);
    snprintf(a->source, sizeof a->source, "ggtrain");
    a->base_fingerprint = c->fingerprint;
    for (size_t i = 0; i < n; i++) {
        gg_adapter_tensor *at = &a->t[i];
        int64_t rows, cols;
        gg_model_linear_shape(m, mods[i].target, &rows, &cols);
        at->layer = mods[i].layer;
        at->target = (gg_lora_target)mods[i].target;
        at->r = mods[i].r;
        at->in = cols;
        at->out = rows;
        at->scale = mods[i].scale;
        at->alpha = a->rslora ? mods[i].scale * sqrt((double)mods[i].r) : mods[i].scale * (double)mods[i].r;
        if (fabs(at->alpha - a->alpha) < 1e-6 * fabs(a->alpha)) at->alpha = a->alpha;
        size_t na = (size_t)(at->r * cols), nb = (size_t)(rows * at->r);
        at->a = malloc(na * sizeof(float));
        at->b = malloc(nb * sizeof(float));
        a->n = i + 1;
        if (!at->a || !at->b) {
            gg_adapter_free(a);
            gg_trainer_modules_free(mods);
            gg_errf(err, "out of memory");
            return NULL;
        }
        memcpy(at->a, mods[i].a, na * sizeof(float));
        memcpy(at->b, mods[i].b, nb * sizeof(float));
    }
    gg_trainer_modules_free(mods);
    return a;
}

/* ------------------------------------------------------------------------ */
/* The run                                                                    */

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) {
    g_interrupted = 1;
    signal(sig, SIG_DFL); /* a second Ctrl-C stops at once */
}

typedef struct run {
    settings S;
    gg_file *f;
    gg_backend *be;
    gg_model *m;
    gg_tokenizer *tok;
    gg_dataset train, val;
    gg_batcher *tb, *vb;
    gg_trainer *t;
    gg_hist *hist;
    size_t n_hist, cap_hist;
    int64_t total_steps, warmup_steps, step;
    double tokens_seen, last_eval;
    FILE *metrics;
    char last_ckpt[4200];
    int32_t *k_lo_buf; /* a rank's share of a batch: rebased k_lo */
    double allreduce_s; /* time in the gradient all-reduce, this step */
} run;

static void hist_push(run *R, double step, double loss, double lr, int is_eval) {
    if (R->n_hist == R->cap_hist) {
        R->cap_hist = R->cap_hist ? 2 * R->cap_hist : 256;
        R->hist = realloc(R->hist, R->cap_hist * sizeof *R->hist);
        if (!R->hist) gg_die(TOOL, "out of memory");
    }
    R->hist[R->n_hist++] = (gg_hist){step, loss, lr, is_eval};
}

static void die_err(const gg_err *err) { gg_die(TOOL, "%s", err->msg); }

/* Remove a checkpoint folder (its files, then itself). */
static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4400];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* The step-NNNNNNNN folders of the checkpoint dir, sorted ascending. */
static size_t list_ckpts(const char *root, char names[][32], size_t cap) {
    DIR *d = opendir(root);
    if (!d) return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "step-", 5) && strlen(e->d_name) == 13 && n < cap) {
            memcpy(names[n], e->d_name, 14); /* "step-NNNNNNNN" and its NUL */
            n++;
        }
    closedir(d);
    qsort(names, n, 32, (int (*)(const void *, const void *))strcmp);
    return n;
}

static void save_checkpoint(run *R) {
    const settings *S = &R->S;
    gg_err err;
    char dir[4200], tmp[4300], p[4400];
    if (mkdir(S->ckpt_dir, 0755) && errno != EEXIST) gg_die(TOOL, "%s: %s", S->ckpt_dir, strerror(errno));
    snprintf(dir, sizeof dir, "%s/step-%08lld", S->ckpt_dir, (long long)R->step);
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    rm_tree(tmp);
    if (mkdir(tmp, 0755)) gg_die(TOOL, "%s: %s", tmp, strerror(errno));
    gg_adapter *a = adapter_of(R->t, R->m, 0, &err);
    snprintf(p, sizeof p, "%s/adapter.gg", tmp);
    if (!a || gg_adapter_save_gg(a, p, &err)) die_err(&err);
    gg_adapter_free(a);
    gg_batcher_state bs = gg_batcher_get_state(R->tb);
    gg_ckpt_info info = {.step = R->step, .epoch = bs.epoch, .cursor = bs.cursor, .seed = S->tc.seed,
                         .base_fingerprint = gg_model_cfg(R->m)->fingerprint, .total_steps = R->total_steps,
                         .tokens_seen = R->tokens_seen, .hist = R->hist, .n_hist = R->n_hist};
    snprintf(p, sizeof p, "%s/state.gg", tmp);
    if (gg_ckpt_save(p, R->t, &info, &err)) die_err(&err);
    rm_tree(dir);
    if (rename(tmp, dir)) gg_die(TOOL, "rename %s → %s: %s", tmp, dir, strerror(errno));
    char names[4096][32];
    size_t n = list_ckpts(S->ckpt_dir, names, 4096);
    for (size_t i = 0; i + (size_t)S->keep < n; i++) {
        snprintf(p, sizeof p, "%s/%s", S->ckpt_dir, names[i]);
        rm_tree(p);
    }
    snprintf(R->last_ckpt, sizeof R->last_ckpt, "%s", dir);
    if (!S->quiet) fprintf(stderr, "%sggtrain: checkpoint %s\n", isatty(2) ? "\n" : "", dir);
}

static void load_checkpoint(run *R, const char *path) {
    char dir[4200], p[4400];
    snprintf(dir, sizeof dir, "%s", path);
    snprintf(p, sizeof p, "%s/state.gg", dir);
    if (access(p, R_OK) != 0) { /* the checkpoint root: take the latest */
        char names[4096][32];
        size_t n = list_ckpts(path, names, 4096);
        if (!n) gg_die(TOOL, "--resume %s: no checkpoint there (expected state.gg or step-* folders)", path);
        snprintf(dir, sizeof dir, "%s/%s", path, names[n - 1]);
        snprintf(p, sizeof p, "%s/state.gg", dir);
    }
    gg_ckpt_info info;
    gg_err err;
    if (gg_ckpt_load(p, R->t, &info, &err)) die_err(&err);
    if (info.base_fingerprint != gg_model_cfg(R->m)->fingerprint)
        gg_die(TOOL, "%s: made on another base model (fingerprint differs)", p);
    if (info.seed != R->S.tc.seed)
        gg_die(TOOL, "%s: made with --seed %llu, this run has %llu", p, (unsigned long long)info.seed,
               (unsigned long long)R->S.tc.seed);
    if (gg_batcher_set_state(R->tb, (gg_batcher_state){info.epoch, info.cursor}, &err)) die_err(&err);
    R->step = info.step;
    R->tokens_seen = info.tokens_seen;
    for (size_t i = 0; i < info.n_hist; i++)
        hist_push(R, info.hist[i].step, info.hist[i].loss, info.hist[i].lr, info.hist[i].is_eval);
    free(info.hist);
    if (info.total_steps != R->total_steps)
        fprintf(stderr, "ggtrain: note: the checkpoint planned %lld steps, this run %lld\n",
                (long long)info.total_steps, (long long)R->total_steps);
    if (!R->S.quiet) fprintf(stderr, "ggtrain: resumed from %s at step %lld\n", dir, (long long)R->step);
}

static double eval_loss(run *R) {
    if (!R->vb) return NAN;
    gg_err err;
    if (gg_batcher_set_state(R->vb, (gg_batcher_state){0, 0}, &err)) die_err(&err);
    gg_batch b, mine;
    double acc[2] = {0, 0}; /* Σ loss, targets */
    while (gg_batcher_next(R->vb, &b)) {
        double l;
        int64_t k;
        gg_batch_shard(&b, gg_dist_g.rank, gg_dist_g.size, &mine, R->k_lo_buf);
        if (!mine.n) continue;
        if (gg_trainer_eval(R->t, mine.ids, mine.pos, mine.k_lo, mine.targets, mine.n, &l, &k, &err)) die_err(&err);
        acc[0] += l;
        acc[1] += (double)k;
    }
    gg_dist_sum_f64(acc, 2);
    return acc[1] > 0 ? acc[0] / acc[1] : NAN;
}

static void write_plot(run *R) {
    if (!R->S.plot) return;
    size_t n = R->n_hist;
    double *x = malloc((3 * n + 1) * sizeof *x), *y = malloc((3 * n + 1) * sizeof *y);
    if (!x || !y) gg_die(TOOL, "out of memory");
    size_t nt = 0, ne = 0;
    double *tx = x, *ty = y, *ex = x + n, *ey = y + n, *lx = x + 2 * n, *ly = y + 2 * n;
    for (size_t i = 0; i < n; i++) {
        if (R->hist[i].is_eval) {
            ex[ne] = R->hist[i].step;
            ey[ne++] = R->hist[i].loss;
        } else {
            tx[nt] = lx[nt] = R->hist[i].step;
            ty[nt] = R->hist[i].loss;
            ly[nt++] = R->hist[i].lr;
        }
    }
    gg_plot_series ser[3] = {
        {.name = "train loss", .color = "#1f77b4", .x = tx, .y = ty, .n = nt, .axis = GG_PLOT_LEFT, .style = GG_PLOT_LINE},
        {.name = "eval loss", .color = "#d62728", .x = ex, .y = ey, .n = ne, .axis = GG_PLOT_LEFT, .style = GG_PLOT_MARKERS},
        {.name = "learning rate", .color = "#7f7f7f", .x = lx, .y = ly, .n = nt, .axis = GG_PLOT_RIGHT, .style = GG_PLOT_LINE},
    };
    gg_err err;
    if (gg_plot_svg(R->S.plot, ser, 3, "ggtrain", &err)) fprintf(stderr, "ggtrain: --plot: %s\n", err.msg);
    free(x);
    free(y);
}

static void do_eval(run *R) {
    if (!R->vb) return;
    double el = eval_loss(R);
    R->last_eval = el;
    hist_push(R, (double)R->step, el, NAN, 1);
    if (R->metrics) {
        fprintf(R->metrics, "{\"step\":%lld,\"eval_loss\":%.9g}\n", (long long)R->step, el);
        fflush(R->metrics);
    }
    if (!R->S.quiet) fprintf(stderr, "%sggtrain: step %lld eval loss %.4f\n", isatty(2) ? "\n" : "", (long long)R->step, el);
    write_plot(R);
}

/* The loss watchdog: each of the last spike-steps losses exceeds loss-spike
 * times the mean of the (up to 50) steps before them. */
static int spiking(const run *R) {
    size_t need = (size_t)R->S.spike_steps, n = 0, base_n = 0;
    double base = 0;
    int all_over = 1;
    double *recent = malloc(need * sizeof *recent);
    if (!recent) return 0;
    for (size_t i = R->n_hist; i-- > 0 && base_n < 50;) {
        if (R->hist[i].is_eval) continue;
        if (n < need) recent[n++] = R->hist[i].loss;
        else {
            base += R->hist[i].loss;
            base_n++;
        }
    }
    if (n < need || base_n < 5) {
        free(recent);
        return 0;
    }
    base /= (double)base_n;
    for (size_t i = 0; i < n; i++) all_over &= recent[i] > R->S.loss_spike * base;
    free(recent);
    return all_over;
}

static void fmt_time(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e8) snprintf(buf, cap, "?");
    else if (s < 60) snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600) snprintf(buf, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, cap, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

/* --dump-grads: the gradients as a PEFT adapter_model.safetensors (the
 * PEFT export writes it into a scratch folder beside FILE, then it is
 * renamed to FILE). */
static void write_dump_grads(run *R) {
    gg_err err;
    char dir[4200], st[4300], cfgp[4300];
    snprintf(dir, sizeof dir, "%s.peft.tmp", R->S.dump_grads);
    gg_adapter *g = adapter_of(R->t, R->m, 1, &err);
    if (!g || gg_adapter_save_peft_base(g, dir, NULL, R->f, &err)) gg_die(TOOL, "--dump-grads: %s", err.msg);
    gg_adapter_free(g);
    snprintf(st, sizeof st, "%s/adapter_model.safetensors", dir);
    snprintf(cfgp, sizeof cfgp, "%s/adapter_config.json", dir);
    if (rename(st, R->S.dump_grads)) gg_die(TOOL, "--dump-grads %s: %s", R->S.dump_grads, strerror(errno));
    unlink(cfgp);
    rmdir(dir);
}

/* One optimizer step: its micro-batches, clipping, the update, logs. 0 at
 * the end of the data. */
static int train_step(run *R, double t_start, int64_t first_step) {
    settings *S = &R->S;
    gg_err err;
    size_t nb = 0;
    int64_t T = gg_batcher_peek_targets(R->tb, (size_t)S->grad_accum, &nb);
    if (!nb) {
        if (!S->max_steps && gg_batcher_get_state(R->tb).epoch + 1 >= (uint64_t)S->epochs) return 0;
        gg_batcher_next_epoch(R->tb);
        T = gg_batcher_peek_targets(R->tb, (size_t)S->grad_accum, &nb);
        if (!nb) return 0;
    }
    double t0 = gg_now();
    double acc[4] = {0, 0, 0, 0}; /* Σ loss, tokens, targets, stop requests — summed over the ranks */
    for (size_t k = 0; k < nb; k++) {
        gg_batch b, mine;
        if (!gg_batcher_next(R->tb, &b)) gg_die(TOOL, "internal: batcher ended early");
        gg_batch_shard(&b, gg_dist_g.rank, gg_dist_g.size, &mine, R->k_lo_buf);
        if (!mine.n) continue;
        double l;
        int64_t nt;
        uint64_t key = ((uint64_t)R->step * 65536u + k) * 1024u + (uint64_t)gg_dist_g.rank;
        if (gg_trainer_micro(R->t, mine.ids, mine.pos, mine.k_lo, mine.targets, mine.n, 1.0f / (float)T, key, &l,
                             &nt, &err))
            die_err(&err);
        acc[0] += l;
        acc[1] += (double)mine.n;
        acc[2] += (double)nt;
    }
    if (gg_dist_g.size > 1) { /* the step's gradient is the sum of the ranks' (each scaled by 1/T, T global) */
        double ta = gg_now();
        size_t ng;
        float *g = gg_trainer_grad_data(R->t, &ng);
        gg_dist_sum_f32(g, ng);
        acc[3] = g_interrupted;
        gg_dist_sum_f64(acc, 4);
        if (acc[3] > 0) g_interrupted = 1; /* stop together */
        R->allreduce_s = gg_now() - ta;
    }
    int64_t ntok = (int64_t)acc[1], ntg = (int64_t)acc[2];
    double loss = acc[0] / (double)(ntg ? ntg : 1), gn;
    if (gg_trainer_grad_norm(R->t, &gn, &err)) die_err(&err);
    if (!isfinite(loss) || !isfinite(gn))
        gg_die(TOOL, "step %lld: %s is %s; stopping without applying it (%s%s)", (long long)R->step + 1,
               isfinite(loss) ? "the gradient norm" : "the loss", isnan(isfinite(loss) ? gn : loss) ? "NaN" : "infinite",
               R->last_ckpt[0] ? "last good checkpoint: " : "no checkpoint written yet", R->last_ckpt);
    if (R->step == 0 && S->dump_grads) write_dump_grads(R);
    double lr = gg_lr_at(R->S.schedule, S->lr, R->step, R->total_steps, R->warmup_steps);
    gg_adamw_hp hp = S->hp;
    hp.lr = (float)lr;
    hp.grad_scale = S->max_grad_norm > 0 ? (float)fmin(1.0, S->max_grad_norm / (gn + 1e-6)) : 1.0f;
    hp.step = R->step + 1;
    if (gg_trainer_step(R->t, &hp, &err)) die_err(&err);
    R->step++;
    R->tokens_seen += (double)ntok;
    double dt = gg_now() - t0, tps = (double)ntok / dt;
    hist_push(R, (double)R->step, loss, lr, 0);
    gg_batcher_state bs = gg_batcher_get_state(R->tb);
    double epoch = (double)bs.epoch + (double)bs.cursor / (double)R->train.n_samples;
    if (R->metrics) {
        fprintf(R->metrics,
                "{\"step\":%lld,\"epoch\":%.4f,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"tokens\":%lld,"
                "\"target_tokens\":%lld,\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f",
                (long long)R->step, epoch, loss, lr, gn, (long long)ntok, (long long)ntg, tps, gg_now() - t_start);
        if (gg_dist_g.size > 1) fprintf(R->metrics, ",\"ranks\":%d,\"allreduce_s\":%.6f", gg_dist_g.size, R->allreduce_s);
        fputs("}\n", R->metrics);
        fflush(R->metrics);
    }
    if (!S->quiet) {
        double per = (gg_now() - t_start) / (double)(R->step - first_step);
        char eta[32];
        fmt_time(per * (double)(R->total_steps - R->step), eta, sizeof eta);
        int tty = isatty(2);
        char bar[24] = "";
        if (tty) { /* [=======>      ] */
            int w = 20, fill = (int)((double)w * (double)R->step / (double)R->total_steps);
            bar[0] = '[';
            for (int i = 0; i < w; i++) bar[1 + i] = i < fill ? '=' : i == fill ? '>' : ' ';
            bar[w + 1] = ']';
            bar[w + 2] = ' ';
            bar[w + 3] = 0;
        }
        if (tty || R->step % S->log_every == 0 || R->step == R->total_steps || R->step == first_step + 1)
            fprintf(stderr, "%s%sstep %lld/%lld  loss %.4f  lr %.3g  grad-norm %.3g  %.0f tokens/s  ETA %s%s",
                    tty ? "\r\033[K" : "", bar, (long long)R->step, (long long)R->total_steps, loss, lr, gn, tps, eta,
                    tty ? "" : "\n");
    }
    return 1;
}

static void run_free(run *R) {
    if (R->metrics) fclose(R->metrics);
    gg_trainer_free(R->t);
    gg_batcher_free(R->tb);
    gg_batcher_free(R->vb);
    gg_data_free(&R->train);
    gg_data_free(&R->val);
    gg_tokenizer_free(R->tok);
    gg_model_free(R->m);
    gg_backend_free(R->be);
    gg_file_close(R->f);
    free(R->hist);
    free(R->k_lo_buf);
    for (size_t i = 0; i < N_OPTS; i++) free(owned[i]);
    for (size_t i = 0; i < n_data_files; i++) free(data_files[i]);
    free(data_files);
}

int main(int argc, char **argv) {
    if (gg_dist_init(&argc, &argv)) return 1;
    static char tool_name[64];
    if (gg_dist_g.size > 1) {
        snprintf(tool_name, sizeof tool_name, "ggtrain (rank %d of %d)", gg_dist_g.rank, gg_dist_g.size);
        TOOL = tool_name;
    }
    parse_args(argc, argv);
    run R0 = {0}, *R = &R0;
    settings *S = &R->S;
    resolve(S);
    gg_err err;
    gg_dist_set_timeout(S->dist_timeout);
    if (gg_dist_g.rank > 0) { /* rank 0 alone reports and writes files */
        S->quiet = 1;
        S->metrics = S->plot = S->dump_grads = S->peft_out = NULL;
    }
    if (gg_dist_g.size > 1) {
        if (strcmp(S->device, "cpu")) gg_die(TOOL, "data parallel on --device %s is not built yet (cpu only)", S->device);
        if (!S->threads) {
            const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
            long nc = sysconf(_SC_NPROCESSORS_ONLN), local = ls && atoi(ls) > 0 ? atoi(ls) : 1;
            S->threads = (int)(nc / local > 0 ? nc / local : 1);
        }
        S->batch.micro_batch *= (size_t)gg_dist_g.size; /* the global micro-batch; each rank takes its share */
    }
    if (gg_file_open(&R->f, S->model, 0, &err)) die_err(&err);
    gg_model_config cfg;
    if (gg_model_config_read(&cfg, R->f, &err)) die_err(&err);
    if (!where[opt_index("seq-len")][0] && S->data.seq_len > (size_t)cfg.context_length)
        S->data.seq_len = S->batch.seq_len = (size_t)cfg.context_length; /* the default, capped */
    if (S->data.seq_len > (size_t)cfg.context_length)
        gg_die(TOOL, "--seq-len %zu is longer than the model's context (%lld)", S->data.seq_len,
               (long long)cfg.context_length);
    if (S->estimate) {
        int64_t rows = (int64_t)S->batch.micro_batch * (int64_t)S->data.seq_len;
        if (gg_dist_g.rank == 0) print_estimate(S, R->f, &cfg, rows / gg_dist_g.size, stdout);
        run_free(R);
        gg_dist_finalize();
        return 0;
    }

    /* data */
    if (gg_meta_find(R->f, "tokenizer.json")) {
        if (gg_tokenizer_load_gg(&R->tok, R->f, &err)) die_err(&err);
    } else if (S->data.format != GG_DATA_PRETOKENIZED && S->data.format != GG_DATA_AUTO) {
        gg_die(TOOL, "%s has no tokenizer: only --format pretokenized data can train it", S->model);
    }
    S->data.vocab = (size_t)cfg.vocab;
    for (size_t i = 0; i < n_data_files; i++)
        if (gg_data_load(&R->train, data_files[i], R->tok, &S->data, &err)) die_err(&err);
    if (S->val_data && gg_data_load(&R->val, S->val_data, R->tok, &S->data, &err)) die_err(&err);
    if (S->val_split > 0 && gg_data_split(&R->train, &R->val, S->val_split, S->batch.seed, &err)) die_err(&err);
    char sum[256];
    gg_data_summary(&R->train, sum, sizeof sum);
    if (!S->quiet || S->preprocess_only) fprintf(stderr, "ggtrain: train data: %s\n", sum);
    if (R->val.n_samples) {
        gg_data_summary(&R->val, sum, sizeof sum);
        if (!S->quiet || S->preprocess_only) fprintf(stderr, "ggtrain: eval data: %s\n", sum);
    }
    if (S->preprocess_only) {
        if (S->debug_data >= 0 && gg_dist_g.rank == 0) gg_data_debug(stdout, &R->train, R->tok, (size_t)S->debug_data);
        run_free(R);
        gg_dist_finalize();
        return 0;
    }
    if (!R->train.n_samples) gg_die(TOOL, "no training samples left (see the counts above)");
    if (gg_batcher_new(&R->tb, &R->train, &S->batch, &err)) die_err(&err);
    gg_batch_opts vo = S->batch;
    vo.shuffle = 0;
    if (R->val.n_samples && gg_batcher_new(&R->vb, &R->val, &vo, &err)) die_err(&err);

    /* steps */
    if (S->max_steps) R->total_steps = S->max_steps;
    else
        for (int64_t e = 0; e < S->epochs; e++)
            R->total_steps += ((int64_t)gg_batcher_epoch_batches(R->tb, (uint64_t)e) + S->grad_accum - 1) / S->grad_accum;
    R->warmup_steps = S->warmup < 1 ? (int64_t)ceil(S->warmup * (double)R->total_steps) : (int64_t)S->warmup;
    if (!S->eval_every) S->eval_every = R->total_steps / 10 > 0 ? R->total_steps / 10 : 1;

    /* model and trainer */
    R->be = gg_tool_backend(S->device, S->threads, &err);
    if (!R->be || gg_model_load(&R->m, R->f, R->be, &err)) die_err(&err);
    int64_t max_tok = gg_batcher_max_tokens(R->tb);
    if (R->vb && gg_batcher_max_tokens(R->vb) > max_tok) max_tok = gg_batcher_max_tokens(R->vb);
    S->tc.max_tokens = max_tok < 2 ? 2 : max_tok;
    R->k_lo_buf = malloc((size_t)S->tc.max_tokens * sizeof *R->k_lo_buf);
    if (!R->k_lo_buf) gg_die(TOOL, "out of memory");
    gg_lora_module *init_mods = NULL;
    size_t n_init = 0;
    gg_adapter *ia = NULL;
    if (S->init_adapter) {
        struct stat st;
        if (stat(S->init_adapter, &st)) gg_die(TOOL, "--init-adapter %s: no such file or folder", S->init_adapter);
        int rc = S_ISDIR(st.st_mode) ? gg_adapter_load_peft(&ia, S->init_adapter, R->f, &err)
                                     : gg_adapter_load_gg(&ia, S->init_adapter, &err);
        if (rc || gg_adapter_check_base(ia, R->f, &err)) die_err(&err);
        init_mods = calloc(ia->n ? ia->n : 1, sizeof *init_mods);
        for (size_t i = 0; i < ia->n; i++)
            init_mods[i] = (gg_lora_module){.layer = ia->t[i].layer, .target = (gg_linear)ia->t[i].target,
                                            .r = ia->t[i].r, .a = ia->t[i].a, .b = ia->t[i].b, .scale = ia->t[i].scale};
        n_init = ia->n;
        S->tc.rslora = ia->rslora;
    }
    if (gg_trainer_new(&R->t, R->m, &S->tc, init_mods, n_init, &err)) die_err(&err);
    free(init_mods);
    gg_adapter_free(ia);
    if (S->resume) load_checkpoint(R, S->resume);
    if (S->metrics && !(R->metrics = fopen(S->metrics, "a"))) gg_die(TOOL, "%s: %s", S->metrics, strerror(errno));

    char ranks_note[64] = "";
    if (gg_dist_g.size > 1)
        snprintf(ranks_note, sizeof ranks_note, ", split over %d ranks of %d threads", gg_dist_g.size, S->threads);
    if (!S->quiet) {
        gg_train_mem mem;
        gg_trainer_mem(R->t, &mem);
        int64_t r;
        double alpha;
        int rs;
        unsigned tg;
        gg_trainer_lora_info(R->t, &r, &alpha, &rs, &tg);
        fprintf(stderr,
                "ggtrain: %s base, LoRA r %lld alpha %g on %s; %.2f M trainable parameters; %lld steps of %lld "
                "micro-batches (%zu samples each%s%s); %s, lr %g %s, warmup %lld\n",
                gg_type_name(gg_model_weight_type(R->m)), (long long)r, alpha,
                tg == GG_TARGETS_ALL || (cfg.mlp == GG_MMLP_GELU && tg == (GG_TARGETS_ALL & ~(1u << GG_LIN_GATE)))
                    ? "all linear layers" : sv("targets"),
                mem.params / 4e6, (long long)R->total_steps, (long long)S->grad_accum, S->batch.micro_batch,
                S->batch.pack ? " rows, packed" : "", ranks_note, S->tc.optim_8bit ? "8-bit AdamW" : "AdamW", S->hp.lr,
                sv("schedule"), (long long)R->warmup_steps);
        if (S->tc.optim_8bit) {
            char b1[32], b2[32];
            fprintf(stderr, "ggtrain: 8-bit AdamW state %s (f32 AdamW: %s; saves %s)\n",
                    gg_human_bytes((uint64_t)mem.optim, b1), gg_human_bytes((uint64_t)(mem.params * 2), b2),
                    gg_human_bytes((uint64_t)(mem.params * 2 - mem.optim), sum));
        }
    }

    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    signal(SIGUSR1, on_sigint); /* mpirun forwards SIGUSR1 to every rank (SIGINT ends an MPI job at once) */
    if (R->vb && R->step == 0) do_eval(R); /* the baseline */
    double t_start = gg_now();
    int64_t first_step = R->step;
    double tokens_before = R->tokens_seen;
    while (R->step < R->total_steps && !g_interrupted) {
        if (!train_step(R, t_start, first_step)) break;
        if (R->vb && R->step % S->eval_every == 0 && R->step < R->total_steps) do_eval(R);
        if (S->save_every && R->step % S->save_every == 0 && !g_interrupted && gg_dist_g.rank == 0)
            save_checkpoint(R);
        if (S->loss_spike > 0 && spiking(R)) {
            fprintf(stderr, "%sggtrain: step %lld: the loss has been over %g x its earlier mean for %lld steps; "
                            "stopping without writing %s (%s%s)\n",
                    isatty(2) ? "\n" : "", (long long)R->step, S->loss_spike, (long long)S->spike_steps, S->out,
                    R->last_ckpt[0] ? "last good checkpoint: " : "no checkpoint written yet", R->last_ckpt);
            run_free(R);
            gg_dist_finalize();
            return 1;
        }
    }
    if (g_interrupted) {
        if (gg_dist_g.rank == 0) {
            save_checkpoint(R);
            fprintf(stderr, "ggtrain: interrupted at step %lld; continue with --resume %s\n", (long long)R->step,
                    S->ckpt_dir);
        }
        run_free(R);
        gg_dist_finalize();
        return 130;
    }
    if (isatty(2) && !S->quiet) fputc('\n', stderr);
    double elapsed = gg_now() - t_start, tokens_run = R->tokens_seen - tokens_before;
    if (R->vb) do_eval(R);
    else write_plot(R);

    gg_adapter *a = gg_dist_g.rank == 0 ? adapter_of(R->t, R->m, 0, &err) : NULL;
    if (gg_dist_g.rank == 0 && (!a || gg_adapter_save_gg(a, S->out, &err))) die_err(&err);
    if (S->peft_out && gg_adapter_save_peft_base(a, S->peft_out, NULL, R->f, &err)) gg_die(TOOL, "--peft-out: %s", err.msg);
    gg_adapter_free(a);
    if (!S->quiet) {
        double last = NAN;
        for (size_t i = R->n_hist; i-- > 0;)
            if (!R->hist[i].is_eval) {
                last = R->hist[i].loss;
                break;
            }
        fprintf(stderr,
                "ggtrain: %lld steps, %.0f tokens in %.1f s (%.0f tokens/s); last loss %.4f; peak RSS %.0f MB; "
                "wrote %s\n",
                (long long)(R->step - first_step), tokens_run, elapsed, elapsed > 0 ? tokens_run / elapsed : 0, last,
                peak_rss_bytes() / 1e6, S->out);
        if (R->vb) fprintf(stderr, "ggtrain: eval loss %.4f\n", R->last_eval);
        if (gg_dist_g.size > 1)
            fprintf(stderr, "ggtrain: %d ranks; gradient all-reduce %.2f ms in the last step\n", gg_dist_g.size,
                    1e3 * R->allreduce_s);
    }
    run_free(R);
    gg_dist_finalize();
    return 0;
}

/* train_opts.h — ggtrain's options (header-only, included by tools/ggtrain.c
 * alone): one table drives getopt_long, --config recipe keys (with
 * Axolotl's names as aliases) and --help; values are checked and turned
 * into the typed settings the run uses, with errors naming the flag or the
 * recipe file and line. */
#ifndef GG_TOOLS_TRAIN_OPTS_H
#define GG_TOOLS_TRAIN_OPTS_H

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/config.h"
#include "convert/json_util.h"
#include "models/chat.h"
#include "models/data.h"
#include "models/train.h"
#include "tools/common.h"

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

#endif

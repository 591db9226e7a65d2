/* ggtrain — LoRA / QLoRA fine-tuning of a .gg base model on JSONL data.
 *
 *   ggtrain -m BASE.gg -d DATA.jsonl -o ADAPTER.gg [options]
 *   ggtrain -m BASE.gg --estimate [options]
 *   ggtrain -m BASE.gg -d DATA.jsonl --preprocess-only [--debug-data]
 *
 * Every option is a long flag with its default in --help; --config FILE
 * (YAML or JSON, convert/config.h) sets the same keys, flags override it.
 * This file runs the loop (accumulation, schedule, clipping, eval,
 * checkpoints, logs, data parallelism); the options are tools/train_opts.h,
 * the math models/train.c, the data models/data.c, the state file
 * models/checkpoint.c, MPI tools/dist.h. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/adapter.h"
#include "convert/plot.h"
#include "models/checkpoint.h"
#include "models/data.h"
#include "models/tokenizer.h"
#include "models/train.h"
#include "tools/common.h"
#include "tools/dist.h"
#include "tools/engine.h"
#include "tools/train_opts.h"

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

/* test_train.c — LoRA training (models/train.c) against PyTorch + PEFT and
 * against itself:
 * - parity on the fixtures' lora/ (llama2-mha, qwen2-bias-tied): the loss of
 *   both reference sequences (first 10 labels masked) equals lora_loss, the
 *   gradients equal ref_grads.safetensors, and one AdamW step (lr 1e-3)
 *   gives ref_after_adamw_step.safetensors;
 * - a finite-difference check of the whole backward pass (every op of every
 *   architecture: llama, qwen2 biases, gemma 1+w norms + GeGLU, falcon
 *   parallel blocks + LayerNorm + GELU + MQA, mistral sliding window), on
 *   f32 and on an nf4 base, with LoRA dropout on;
 * - two samples in one packed micro-batch give the gradients of two
 *   separate micro-batches; gradient checkpointing gives bit-identical
 *   gradients; 8-bit AdamW follows f32 AdamW.
 *
 * Tolerances: from the fixtures' README, loss rel 1e-4, gradients rel
 * L2 over all tensors 1e-3 (and 2e-3 for the worst single tensor: q and k,
 * whose gradients are 50x smaller than the others', show 1.1e-3); after the
 * AdamW step 1e-6 per parameter except where |g| < 1e-5 (compare_step);
 * finite differences: 2e-2 relative (float forward passes, h = 3e-3 on a
 * unit direction; the truncation error at this h is below 1e-2). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "backend-cpu/cpu_backend.h"
#include "tests/test_device.h"
#include "convert/adapter.h"
#include "convert/convert.h"
#include "models/train.h"
#include "tests/check.h"
#include "tests/fixture_gg.h"
#include "tests/rng.h"

static char tmpdir[256];

static int convert_to(const char *fix, gg_type t, char *out, size_t len) {
    return fixture_gg(fix, t, tmpdir, out, len);
}

/* The reference ids: 2 sequences of 24. */
static int load_ids(const char *fix, int32_t ids[2][24], double *lora_loss) {
    char p[600];
    snprintf(p, sizeof p, "%s/hf/%s/reference.json", check_fixtures(), fix);
    json_t *j = json_load_file(p, 0, NULL);
    if (!j) return -1;
    json_t *a = json_object_get(j, "ids");
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 24; i++) ids[s][i] = (int32_t)json_integer_value(json_array_get(json_array_get(a, s), i));
    *lora_loss = json_real_value(json_object_get(j, "lora_loss"));
    json_decref(j);
    return 0;
}

/* A flat micro-batch. */
typedef struct batch {
    int32_t ids[64], pos[64], k_lo[64], tg[64];
    int64_t n;
} batch;

/* Append a sample whose first `masked` labels are ignored (labels = ids). */
static void add_sample(batch *b, const int32_t *ids, int64_t len, int64_t masked) {
    int64_t s = b->n;
    for (int64_t i = 0; i < len; i++) {
        b->ids[s + i] = ids[i];
        b->pos[s + i] = (int32_t)i;
        b->k_lo[s + i] = (int32_t)s;
        b->tg[s + i] = i + 1 < len && i + 1 >= masked ? ids[i + 1] : -100;
    }
    b->n += len;
}

/* An adapter as trainer modules (pointing into a). */
static gg_lora_module *modules_of(const gg_adapter *a) {
    gg_lora_module *m = calloc(a->n, sizeof *m);
    for (size_t i = 0; i < a->n; i++)
        m[i] = (gg_lora_module){.layer = a->t[i].layer, .target = (gg_linear)a->t[i].target, .r = a->t[i].r,
                                .a = a->t[i].a, .b = a->t[i].b, .scale = a->t[i].scale};
    return m;
}

/* A PEFT-named safetensors file of lora_A/lora_B tensors read as an adapter
 * (a temporary folder with the fixture's adapter_config.json). */
static gg_adapter *load_named(const char *fix, const char *file, const gg_file *base) {
    char dir[600], src[700], dst[700];
    snprintf(dir, sizeof dir, "%s/%s.%s.d", tmpdir, fix, file);
    if (access(dir, F_OK) != 0) {
        mkdir(dir, 0700);
        snprintf(src, sizeof src, "%s/hf/%s/lora/adapter_config.json", check_fixtures(), fix);
        snprintf(dst, sizeof dst, "%s/adapter_config.json", dir);
        char *rs = realpath(src, NULL);
        if (!rs || symlink(rs, dst)) {
            free(rs);
            return NULL;
        }
        free(rs);
        snprintf(src, sizeof src, "%s/hf/%s/lora/%s", check_fixtures(), fix, file);
        snprintf(dst, sizeof dst, "%s/adapter_model.safetensors", dir);
        rs = realpath(src, NULL);
        if (!rs || symlink(rs, dst)) {
            free(rs);
            return NULL;
        }
        free(rs);
    }
    gg_adapter *a = NULL;
    gg_err err;
    if (gg_adapter_load_peft(&a, dir, base, &err)) {
        fprintf(stderr, "%s: %s\n", file, err.msg);
        return NULL;
    }
    return a;
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Compare trainer modules with an adapter's tensors (same order): the
 * relative L2 error over all of them, and the worst tensor's. */
static void compare_grads(const char *what, const gg_lora_module *m, size_t n, const gg_adapter *ref) {
    CHECK(n == ref->n, "%s: %zu modules, reference %zu", what, n, ref->n);
    double worst = 0, num = 0, den = 0;
    for (size_t i = 0; i < n && i < ref->n; i++) {
        const gg_adapter_tensor *t = &ref->t[i];
        CHECK(m[i].layer == t->layer && (int)m[i].target == (int)t->target, "%s: module %zu differs", what, i);
        const float *ours[2] = {m[i].a, m[i].b}, *theirs[2] = {t->a, t->b};
        size_t len[2] = {(size_t)(t->r * t->in), (size_t)(t->out * t->r)};
        for (int k = 0; k < 2; k++) {
            worst = fmax(worst, rel_l2(ours[k], theirs[k], len[k]));
            for (size_t j = 0; j < len[k]; j++) {
                double d = (double)ours[k][j] - theirs[k][j];
                num += d * d;
                den += (double)theirs[k][j] * theirs[k][j];
            }
        }
    }
    double rel = sqrt(num / den);
    printf("# %s: rel L2 %.3g over all tensors, worst tensor %.3g\n", what, rel, worst);
    CHECK(rel <= 1e-3, "%s: rel %.3g > 1e-3", what, rel);
    CHECK(worst <= 2e-3, "%s: worst tensor rel %.3g > 2e-3", what, worst);
}

/* After one AdamW step from zero moments each parameter moves by
 * lr·g/(|g| + eps) ≈ ±lr: it must match within 1e-6, except where the
 * reference gradient is so small (< 1e-5) that float differences in g may
 * flip its sign — those elements are counted and reported. */
static void compare_step(const char *what, const gg_lora_module *m, size_t n, const gg_adapter *ref,
                         const gg_adapter *ref_g) {
    size_t bad = 0, flips = 0, total = 0;
    double worst = 0;
    for (size_t i = 0; i < n && i < ref->n; i++) {
        const gg_adapter_tensor *t = &ref->t[i], *g = &ref_g->t[i];
        const float *ours[2] = {m[i].a, m[i].b}, *theirs[2] = {t->a, t->b}, *grad[2] = {g->a, g->b};
        size_t len[2] = {(size_t)(t->r * t->in), (size_t)(t->out * t->r)};
        for (int k = 0; k < 2; k++)
            for (size_t j = 0; j < len[k]; j++) {
                double d = fabs((double)ours[k][j] - theirs[k][j]);
                total++;
                if (d <= 1e-6) continue;
                if (fabs(grad[k][j]) < 1e-5) flips++;
                else {
                    bad++;
                    worst = fmax(worst, d);
                }
            }
    }
    printf("# %s: %zu of %zu parameters within 1e-6; %zu differ where |g| < 1e-5; %zu others (worst %.3g)\n", what,
           total - flips - bad, total, flips, bad, worst);
    CHECK(bad == 0, "%s: %zu parameters off by up to %.3g", what, bad, worst);
    CHECK(flips * 200 <= total, "%s: %zu near-zero-gradient parameters differ", what, flips);
}

/* The backend of every test: the CPU's, or GG_TEST_DEVICE's (test_device.h). */
static gg_backend *cpu(void) { return test_backend(); }

/* ------------------------------------------------------------------------ */

static void parity_one(const char *fix) {
    char path[600];
    int32_t ids[2][24];
    double ref_loss;
    REQUIRE(convert_to(fix, GG_TYPE_F32, path, sizeof path) == 0, "%s: convert", fix);
    REQUIRE(load_ids(fix, ids, &ref_loss) == 0, "%s: reference.json", fix);
    gg_err err;
    gg_file *f = NULL;
    REQUIRE(gg_file_open(&f, path, 0, &err) == 0, "%s", err.msg);
    gg_backend *be = cpu();
    gg_model *m = NULL;
    REQUIRE(gg_model_load(&m, f, be, &err) == 0, "%s", err.msg);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/hf/%s/lora", check_fixtures(), fix);
    gg_adapter *ad = NULL, *rg = load_named(fix, "ref_grads.safetensors", f),
               *rs = load_named(fix, "ref_after_adamw_step.safetensors", f);
    REQUIRE(gg_adapter_load_peft(&ad, dir, f, &err) == 0, "%s", err.msg);
    REQUIRE(rg && rs, "%s: reference gradients / step", fix);

    gg_lora_module *init = modules_of(ad);
    gg_train_cfg cfg = {.max_tokens = 48, .seed = 1};
    gg_trainer *t = NULL;
    REQUIRE(gg_trainer_new(&t, m, &cfg, init, ad->n, &err) == 0, "%s", err.msg);
    batch b = {.n = 0};
    add_sample(&b, ids[0], 24, 10);
    add_sample(&b, ids[1], 24, 10);
    double loss = 0;
    int64_t nt = 0;
    REQUIRE(gg_trainer_micro(t, b.ids, b.pos, b.k_lo, b.tg, b.n, 1.0f / 28, 0, &loss, &nt, &err) == 0, "%s",
            err.msg);
    CHECK(nt == 28, "%s: %lld targets", fix, (long long)nt);
    double l = loss / (double)nt;
    printf("# %s: loss %.9f, reference %.9f (rel %.2g)\n", fix, l, ref_loss, fabs(l - ref_loss) / ref_loss);
    CHECK(fabs(l - ref_loss) <= 1e-4 * ref_loss, "%s: loss %.9f vs %.9f", fix, l, ref_loss);

    gg_lora_module *g = NULL;
    size_t ng = 0;
    REQUIRE(gg_trainer_modules(t, 1, &g, &ng, &err) == 0, "%s", err.msg);
    char what[96];
    snprintf(what, sizeof what, "%s gradients", fix);
    compare_grads(what, g, ng, rg);
    gg_trainer_modules_free(g);

    gg_adamw_hp hp = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0, .grad_scale = 1};
    REQUIRE(gg_trainer_step(t, &hp, &err) == 0, "%s", err.msg);
    REQUIRE(gg_trainer_modules(t, 0, &g, &ng, &err) == 0, "%s", err.msg);
    snprintf(what, sizeof what, "%s after one AdamW step", fix);
    compare_step(what, g, ng, rs, rg);
    gg_trainer_modules_free(g);

    gg_trainer_free(t);
    free(init);
    gg_adapter_free(ad);
    gg_adapter_free(rg);
    gg_adapter_free(rs);
    gg_model_free(m);
    gg_backend_free(be);
    gg_file_close(f);
}

static void test_parity_peft(void) {
    parity_one("llama2-mha");
    parity_one("qwen2-bias-tied");
}

/* ------------------------------------------------------------------------ */
/* Finite differences through the whole model                                 */

typedef struct setup {
    gg_file *f;
    gg_backend *be;
    gg_model *m;
    gg_trainer *t;
    batch b;
} setup;

static int setup_new(setup *s, const char *fix, gg_type type, const gg_train_cfg *cfg_in) {
    memset(s, 0, sizeof *s);
    char path[600];
    gg_err err;
    if (convert_to(fix, type, path, sizeof path)) return -1;
    if (gg_file_open(&s->f, path, 0, &err) || !(s->be = cpu()) || gg_model_load(&s->m, s->f, s->be, &err)) {
        fprintf(stderr, "%s: %s\n", fix, err.msg);
        return -1;
    }
    gg_train_cfg cfg = *cfg_in;
    if (gg_trainer_new(&s->t, s->m, &cfg, NULL, 0, &err)) {
        fprintf(stderr, "%s: %s\n", fix, err.msg);
        return -1;
    }
    /* B starts at zero in PEFT's initialisation: make it random so every
     * path carries gradient. */
    size_t bytes = 0;
    gg_trainer_blob bl[5];
    gg_trainer_state(s->t, bl, 5);
    bytes = bl[0].bytes;
    float *p = malloc(bytes);
    rng_seed(7);
    for (size_t i = 0; i < bytes / 4; i++) p[i] = 0.2f * (float)rng_gauss();
    gg_trainer_state_set(s->t, 0, p, 0, &err);
    free(p);
    int32_t ids[2][24];
    double unused;
    if (load_ids(fix, ids, &unused)) return -1;
    add_sample(&s->b, ids[0], 20, 3);
    add_sample(&s->b, ids[1], 13, 0);
    return 0;
}

static void setup_free(setup *s) {
    gg_trainer_free(s->t);
    gg_model_free(s->m);
    gg_backend_free(s->be);
    gg_file_close(s->f);
}

/* Mean loss at parameters p (host, n floats), with the micro-batch's
 * dropout masks (key 5). Uses micro (with dropout) and discards grads. */
static double loss_at(setup *s, const float *p, size_t np) {
    gg_err err;
    (void)np;
    gg_trainer_state_set(s->t, 0, p, 0, &err);
    double l = 0;
    int64_t nt = 0;
    gg_trainer_micro(s->t, s->b.ids, s->b.pos, s->b.k_lo, s->b.tg, s->b.n, 0.0f, 5, &l, &nt, &err);
    return l / (double)nt;
}

static void fd_one(const char *fix, gg_type type, float dropout) {
    setup s;
    gg_train_cfg cfg = {.r = 3, .alpha = 6, .targets = GG_TARGETS_ALL, .dropout = dropout, .seed = 3,
                        .max_tokens = 40};
    REQUIRE(setup_new(&s, fix, type, &cfg) == 0, "%s setup", fix);
    gg_err err;
    gg_trainer_blob bl[5];
    gg_trainer_state(s.t, bl, 5);
    size_t np = bl[0].bytes / 4;
    float *p0 = malloc(np * 4), *p = malloc(np * 4), *d = malloc(np * 4);
    gg_trainer_state_get(s.t, 0, p0, &err);
    /* gradient at p0 */
    double l = 0;
    int64_t nt = 0;
    gg_trainer_micro(s.t, s.b.ids, s.b.pos, s.b.k_lo, s.b.tg, s.b.n, 1.0f, 5, &l, &nt, &err);
    gg_lora_module *g = NULL;
    size_t ng = 0;
    REQUIRE(gg_trainer_modules(s.t, 1, &g, &ng, &err) == 0, "%s", err.msg);
    const float *gflat = g[0].a; /* modules are contiguous in the block */
    rng_seed(11);
    double worst = 0;
    for (int trial = 0; trial < 3; trial++) {
        double dn = 0, gd = 0;
        for (size_t i = 0; i < np; i++) {
            d[i] = (float)rng_gauss();
            dn += (double)d[i] * d[i];
        }
        dn = sqrt(dn);
        for (size_t i = 0; i < np; i++) {
            d[i] = (float)(d[i] / dn);
            gd += (double)gflat[i] * d[i];
        }
        gd /= (double)nt; /* micro ran with grad_scale 1: Σ loss; loss_at is the mean */
        double h = 3e-3;
        for (size_t i = 0; i < np; i++) p[i] = p0[i] + (float)h * d[i];
        double lp = loss_at(&s, p, np);
        for (size_t i = 0; i < np; i++) p[i] = p0[i] - (float)h * d[i];
        double lm = loss_at(&s, p, np);
        double fd = (lp - lm) / (2 * h);
        double rel = fabs(fd - gd) / fmax(fabs(gd), 1e-3);
        if (rel > worst) worst = rel;
        CHECK(rel <= 2e-2, "%s %s dropout %.2f: directional derivative %.6g, finite difference %.6g", fix,
              gg_type_name(type), dropout, gd, fd);
    }
    printf("# %s %s dropout %.2f: worst finite-difference rel error %.3g\n", fix, gg_type_name(type), dropout, worst);
    gg_trainer_modules_free(g);
    free(p0);
    free(p);
    free(d);
    setup_free(&s);
}

static void test_finite_differences(void) {
    const char *fx[] = {"llama2-mha", "llama3-gqa", "qwen2-bias-tied", "gemma-f32", "falcon7b-style",
                        "falcon40b-style", "mistral-gqa-f16"};
    for (size_t i = 0; i < sizeof fx / sizeof *fx; i++) fd_one(fx[i], GG_TYPE_F32, 0.0f);
    fd_one("llama3-gqa", GG_TYPE_NF4, 0.0f);
    fd_one("llama2-mha", GG_TYPE_F32, 0.25f);
}

/* ------------------------------------------------------------------------ */
/* Batch invariance, checkpointing, 8-bit Adam                                */

static float *grads_flat(gg_trainer *t, size_t *np) {
    gg_err err;
    gg_lora_module *g = NULL;
    size_t ng = 0;
    if (gg_trainer_modules(t, 1, &g, &ng, &err)) return NULL;
    gg_trainer_blob bl[5];
    gg_trainer_state(t, bl, 5);
    *np = bl[0].bytes / 4;
    float *out = malloc(*np * 4);
    memcpy(out, g[0].a, *np * 4);
    gg_trainer_modules_free(g);
    return out;
}

static void test_packing_and_ckpt(void) {
    setup s;
    gg_train_cfg cfg = {.r = 4, .alpha = 8, .targets = GG_TARGETS_ALL, .seed = 9, .max_tokens = 40};
    REQUIRE(setup_new(&s, "llama3-gqa", GG_TYPE_F32, &cfg) == 0, "setup");
    gg_err err;
    double l = 0, la = 0, lb = 0;
    int64_t nt = 0, na = 0, nb = 0;
    gg_trainer_micro(s.t, s.b.ids, s.b.pos, s.b.k_lo, s.b.tg, s.b.n, 0.01f, 0, &l, &nt, &err);
    size_t np;
    float *g_packed = grads_flat(s.t, &np);
    gg_adamw_hp hp0 = {.lr = 0, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .grad_scale = 1};
    gg_trainer_step(s.t, &hp0, &err); /* lr 0: only zeroes the gradients */
    /* the same two samples as two micro-batches */
    batch b1 = {.n = 0}, b2 = {.n = 0};
    int32_t ids[2][24];
    double unused;
    load_ids("llama3-gqa", ids, &unused);
    add_sample(&b1, ids[0], 20, 3);
    add_sample(&b2, ids[1], 13, 0);
    gg_trainer_micro(s.t, b1.ids, b1.pos, b1.k_lo, b1.tg, b1.n, 0.01f, 0, &la, &na, &err);
    gg_trainer_micro(s.t, b2.ids, b2.pos, b2.k_lo, b2.tg, b2.n, 0.01f, 0, &lb, &nb, &err);
    float *g_split = grads_flat(s.t, &np);
    double rel = rel_l2(g_split, g_packed, np);
    printf("# packed vs separate micro-batches: loss %.9g vs %.9g, gradient rel %.3g\n", l, la + lb, rel);
    CHECK(nt == na + nb, "targets %lld vs %lld", (long long)nt, (long long)(na + nb));
    CHECK(fabs(l - (la + lb)) <= 1e-5 * fabs(l), "loss %.9g vs %.9g", l, la + lb);
    CHECK(rel <= 1e-5, "gradient rel %.3g", rel);
    free(g_split);
    setup_free(&s);

    /* gradient checkpointing: bit-identical gradients */
    cfg.grad_ckpt = 1;
    REQUIRE(setup_new(&s, "llama3-gqa", GG_TYPE_F32, &cfg) == 0, "setup");
    gg_trainer_micro(s.t, s.b.ids, s.b.pos, s.b.k_lo, s.b.tg, s.b.n, 0.01f, 0, &l, &nt, &err);
    float *g_ckpt = grads_flat(s.t, &np);
    CHECK(memcmp(g_ckpt, g_packed, np * 4) == 0, "checkpointed gradients differ (rel %.3g)",
          rel_l2(g_ckpt, g_packed, np));
    free(g_ckpt);
    free(g_packed);
    setup_free(&s);
}

static void test_adam8bit(void) {
    setup s32, s8;
    gg_train_cfg cfg = {.r = 4, .alpha = 8, .targets = GG_TARGETS_ALL, .seed = 9, .max_tokens = 40};
    REQUIRE(setup_new(&s32, "llama2-mha", GG_TYPE_F32, &cfg) == 0, "setup");
    cfg.optim_8bit = 1;
    REQUIRE(setup_new(&s8, "llama2-mha", GG_TYPE_F32, &cfg) == 0, "setup");
    gg_err err;
    double first = 0, last32 = 0, last8 = 0;
    gg_adamw_hp hp = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .grad_scale = 1};
    for (int step = 0; step < 20; step++) {
        double l32 = 0, l8 = 0;
        int64_t nt = 0;
        gg_trainer_micro(s32.t, s32.b.ids, s32.b.pos, s32.b.k_lo, s32.b.tg, s32.b.n, 1.0f / 31, 0, &l32, &nt, &err);
        gg_trainer_micro(s8.t, s8.b.ids, s8.b.pos, s8.b.k_lo, s8.b.tg, s8.b.n, 1.0f / 31, 0, &l8, &nt, &err);
        gg_trainer_step(s32.t, &(gg_adamw_hp){.lr = hp.lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .grad_scale = 1},
                        &err);
        gg_trainer_step(s8.t, &(gg_adamw_hp){.lr = hp.lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .grad_scale = 1},
                        &err);
        if (step == 0) first = l32 / (double)nt;
        last32 = l32 / (double)nt;
        last8 = l8 / (double)nt;
    }
    printf("# 20 steps: loss %.4f -> f32 Adam %.4f, 8-bit Adam %.4f\n", first, last32, last8);
    CHECK(last32 < first - 0.3, "f32 Adam did not learn: %.4f -> %.4f", first, last32);
    CHECK(fabs(last8 - last32) <= 0.05 * (first - last32), "8-bit Adam %.4f vs f32 %.4f", last8, last32);
    gg_train_mem m32, m8;
    gg_trainer_mem(s32.t, &m32);
    gg_trainer_mem(s8.t, &m8);
    CHECK(m8.optim < 0.3 * m32.optim, "8-bit state %.0f B vs %.0f B", m8.optim, m32.optim);
    setup_free(&s32);
    setup_free(&s8);
}

/* ------------------------------------------------------------------------ */
/* The same through the ggtrain tool: --metrics, --dump-grads, --peft-out      */

static void test_tool_parity(void) {
    const char *bin = getenv("GG_BIN");
    char exe[600], model[600], data[600], cmd[4096], p[700];
    snprintf(exe, sizeof exe, "%s/ggtrain", bin && *bin ? bin : "bin");
    if (access(exe, X_OK) != 0) {
        printf("skip: %s not built\n", exe);
        return;
    }
    int32_t ids[2][24];
    double ref_loss;
    REQUIRE(convert_to("llama2-mha", GG_TYPE_F32, model, sizeof model) == 0, "convert");
    REQUIRE(load_ids("llama2-mha", ids, &ref_loss) == 0, "reference.json");
    snprintf(data, sizeof data, "%s/pre.jsonl", tmpdir);
    FILE *f = fopen(data, "w");
    REQUIRE(f, "%s", data);
    for (int sq = 0; sq < 2; sq++) {
        fputs("{\"input_ids\": [", f);
        for (int i = 0; i < 24; i++) fprintf(f, "%s%d", i ? ", " : "", ids[sq][i]);
        fputs("], \"labels\": [", f);
        for (int i = 0; i < 24; i++) fprintf(f, "%s%d", i ? ", " : "", i < 10 ? -100 : ids[sq][i]);
        fputs("]}\n", f);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "'%s' -q -m '%s' -d '%s' -o '%s/tool.gg' --format pretokenized --init-adapter '%s/hf/llama2-mha/lora' "
             "--micro-batch 2 --grad-accum 1 --max-steps 1 --lr 1e-3 --schedule constant --warmup 0 "
             "--weight-decay 0 --max-grad-norm 0 --lora-dropout 0 --no-shuffle --metrics '%s/m.jsonl' "
             "--dump-grads '%s/tool-grads.d/adapter_model.safetensors' --peft-out '%s/tool-peft'",
             exe, model, data, tmpdir, check_fixtures(), tmpdir, tmpdir, tmpdir);
    snprintf(p, sizeof p, "%s/tool-grads.d", tmpdir);
    mkdir(p, 0700);
    REQUIRE(system(cmd) == 0, "%s", cmd);
    /* the first metrics row's loss */
    snprintf(p, sizeof p, "%s/m.jsonl", tmpdir);
    json_error_t je;
    json_t *row = json_load_file(p, JSON_DISABLE_EOF_CHECK, &je);
    REQUIRE(row, "%s: %s", p, je.text);
    double loss = json_real_value(json_object_get(row, "loss"));
    json_decref(row);
    printf("# ggtrain: first loss %.9f, reference %.9f\n", loss, ref_loss);
    CHECK(fabs(loss - ref_loss) <= 1e-4 * ref_loss, "loss %.9f vs %.9f", loss, ref_loss);
    /* gradients and the adapter after the step, read back as PEFT adapters */
    gg_err err;
    gg_file *base = NULL;
    REQUIRE(gg_file_open(&base, model, 0, &err) == 0, "%s", err.msg);
    char src[700], dst[700];
    snprintf(src, sizeof src, "%s/hf/llama2-mha/lora/adapter_config.json", check_fixtures());
    snprintf(dst, sizeof dst, "%s/tool-grads.d/adapter_config.json", tmpdir);
    char *rs = realpath(src, NULL);
    REQUIRE(rs && symlink(rs, dst) == 0, "symlink");
    free(rs);
    gg_adapter *g = NULL, *after = NULL, *rg = load_named("llama2-mha", "ref_grads.safetensors", base),
               *rstep = load_named("llama2-mha", "ref_after_adamw_step.safetensors", base);
    snprintf(p, sizeof p, "%s/tool-grads.d", tmpdir);
    REQUIRE(gg_adapter_load_peft(&g, p, base, &err) == 0, "--dump-grads: %s", err.msg);
    snprintf(p, sizeof p, "%s/tool-peft", tmpdir);
    REQUIRE(gg_adapter_load_peft(&after, p, base, &err) == 0, "--peft-out: %s", err.msg);
    REQUIRE(rg && rstep, "references");
    gg_lora_module *gm = modules_of(g), *am = modules_of(after);
    compare_grads("ggtrain --dump-grads", gm, g->n, rg);
    compare_step("ggtrain --peft-out", am, after->n, rstep, rg);
    free(gm);
    free(am);
    gg_adapter_free(g);
    gg_adapter_free(after);
    gg_adapter_free(rg);
    gg_adapter_free(rstep);
    gg_file_close(base);
}

int main(void) {
    if (!check_have_fixture("hf/llama2-mha/lora/ref_grads.safetensors")) return check_done();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gg-test-train-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    gg_backend *probe = cpu(); /* the device can be made (else every test would fail on NULL) */
    if (!probe) {
        rmdir(tmpdir);
        return 1;
    }
    gg_backend_free(probe);
    if (!test_device_is_cpu()) printf("# device %s\n", test_device());
    RUN(test_parity_peft);
    RUN(test_finite_differences);
    RUN(test_packing_and_ckpt);
    RUN(test_adam8bit);
    RUN(test_tool_parity);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) {
    }
    return check_done();
}

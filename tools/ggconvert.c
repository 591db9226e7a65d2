/* ggconvert — a Hugging Face checkpoint folder → one .gg file, or a PEFT
 * LoRA adapter folder → one .gg adapter file for a given base.
 *
 *   ggconvert [-t nf4|q8|bf16|f16|f32] [-o OUT.gg] [--embed-type T|source]
 *             [--fallback-type T|source] [--threads N] [--align N] [-q] HF_DIR
 *   ggconvert --lora PEFT_DIR --base BASE.gg [-o OUT.gg] [-q]
 *
 * Flags and printing only; the conversions are convert/convert.c and
 * convert/adapter.c. */
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/adapter.h"
#include "convert/convert.h"
#include "ggfmt/ggfmt.h"
#include "tools/common.h"

static const char *TOOL = "ggconvert";

static void usage(FILE *f) {
    fprintf(f,
            "usage: ggconvert [options] HF_DIR\n"
            "       ggconvert --lora PEFT_DIR --base BASE.gg [-o OUT.gg] [-q]\n"
            "Convert a Hugging Face checkpoint folder (config.json + safetensors) to a .gg file,\n"
            "or a PEFT LoRA adapter folder to a .gg adapter for the base model it was trained on.\n"
            "\n"
            "  -t, --type T           linear weights: nf4 (default), q8, bf16, f16, f32\n"
            "  -o, --output OUT.gg    output file (default: ./<HF_DIR name>-<type>.gg)\n"
            "      --embed-type T     embeddings and lm_head: f32, f16, bf16, q8, nf4 or source\n"
            "                         (default: the -t type when it is a float type, else the\n"
            "                         checkpoint's own float type, as QLoRA keeps them)\n"
            "      --fallback-type T  linear weights whose shape does not fit -t (an input\n"
            "                         dimension that is not a multiple of 64): f32, f16, bf16\n"
            "                         or source (default: source)\n"
            "      --threads N        worker threads (default: number of cores)\n"
            "      --align N          tensor data alignment in bytes (default 64)\n"
            "  -q, --quiet            no progress and no notes; errors and the final line only\n"
            "      --lora PEFT_DIR    convert a PEFT LoRA adapter (adapter_config.json +\n"
            "                         adapter_model.safetensors) instead of a checkpoint\n"
            "      --base BASE.gg     with --lora: the converted base model the adapter is for;\n"
            "                         every shape is checked against it and its fingerprint is\n"
            "                         recorded (default output: ./<PEFT_DIR name>-adapter.gg)\n"
            "  -h, --help             this help\n"
            "      --version          print the version\n"
            "\n"
            "Norms and biases are stored f32. Tokenizer and config files are stored in the\n"
            "metadata verbatim. Supported: LlamaForCausalLM, MistralForCausalLM,\n"
            "Qwen2ForCausalLM, GemmaForCausalLM, FalconForCausalLM. Adapters: LoRA on any of the\n"
            "decoder's linear layers (Falcon's query_key_value is split into q, k, v like the\n"
            "base weight); rank_pattern, alpha_pattern and use_rslora are honoured; DoRA,\n"
            "biases, modules_to_save and embedding LoRA are refused. Exit status 0 on\n"
            "success, 1 on any error, with no output file left behind.\n");
}

static char *g_tmp_path; /* OUT.tmp, unlinked on SIGINT/SIGTERM/SIGHUP */
static void on_signal(int sig) {
    if (g_tmp_path) unlink(g_tmp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_progress(void *ctx, uint64_t done, uint64_t total) {
    char a[32], b[32];
    fprintf(stderr, "\rggconvert: %3.0f%%  %s / %s   ", total ? 100.0 * (double)done / (double)total : 100.0,
            gg_human_bytes(done, a), gg_human_bytes(total, b));
    if (done >= total) fputc('\n', stderr);
}

static int notes;
static void on_note(void *ctx, const char *tensor, const char *why, gg_type stored_as) {
    if (++notes <= 4) fprintf(stderr, "ggconvert: note: %s: %s; stored as %s\n", tensor, why, gg_type_name(stored_as));
}

static void parse_rule(const char *s, const char *flag, int allow_quant, gg_type_rule *rule, gg_type *t) {
    if (!strcmp(s, "source")) {
        *rule = GG_RULE_SOURCE;
        return;
    }
    if (gg_type_from_name(s, t) || (!allow_quant && gg_type_is_quantized(*t)))
        gg_die(TOOL, "%s '%s': expected one of f32, f16, bf16%s, source", flag, s, allow_quant ? ", q8, nf4" : "");
    *rule = GG_RULE_TYPE;
}

/* --lora: PEFT folder + base .gg → .gg adapter. */
static int convert_lora(const char *peft_dir, const char *base_path, const char *out_path) {
    char default_out[4096];
    if (!out_path) {
        char *d = strdup(peft_dir);
        if (!d) gg_die(TOOL, "out of memory");
        size_t n = strlen(d);
        while (n > 1 && d[n - 1] == '/') d[--n] = 0;
        snprintf(default_out, sizeof default_out, "%s-adapter.gg", basename(d));
        free(d);
        out_path = default_out;
    }
    if (asprintf(&g_tmp_path, "%s.tmp", out_path) < 0) gg_die(TOOL, "out of memory");
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);

    double t0 = gg_now();
    gg_err err;
    gg_file *base;
    gg_adapter *a;
    if (gg_file_open(&base, base_path, 0, &err)) gg_die(TOOL, "%s", err.msg);
    if (gg_adapter_load_peft(&a, peft_dir, base, &err)) gg_die(TOOL, "%s", err.msg);
    gg_file_close(base);
    if (gg_adapter_save_gg(a, out_path, &err)) gg_die(TOOL, "%s", err.msg);
    double secs = gg_now() - t0;
    struct stat sb;
    uint64_t size = stat(out_path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    int64_t rmin = a->r, rmax = a->r;
    size_t own_alpha = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (a->t[i].r < rmin) rmin = a->t[i].r;
        if (a->t[i].r > rmax) rmax = a->t[i].r;
        if (a->t[i].alpha != a->alpha) own_alpha++;
    }
    char rs[64], as[64], b[32];
    if (rmin == rmax) snprintf(rs, sizeof rs, "r %lld", (long long)rmin);
    else snprintf(rs, sizeof rs, "r %lld..%lld", (long long)rmin, (long long)rmax);
    if (own_alpha) snprintf(as, sizeof as, "alpha %g (%zu modules their own)", a->alpha, own_alpha);
    else snprintf(as, sizeof as, "alpha %g", a->alpha);
    fprintf(stderr, "ggconvert: wrote %s (%s adapter, %zu target modules, %s, %s%s): output %s, %.2f s\n", out_path,
            a->arch, a->n, rs, as, a->rslora ? ", rslora" : "", gg_human_bytes(size, b), secs);
    gg_adapter_free(a);
    return 0;
}

int main(int argc, char **argv) {
    gg_convert_opts o = {.type = GG_TYPE_NF4, .embed_rule = GG_RULE_DEFAULT, .fallback_rule = GG_RULE_SOURCE};
    long threads = sysconf(_SC_NPROCESSORS_ONLN), align = GG_DEFAULT_ALIGN;
    int quiet = 0;
    const char *lora_dir = NULL, *base_path = NULL, *model_flag = NULL; /* model_flag: a flag --lora rejects */
    enum { O_EMBED = 256, O_FALLBACK, O_THREADS, O_ALIGN, O_VERSION, O_LORA, O_BASE };
    static const struct option opts[] = {
        {"type", required_argument, 0, 't'},
        {"output", required_argument, 0, 'o'},
        {"embed-type", required_argument, 0, O_EMBED},
        {"fallback-type", required_argument, 0, O_FALLBACK},
        {"threads", required_argument, 0, O_THREADS},
        {"align", required_argument, 0, O_ALIGN},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, O_VERSION},
        {"lora", required_argument, 0, O_LORA},
        {"base", required_argument, 0, O_BASE},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "t:o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            model_flag = "-t";
            if (gg_type_from_name(optarg, &o.type))
                gg_die(TOOL, "-t '%s': expected one of nf4, q8, bf16, f16, f32", optarg);
            break;
        case 'o': o.out_path = optarg; break;
        case O_EMBED: model_flag = "--embed-type"; parse_rule(optarg, "--embed-type", 1, &o.embed_rule, &o.embed_type); break;
        case O_FALLBACK: model_flag = "--fallback-type"; parse_rule(optarg, "--fallback-type", 0, &o.fallback_rule, &o.fallback_type); break;
        case O_THREADS:
            model_flag = "--threads";
            if (gg_parse_int(optarg, 1, 1024, &threads))
                gg_die(TOOL, "--threads '%s': expected an integer in 1..1024", optarg);
            break;
        case O_ALIGN:
            model_flag = "--align";
            if (gg_parse_int(optarg, 8, 1 << 20, &align) || (align & (align - 1)))
                gg_die(TOOL, "--align '%s': expected a power of two in 8..1048576", optarg);
            break;
        case 'q': quiet = 1; break;
        case O_LORA: lora_dir = optarg; break;
        case O_BASE: base_path = optarg; break;
        case 'h': usage(stdout); return 0;
        case O_VERSION: printf("ggconvert %s\n", GG_VERSION_STRING); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (lora_dir) {
        if (!base_path) gg_die(TOOL, "--lora needs --base BASE.gg (the converted model the adapter is for)");
        if (model_flag) gg_die(TOOL, "%s does not apply to --lora (it is for checkpoint conversion)", model_flag);
        if (optind != argc)
            gg_die(TOOL, "--lora takes no HF_DIR argument (got '%s')", argv[optind]);
        return convert_lora(lora_dir, base_path, o.out_path);
    }
    if (base_path) gg_die(TOOL, "--base applies only with --lora PEFT_DIR");
    if (optind != argc - 1) {
        fprintf(stderr, "ggconvert: %s\n", optind >= argc ? "missing HF_DIR" : "exactly one HF_DIR expected");
        usage(stderr);
        return 1;
    }
    o.hf_dir = argv[optind];
    o.threads = threads < 1 ? 1 : (int)threads;
    o.alignment = (uint32_t)align;
    char default_out[4096];
    if (!o.out_path) {
        char *d = strdup(o.hf_dir);
        size_t n = strlen(d);
        while (n > 1 && d[n - 1] == '/') d[--n] = 0;
        snprintf(default_out, sizeof default_out, "%s-%s.gg", basename(d), gg_type_name(o.type));
        free(d);
        o.out_path = default_out;
    }
    if (!quiet) {
        o.note = on_note;
        if (isatty(2)) o.progress = on_progress;
    }
    if (asprintf(&g_tmp_path, "%s.tmp", o.out_path) < 0) gg_die(TOOL, "out of memory");
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);

    double t0 = gg_now();
    gg_convert_stats s;
    gg_err err;
    if (gg_convert(&o, &s, &err)) gg_die(TOOL, "%s", err.msg);
    double secs = gg_now() - t0;
    if (notes > 4) fprintf(stderr, "ggconvert: note: %d more tensors stored with the fallback type\n", notes - 4);
    char a[32], b[32];
    fprintf(stderr, "ggconvert: wrote %s (%s, %zu tensors): input %s, output %s, %.2f s, %.0f MB/s\n",
            o.out_path, gg_type_name(o.type), s.n_tensors, gg_human_bytes(s.input_bytes, a),
            gg_human_bytes(s.output_bytes, b), secs, (double)s.input_bytes / 1e6 / secs);
    return 0;
}

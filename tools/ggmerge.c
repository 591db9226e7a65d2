/* ggmerge — merge LoRA adapters into a base .gg model:
 *
 *   ggmerge -m BASE.gg -a ADAPTER[:SCALE]... -o OUT.gg [-t nf4|q8|bf16|f16|f32]
 *           [--hf-out DIR [--hf-type T] [--shard-mb N]] [--gguf-out FILE [--gguf-type T]]
 *           [--force] [--threads N] [-v] [-q]
 *   ggmerge -m BASE.gg -a ADAPTER --peft-out DIR
 *
 * Flags and printing only; the merge is convert/merge.c, the Hugging Face
 * export convert/hf_export.c, the PEFT export convert/adapter.c. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/merge.h"
#include "ggfmt/ggfmt.h"
#include "convert/adapter.h"
#include "convert/safetensors.h"
#include "convert/gguf.h"
#include "convert/hf_export.h"
#include "tools/common.h"
#include "tools/engine.h"

static const char *TOOL = "ggmerge";

static void usage(FILE *f) {
    fprintf(f,
            "usage: ggmerge -m BASE.gg -a ADAPTER[:SCALE]... -o OUT.gg [options]\n"
            "Merge LoRA adapters into a base model: W' = W + sum of SCALE * alpha/r * B A over the\n"
            "adapters, for every adapted linear weight. A quantized weight is dequantized, merged\n"
            "and quantized again; the part of the adapter's delta lost to that is measured.\n"
            "\n"
            "  -m, --model BASE.gg     the base model (required)\n"
            "  -a, --adapter A[:S]     a .gg adapter or a PEFT folder, with a scale S (default 1);\n"
            "                          repeat to merge several (required, at least one, except\n"
            "                          to export BASE itself with --hf-out / --gguf-out and no -o)\n"
            "  -o, --output OUT.gg     the merged model (required); written to OUT.gg.tmp, then\n"
            "                          renamed: a failure leaves no file\n"
            "      --hf-out DIR        also write the merged model as a Hugging Face checkpoint\n"
            "                          (config.json, safetensors with HF names, tokenizer files)\n"
            "      --hf-type T         its weights' type: bf16, f16 or f32 (default bf16)\n"
            "      --shard-mb N        split its safetensors into files of at most N MB (default 0:\n"
            "                          one file)\n"
            "      --gguf-out FILE     also write the merged model as GGUF for llama.cpp (llama,\n"
            "                          mistral, qwen2; the tokenizer when the model has one)\n"
            "      --gguf-type T       its weights' type: f16, q8_0, q4_0 or f32 (default f16; nf4\n"
            "                          has no GGUF equivalent: q8_0 keeps the merge best, q4_0\n"
            "                          is as small but rounds coarser than nf4)\n"
            "      --peft-out DIR      write the one adapter given as a PEFT folder\n"
            "                          (adapter_config.json + adapter_model.safetensors) for BASE;\n"
            "                          with it, -o is optional (no merge then)\n"
            "  -t, --type T            store every linear weight of the layers as T: nf4, q8, bf16,\n"
            "                          f16 or f32 (default: each tensor keeps the base's type, with a\n"
            "                          warning giving the delta lost when that type is quantized)\n"
            "      --force             merge an adapter whose base fingerprint or architecture\n"
            "                          differs from the base's when all its shapes match\n"
            "                          (default: refuse it)\n"
            "      --threads N         worker threads (default: number of cores)\n"
            "  -v, --verbose           one line per merged tensor: types, norms, lost fraction\n"
            "  -q, --quiet             no notes or warnings; errors and the summary only\n"
            "  -h, --help              this help\n"
            "      --version           print the version\n"
            "\n"
            "Every metadata key of the base is kept; model.fingerprint gets a new value (a merged\n"
            "model is another model: adapters made for the base are refused on it unless --force),\n"
            "and merge.adapters / merge.base_fingerprint record the provenance. The summary line\n"
            "gives the tensors merged and the worst and mean lost fraction\n"
            "|Q(W+D) - Q(W) - D| / |D| (0 for f32; above 1 when requantizing moves the weights\n"
            "by more than the delta D itself, as an nf4 base does to a small delta). Exit status\n"
            "0 on success, 1 on any error.\n");
}

typedef struct ui {
    int verbose, quiet;
} ui;

static void on_tensor(void *ctx, const gg_merge_tensor *t) {
    ui *u = ctx;
    if (!u->verbose) return;
    fprintf(stderr, "ggmerge: %-28s %-4s -> %-4s |W| %.4g |D| %.4g lost %.4f\n", t->name, gg_type_name(t->from),
            gg_type_name(t->to), t->weight_norm, t->delta_norm, t->lost);
}

static void on_note(void *ctx, const char *msg) {
    ui *u = ctx;
    if (!u->quiet) fprintf(stderr, "ggmerge: note: %s\n", msg);
}

/* Ctrl-C / SIGTERM: remove OUT.tmp (the writer's temporary name) or the
 * stage folder of --hf-out / --peft-out, and exit; a finished OUT or DIR has
 * already been renamed into place and is kept. */
static char tmp_path[4200], gguf_tmp[4200];
static void on_signal(int sig) {
    if (tmp_path[0]) unlink(tmp_path);
    if (gguf_tmp[0]) unlink(gguf_tmp);
    const char *stage = gg_dir_stage_active();
    if (stage[0]) gg_dir_abort_signal(stage);
    _exit(128 + sig);
}

enum { O_FORCE = 256, O_THREADS, O_VERSION, O_HF_OUT, O_HF_TYPE, O_SHARD, O_PEFT_OUT, O_GGUF_OUT, O_GGUF_TYPE };

/* --gguf-out: the merged model as GGUF. */
static void write_gguf(const char *gg_path, const char *path, gg_gguf_type t) {
    gg_err err;
    gg_file *f = NULL;
    double t0 = gg_now();
    if (gg_file_open(&f, gg_path, 0, &err) || gg_gguf_export(f, path, t, &err)) gg_die(TOOL, "--gguf-out: %s", err.msg);
    gg_file_close(f);
    fprintf(stderr, "ggmerge: wrote %s (GGUF, %s, %.2f s)\n", path, gg_gguf_type_name(t),
            gg_now() - t0);
}

/* --peft-out: the adapter, checked against the base, as a PEFT folder. */
static void write_peft(const char *base_path, const char *adapter_path, const char *dir) {
    gg_err err;
    gg_file *base = NULL;
    gg_adapter *a = NULL;
    struct stat st;
    if (gg_file_open(&base, base_path, 0, &err)) gg_die(TOOL, "%s", err.msg);
    if (stat(adapter_path, &st)) gg_die(TOOL, "adapter '%s': no such file or folder", adapter_path);
    if ((S_ISDIR(st.st_mode) ? gg_adapter_load_peft(&a, adapter_path, base, &err)
                             : gg_adapter_load_gg(&a, adapter_path, &err)) ||
        gg_adapter_save_peft_base(a, dir, NULL, base, &err))
        gg_die(TOOL, "--peft-out: %s", err.msg);
    fprintf(stderr, "ggmerge: wrote %s (PEFT adapter, %zu modules, r %lld)\n", dir, a->n, (long long)a->r);
    gg_adapter_free(a);
    gg_file_close(base);
}

/* --hf-out: the merged model as a Hugging Face checkpoint. */
static void write_hf(const char *gg_path, const char *dir, gg_type t, long shard_mb) {
    gg_err err;
    gg_file *f = NULL;
    double t0 = gg_now();
    if (gg_file_open(&f, gg_path, 0, &err) || gg_hf_export(f, dir, t, (size_t)shard_mb * 1000000, &err))
        gg_die(TOOL, "--hf-out: %s", err.msg);
    gg_file_close(f);
    fprintf(stderr, "ggmerge: wrote %s (Hugging Face checkpoint, %s, %.2f s)\n", dir, gg_type_name(t), gg_now() - t0);
}

static gg_merge_adapter *ads; /* the -a arguments (file scope: still reachable at gg_die) */

int main(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *hf_out = NULL, *peft_out = NULL, *gguf_out = NULL;
    gg_gguf_type gguf_type = GG_GGUF_F16;
    gg_type hf_type = GG_TYPE_BF16;
    long shard_mb = 0;
    ads = calloc((size_t)argc, sizeof *ads);
    size_t nads = 0;
    gg_merge_opts o = {0};
    ui u = {0};
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    if (!ads) gg_die(TOOL, "out of memory");
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"adapter", required_argument, 0, 'a'},
        {"output", required_argument, 0, 'o'},  {"type", required_argument, 0, 't'},
        {"force", no_argument, 0, O_FORCE},     {"threads", required_argument, 0, O_THREADS},
        {"verbose", no_argument, 0, 'v'},       {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},          {"version", no_argument, 0, O_VERSION},
        {"hf-out", required_argument, 0, O_HF_OUT}, {"hf-type", required_argument, 0, O_HF_TYPE},
        {"shard-mb", required_argument, 0, O_SHARD}, {"peft-out", required_argument, 0, O_PEFT_OUT},
        {"gguf-out", required_argument, 0, O_GGUF_OUT}, {"gguf-type", required_argument, 0, O_GGUF_TYPE},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "m:a:o:t:vqh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'a': {
            char *path;
            gg_err err;
            if (gg_tool_adapter_arg(optarg, &path, &ads[nads].scale, &err)) gg_die(TOOL, "%s", err.msg);
            ads[nads++].path = path;
            break;
        }
        case 'o': out = optarg; break;
        case 't':
            if (gg_type_from_name(optarg, &o.type))
                gg_die(TOOL, "-t '%s': expected one of nf4, q8, bf16, f16, f32", optarg);
            o.set_type = 1;
            break;
        case O_FORCE: o.force = 1; break;
        case O_THREADS:
            if (gg_parse_int(optarg, 1, 1024, &threads))
                gg_die(TOOL, "--threads '%s': expected an integer in 1..1024", optarg);
            break;
        case O_HF_OUT: hf_out = optarg; break;
        case O_HF_TYPE:
            if (gg_type_from_name(optarg, &hf_type) || gg_type_is_quantized(hf_type))
                gg_die(TOOL, "--hf-type '%s': expected bf16, f16 or f32", optarg);
            break;
        case O_SHARD:
            if (gg_parse_int(optarg, 0, 1000000, &shard_mb))
                gg_die(TOOL, "--shard-mb '%s': expected an integer in 0..1000000", optarg);
            break;
        case O_PEFT_OUT: peft_out = optarg; break;
        case O_GGUF_OUT: gguf_out = optarg; break;
        case O_GGUF_TYPE:
            if (!strcmp(optarg, "f16")) gguf_type = GG_GGUF_F16;
            else if (!strcmp(optarg, "f32")) gguf_type = GG_GGUF_F32;
            else if (!strcmp(optarg, "q8_0")) gguf_type = GG_GGUF_Q8_0;
            else if (!strcmp(optarg, "q4_0")) gguf_type = GG_GGUF_Q4_0;
            else gg_die(TOOL, "--gguf-type '%s': expected f16, q8_0, q4_0 or f32", optarg);
            break;
        case 'v': u.verbose = 1; break;
        case 'q': u.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        case O_VERSION: printf("ggmerge %s\n", GG_VERSION_STRING); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind < argc) gg_die(TOOL, "unexpected argument '%s' (see --help)", argv[optind]);
    if (!model) gg_die(TOOL, "no base model: give -m BASE.gg (see --help)");
    if (gguf_out && (size_t)snprintf(gguf_tmp, sizeof gguf_tmp, "%s.tmp", gguf_out) >= sizeof gguf_tmp)
        gg_die(TOOL, "--gguf-out: path too long");
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (!nads && !out && (hf_out || gguf_out)) { /* export the base as it is */
        if (hf_out) write_hf(model, hf_out, hf_type, shard_mb);
        if (gguf_out) write_gguf(model, gguf_out, gguf_type);
        return 0;
    }
    if (!nads) gg_die(TOOL, "no adapter: give -a ADAPTER[:SCALE] (see --help)");
    if (peft_out) {
        if (nads != 1) gg_die(TOOL, "--peft-out converts one adapter; %zu given", nads);
        write_peft(model, ads[0].path, peft_out);
        if (!out) {
            free((char *)ads[0].path);
            free(ads);
            return 0;
        }
    }
    if (!out) gg_die(TOOL, "no output: give -o OUT.gg (see --help)");

    if (strlen(out) + 5 > sizeof tmp_path) gg_die(TOOL, "-o: path too long");
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", out);
    o.base_path = model;
    o.out_path = out;
    o.adapters = ads;
    o.n_adapters = nads;
    o.threads = threads < 1 ? 1 : (int)threads;
    o.on_tensor = on_tensor;
    o.note = on_note;
    o.ctx = &u;
    gg_merge_stats st;
    gg_err err;
    double t0 = gg_now();
    int rc = gg_merge(&o, &st, &err);
    for (size_t i = 0; i < nads; i++) free((char *)ads[i].path);
    free(ads);
    if (rc) gg_die(TOOL, "%s", err.msg);
    char hb[32];
    if (st.n_quantized && !o.set_type && !u.quiet)
        fprintf(stderr,
                "ggmerge: warning: %zu merged tensors kept the base's quantized type and lose a mean %.1f%% "
                "(worst %.1f%%) of the adapters' delta%s; -t f16 or -t f32 keeps it\n",
                st.n_quantized, 100 * st.qlost_mean, 100 * st.qlost_max,
                st.qlost_max > 1 ? " (over 100%: requantizing moved the weights by more than the delta)" : "");
    fprintf(stderr,
            "ggmerge: wrote %s (%zu tensors, %zu merged from %zu adapter%s, %zu retyped): lost fraction worst "
            "%.4f%s%s%s, mean %.4f; fingerprint %016llx; %s, %.2f s\n",
            out, st.n_tensors, st.n_merged, nads, nads == 1 ? "" : "s", st.n_retyped, st.lost_max,
            st.worst[0] ? " (" : "", st.worst, st.worst[0] ? ")" : "", st.lost_mean,
            (unsigned long long)st.fingerprint, gg_human_bytes(st.output_bytes, hb), gg_now() - t0);
    if (hf_out) write_hf(out, hf_out, hf_type, shard_mb);
    if (gguf_out) write_gguf(out, gguf_out, gguf_type);
    return 0;
}

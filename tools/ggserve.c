/* ggserve — an OpenAI-compatible HTTP server for a .gg model and any number
 * of LoRA adapters, chosen per request, batched together.
 *
 *   ggserve -m MODEL.gg [--lora NAME=PATH[:SCALE]]... [--host H] [--port P]
 *           [--api-key KEY] [--parallel N] [--ctx N] ...
 *
 * Flags and wiring only: the HTTP layer is serve/, the batching
 * models/sched.c. Prints "listening on http://HOST:PORT" on stderr when
 * ready; SIGINT / SIGTERM end it cleanly. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "models/chat.h"
#include "models/sched.h"
#include "models/tokenizer.h"
#include "serve/server.h"
#include "tools/common.h"
#include "tools/engine.h"

static const char *TOOL = "ggserve";
#define MAX_LORA 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: ggserve -m MODEL.gg [options]\n"
            "Serve a model and its LoRA adapters over HTTP with the OpenAI API\n"
            "(/v1/completions, /v1/chat/completions, /v1/models, ...); see docs/SERVE.md.\n"
            "\n"
            "  -m, --model FILE          the .gg base model (with its tokenizer)\n"
            "      --name NAME           the base model's id in the API (default: the file\n"
            "                            name without .gg)\n"
            "      --lora NAME=PATH[:S]  serve adapter PATH (.gg file or PEFT folder) as model\n"
            "                            NAME, with scale S (default 1); repeatable\n"
            "      --host ADDR           address to listen on (default 127.0.0.1)\n"
            "      --port N              port (default 8080; 0: any free port)\n"
            "      --api-key KEY         require \"Authorization: Bearer KEY\" (default: the\n"
            "                            GGSERVE_API_KEY environment variable, else none)\n"
            "      --admin-key KEY       key for POST/DELETE /v1/adapters (default: --api-key)\n"
            "      --adapter-dir DIR     POST /v1/adapters may load adapters from DIR only\n"
            "                            (default: loading at run time is off)\n"
            "      --parallel N          sequences batched together (slots) (default 4)\n"
            "      --ctx N               tokens per slot, prompt + completion (default: the\n"
            "                            model's context, at most 4096)\n"
            "      --batch N             most tokens in one batched forward (default 512)\n"
            "      --queue N             requests that may wait for a slot; more get 503\n"
            "                            (default 64)\n"
            "      --max-tokens N        completion length when a /v1/completions request\n"
            "                            gives none (default 16)\n"
            "      --max-body BYTES      largest request body (default 1048576)\n"
            "      --timeout S           close connections idle for S seconds (default 600)\n"
            "      --http-threads N      HTTP threads (default 2)\n"
            "      --max-conns N         open connections at most (default 4096)\n"
            "  -t, --threads N           CPU compute threads (default: number of cores)\n"
            "      --device D            cpu (default) or cuda\n"
            "      --int8-matmul         steps of many tokens on q8/nf4 weights with 8-bit\n"
            "                            activations and int8 dot products (faster prompts;\n"
            "                            logits move by the 8-bit rounding)\n"
            "      --chat-template T     chat template: alpaca, chatml, llama2, llama3 or a\n"
            "                            Jinja file (default: the model's own)\n"
            "  -q, --quiet               no startup lines except \"listening on\"\n"
            "  -v, --verbose             log each request and connection problems\n"
            "  -h, --help                this help\n"
            "      --version             print the version\n");
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = gg_read_stream(f, NULL);
    fclose(f);
    return b;
}

typedef struct loader {
    gg_model *m;
    gg_file *f;
} loader;

static int load_adapter(void *ctx, const char *path, gg_lora **out, gg_err *err) {
    loader *l = ctx;
    return gg_tool_load_adapter(out, l->m, l->f, path, err);
}

static long int_arg(const char *opt, const char *s, long lo, long hi) {
    long v;
    if (gg_parse_int(s, lo, hi, &v)) gg_die(TOOL, "%s: '%s' is not a number from %ld to %ld", opt, s, lo, hi);
    return v;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *device = "cpu", *template_arg = NULL, *name = NULL;
    const char *loras[MAX_LORA];
    int nlora = 0, quiet = 0, verbose = 0, int8 = 0;
    long threads = 0;
    gg_srv_opts so;
    gg_srv_opts_default(&so);
    gg_sched_opts sch;
    gg_sched_opts_default(&sch);
    so.api_key = getenv("GGSERVE_API_KEY");
    enum { O_LORA = 256, O_HOST, O_PORT, O_APIKEY, O_ADMINKEY, O_ADIR, O_PARALLEL, O_CTX, O_BATCH, O_QUEUE, O_MAXBODY,
           O_TIMEOUT, O_HTTPT, O_MAXCONN, O_DEVICE, O_TEMPLATE, O_VERSION, O_NAME, O_MAXTOK, O_INT8 };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},        {"lora", required_argument, 0, O_LORA},
        {"host", required_argument, 0, O_HOST},      {"port", required_argument, 0, O_PORT},
        {"api-key", required_argument, 0, O_APIKEY}, {"admin-key", required_argument, 0, O_ADMINKEY},
        {"adapter-dir", required_argument, 0, O_ADIR}, {"parallel", required_argument, 0, O_PARALLEL},
        {"ctx", required_argument, 0, O_CTX},        {"batch", required_argument, 0, O_BATCH},
        {"queue", required_argument, 0, O_QUEUE},    {"max-body", required_argument, 0, O_MAXBODY},
        {"timeout", required_argument, 0, O_TIMEOUT}, {"http-threads", required_argument, 0, O_HTTPT},
        {"max-conns", required_argument, 0, O_MAXCONN}, {"threads", required_argument, 0, 't'},
        {"device", required_argument, 0, O_DEVICE},  {"chat-template", required_argument, 0, O_TEMPLATE},
        {"name", required_argument, 0, O_NAME},      {"max-tokens", required_argument, 0, O_MAXTOK},
        {"quiet", no_argument, 0, 'q'},              {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},               {"version", no_argument, 0, O_VERSION},
        {"int8-matmul", no_argument, 0, O_INT8},     {0, 0, 0, 0}};
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":m:t:qvh", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': model_path = optarg; break;
        case O_LORA:
            if (nlora == MAX_LORA) gg_die(TOOL, "at most %d --lora", MAX_LORA);
            if (!strchr(optarg, '=')) gg_die(TOOL, "--lora '%s': expected NAME=PATH[:SCALE]", optarg);
            loras[nlora++] = optarg;
            break;
        case O_NAME: name = optarg; break;
        case O_HOST: so.host = optarg; break;
        case O_PORT: so.port = (int)int_arg("--port", optarg, 0, 65535); break;
        case O_APIKEY: so.api_key = optarg; break;
        case O_ADMINKEY: so.admin_key = optarg; break;
        case O_ADIR: so.adapter_dir = optarg; break;
        case O_PARALLEL: sch.n_slots = (int)int_arg("--parallel", optarg, 1, 256); break;
        case O_CTX: sch.slot_ctx = int_arg("--ctx", optarg, 1, 1L << 20); break;
        case O_BATCH: sch.max_step_tokens = int_arg("--batch", optarg, 1, 65536); break;
        case O_QUEUE: sch.queue_cap = (int)int_arg("--queue", optarg, 1, 1 << 20); break;
        case O_MAXTOK: so.max_tokens_default = int_arg("--max-tokens", optarg, 1, 1L << 20); break;
        case O_MAXBODY: so.max_body = (size_t)int_arg("--max-body", optarg, 1024, 1L << 30); break;
        case O_TIMEOUT: so.timeout_s = (unsigned)int_arg("--timeout", optarg, 1, 86400); break;
        case O_HTTPT: so.http_threads = (int)int_arg("--http-threads", optarg, 1, 256); break;
        case O_MAXCONN: so.max_conns = (unsigned)int_arg("--max-conns", optarg, 1, 1 << 20); break;
        case 't': threads = int_arg("--threads", optarg, 1, 1024); break;
        case O_DEVICE: device = optarg; break;
        case O_INT8: int8 = 1; break;
        case O_TEMPLATE: template_arg = optarg; break;
        case 'q': quiet = 1; break;
        case 'v': verbose = 1; break;
        case 'h': usage(stdout); return 0;
        case O_VERSION: printf("ggserve %s\n", GG_VERSION_STRING); return 0;
        case ':': gg_die(TOOL, "%s needs an argument (see ggserve --help)", argv[optind - 1]);
        default: gg_die(TOOL, "unknown option '%s' (see ggserve --help)", argv[optind - 1]);
        }
    }
    if (optind < argc) gg_die(TOOL, "unexpected argument '%s'", argv[optind]);
    if (!model_path) gg_die(TOOL, "missing -m MODEL.gg");
    if (sch.max_step_tokens < sch.n_slots) sch.max_step_tokens = sch.n_slots;
    so.verbose = verbose;

    /* Signals: handled by sigwait in this thread only; SIGPIPE ignored
     * (a client that goes away is an error on its socket, not a signal). */
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    /* Many connections: raise the open-file limit as far as allowed. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    gg_err err;
    double t0 = gg_now();
    gg_file *f;
    if (gg_file_open(&f, model_path, 0, &err)) gg_die(TOOL, "%s", err.msg);
    gg_backend *be = gg_tool_backend(device, (int)threads, &err);
    if (!be) gg_die(TOOL, "%s", err.msg);
    be->int8_matmul = int8;
    gg_model *m;
    if (gg_model_load(&m, f, be, &err)) gg_die(TOOL, "%s", err.msg);
    gg_tokenizer *tok = NULL;
    if (!gg_meta_find(f, "tokenizer.json")) gg_die(TOOL, "%s has no tokenizer (convert it from an HF folder with tokenizer.json)", model_path);
    if (gg_tokenizer_load_gg(&tok, f, &err)) gg_die(TOOL, "%s", err.msg);
    char *template_src = NULL;
    if (template_arg) {
        const char *b = gg_chat_builtin(template_arg);
        template_src = b ? strdup(b) : read_file(template_arg);
        if (!template_src)
            gg_die(TOOL, "--chat-template '%s': not a built-in (alpaca, chatml, llama2, llama3) and not a readable file",
                   template_arg);
    }
    /* The base's id: --name, else the file name without .gg. */
    char base_name[256];
    if (name) snprintf(base_name, sizeof base_name, "%s", name);
    else {
        const char *b = strrchr(model_path, '/');
        snprintf(base_name, sizeof base_name, "%s", b ? b + 1 : model_path);
        size_t bl = strlen(base_name);
        if (bl > 3 && !strcmp(base_name + bl - 3, ".gg")) base_name[bl - 3] = 0;
    }
    so.model_name = base_name;
    so.chat_template = template_src;
    loader ld = {m, f};
    so.load_adapter = load_adapter;
    so.load_ctx = &ld;

    gg_sched *sched;
    if (gg_sched_new(&sched, m, &sch, &err)) gg_die(TOOL, "%s", err.msg);
    gg_srv *srv;
    if (gg_srv_start(&srv, m, f, tok, sched, &so, &err)) gg_die(TOOL, "%s", err.msg);
    for (int i = 0; i < nlora; i++) {
        const char *eq = strchr(loras[i], '=');
        char nm[128];
        snprintf(nm, sizeof nm, "%.*s", (int)(eq - loras[i]) < 127 ? (int)(eq - loras[i]) : 127, loras[i]);
        char *path;
        float scale;
        if (gg_tool_adapter_arg(eq + 1, &path, &scale, &err) || gg_srv_adapter_load(srv, nm, path, scale, &err)) {
            gg_srv_stop(srv);
            gg_die(TOOL, "--lora %s: %s", loras[i], err.msg);
        }
        if (!quiet) fprintf(stderr, "%s: adapter %s = %s (scale %g)\n", TOOL, nm, path, scale);
        free(path);
    }
    if (!quiet) {
        const gg_model_config *c = gg_model_cfg(m);
        fprintf(stderr, "%s: model %s (%s, %lld layers, vocab %lld) loaded in %.2f s; %d slots of %lld tokens on %s\n",
                TOOL, base_name, c->arch, (long long)c->n_layers, (long long)c->vocab, gg_now() - t0, sch.n_slots,
                (long long)gg_sched_slot_ctx(sched), device);
    }
    int port = gg_srv_port(srv);
    const char *h = so.host;
    fprintf(stderr, strchr(h, ':') ? "listening on http://[%s]:%d\n" : "listening on http://%s:%d\n", h, port);
    fflush(stderr);

    int sig = 0;
    sigwait(&sigs, &sig);
    if (!quiet) fprintf(stderr, "%s: %s: shutting down\n", TOOL, sig == SIGINT ? "SIGINT" : "SIGTERM");
    gg_srv_stop(srv);
    gg_sched_free(sched);
    free(template_src);
    gg_tokenizer_free(tok);
    gg_model_free(m);
    gg_backend_free(be);
    gg_file_close(f);
    return 0;
}

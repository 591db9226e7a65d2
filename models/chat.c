/* chat.c — chat templates: the context for a conversation, and the
 * built-in templates (see chat.h). */
#include "models/chat.h"

#include <jansson.h>
#include <string.h>

#include "models/jinja.h"

/* alpaca — the Stanford Alpaca prompt. Mapping: a system message is the
 * "input" of the next user message (the instruction) and is used once; an
 * assistant message is the response, followed by eos_token. Several turns
 * repeat the block, separated by a blank line. The generation prompt is
 * "### Response:\n". Other roles raise an error. */
static const char alpaca_tmpl[] =
    "{%- set ns = namespace(input='') -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- set ns.input = message['content'] -%}"
    "{%- elif message['role'] == 'user' -%}"
    "{%- if ns.input -%}"
    "{{ 'Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\\n\\n### Instruction:\\n' + "
    "message['content'] + '\\n\\n### Input:\\n' + ns.input + '\\n\\n' }}"
    "{%- else -%}"
    "{{ 'Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\\n\\n### Instruction:\\n' + message['content'] + '\\n\\n' }}"
    "{%- endif -%}"
    "{%- set ns.input = '' -%}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ '### Response:\\n' + message['content'] + eos_token }}"
    "{%- if not loop.last -%}{{ '\\n\\n' }}{%- endif -%}"
    "{%- else -%}"
    "{{ raise_exception('alpaca: unsupported role ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '### Response:\\n' }}{%- endif -%}";

/* chatml — as used by Qwen and many fine-tunes. */
static const char chatml_tmpl[] =
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}";

/* llama2 — the chat_template of meta-llama/Llama-2-7b-chat-hf. */
static const char llama2_tmpl[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/* llama3 — the chat_template of meta-llama/Meta-Llama-3-8B-Instruct. */
static const char llama3_tmpl[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
    "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

const char *gg_chat_builtin(const char *name) {
    if (!name) return NULL;
    if (!strcmp(name, "alpaca")) return alpaca_tmpl;
    if (!strcmp(name, "chatml")) return chatml_tmpl;
    if (!strcmp(name, "llama2")) return llama2_tmpl;
    if (!strcmp(name, "llama3")) return llama3_tmpl;
    return NULL;
}

int gg_chat_render(const char *template_src, const gg_chat_msg *msgs, size_t n,
                   const gg_chat_opts *opts, char **out, size_t *out_len, gg_err *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!template_src) return gg_errf(err, "chat: no template");
    if (n && !msgs) return gg_errf(err, "chat: no messages");
    json_t *ctx = json_object(), *arr = json_array();
    if (!ctx || !arr) {
        json_decref(ctx);
        json_decref(arr);
        return gg_errf(err, "chat: out of memory");
    }
    int bad = json_object_set_new(ctx, "messages", arr);
    for (size_t i = 0; i < n && !bad; i++) {
        const char *role = msgs[i].role ? msgs[i].role : "";
        const char *content = msgs[i].content ? msgs[i].content : "";
        json_t *m = json_object();
        json_t *r = json_string(role), *c = json_string(content);
        if (!m || !r || !c) {
            json_decref(m);
            json_decref(r);
            json_decref(c);
            json_decref(ctx);
            return gg_errf(err, "chat: message %zu: role or content is not valid UTF-8", i);
        }
        bad |= json_object_set_new(m, "role", r);
        bad |= json_object_set_new(m, "content", c);
        bad |= json_array_append_new(arr, m);
    }
    const char *bos = opts && opts->bos_token ? opts->bos_token : "";
    const char *eos = opts && opts->eos_token ? opts->eos_token : "";
    json_t *jb = json_string(bos), *je = json_string(eos);
    if (!jb || !je) {
        json_decref(jb);
        json_decref(je);
        json_decref(ctx);
        return gg_errf(err, "chat: bos_token or eos_token is not valid UTF-8");
    }
    bad |= json_object_set_new(ctx, "add_generation_prompt", json_boolean(opts && opts->add_generation_prompt));
    bad |= json_object_set_new(ctx, "bos_token", jb);
    bad |= json_object_set_new(ctx, "eos_token", je);
    if (bad) {
        json_decref(ctx);
        return gg_errf(err, "chat: out of memory");
    }
    int rc = gg_jinja_render(template_src, ctx, out, out_len, err);
    json_decref(ctx);
    if (rc) return gg_err_prefix(err, "chat template");
    return 0;
}

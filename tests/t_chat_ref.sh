#!/usr/bin/env bash
# t_chat_ref.sh — chat-template parity with @huggingface/jinja (the Jinja of
# transformers.js): renders the chat templates of tests/fixtures/chat (the
# tokenizer_config.json of Llama 2/3 and Qwen3, Mistral-7B-Instruct-v0.3 and
# gemma-2-it templates) and the four built-ins over a set of conversations,
# with the reference (tests/ref/jinja_ref.mjs) and with models/chat.c
# (tests/chat_render_main.c), plus the interpreter snippets of
# tests/fixtures/chat/snippets.txt, and requires identical output for every case
# (a render error on one side must be an error on the other). Prints a
# per-template count. Skips (exit 0) when node/npm or the package install is
# unavailable.
set -euo pipefail
cd "$(dirname "$0")/.."
FIX=${GG_FIXTURES:-tests/fixtures}/chat
JV=0.5.11
NPMDIR=${GG_NPM_JINJA:-build/npm/jinja} # where the reference package is installed
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

command -v node >/dev/null 2>&1 || { echo "skip: node unavailable"; exit 0; }
if [ ! -f "$NPMDIR/node_modules/@huggingface/jinja/package.json" ] ||
   ! grep -q "\"version\": \"$JV\"" "$NPMDIR/node_modules/@huggingface/jinja/package.json"; then
    command -v npm >/dev/null 2>&1 || { echo "skip: npm unavailable"; exit 0; }
    mkdir -p "$NPMDIR"
    if ! timeout 300 npm install --silent --no-audit --no-fund --prefix "$NPMDIR" "@huggingface/jinja@$JV" >"$T/npm.log" 2>&1; then
        echo "skip: npm unavailable (install of @huggingface/jinja@$JV failed)"; tail -n 3 "$T/npm.log"; exit 0
    fi
fi

CC=${CC:-cc}
$CC -std=c11 -O1 -g -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE -I. -pthread \
    tests/chat_render_main.c models/jinja*.c models/chat.c ggfmt/err.c -ljansson -lm \
    -o "$T/chat_render" || fail "building tests/chat_render_main.c"

for b in alpaca chatml llama2 llama3; do
    "$T/chat_render" --builtin "$b" >"$T/builtin_$b.jinja" || fail "builtin $b"
done

# The case file: every template × every conversation.
node - "$FIX" "$T" >"$T/cases.json" <<'JS'
const fs = require("fs");
const [fix, tmp] = process.argv.slice(2);
const templates = [];
for (const name of ["llama2", "llama3", "qwen3"]) {
  const cfg = JSON.parse(fs.readFileSync(`${fix}/${name}.json`, "utf8"));
  if (typeof cfg.chat_template === "string") templates.push([`${name}.json`, cfg.chat_template]);
  else console.error(`note: ${name}.json has no chat_template (the built-in llama2 is Meta's template)`);
}
for (const name of ["mistral", "gemma"]) templates.push([`${name}.jinja`, fs.readFileSync(`${fix}/${name}.jinja`, "utf8")]);
for (const name of ["alpaca", "chatml", "llama2", "llama3"])
  templates.push([`builtin:${name}`, fs.readFileSync(`${tmp}/builtin_${name}.jinja`, "utf8")]);
const S = (c) => ({ role: "system", content: c }), U = (c) => ({ role: "user", content: c }),
      A = (c) => ({ role: "assistant", content: c });
const convs = [
  [[S("You are a helpful assistant."), U("Hello!")], true],
  [[U("What is 2+2?")], true],
  [[U("Hi"), A("Hello! How can I help?"), U("Tell me a joke.")], true],
  [[S("Be brief."), U("Name a color."), A("Blue.")], false],
  [[S("Réponds en français. 日本語も。"), U("héllo wörld — 世界 🎉 \u00a0ok")], true],
  [[U("")], true],
  [[U(""), A("")], false],
  [[U("first"), U("second in a row")], true],
  [[A("I speak first"), U("then me")], true],
  [[S("sys"), U("  padded question \n\n"), A("\n  padded answer  \n"), U("q2\twith tab")], false],
  [[U("Solve it"), A("<think>\nreasoning here\n</think>\n\nThe answer is 4."), U("And 3+3?")], true],
  [[S("only a system prompt")], true],
  [[U("a"), A("b"), U("c"), A("d"), U("e"), A("f")], false],
  [[U("quotes ' \" and backslash \\ and {{ braces }} {% tags %}")], true],
  // tool use (extra fields: these go through gg_jinja_render)
  [[S("You can call tools."), U("Weather in Paris?"),
    { role: "assistant", content: "", tool_calls: [{ id: "abcdef123", type: "function",
      function: { name: "get_weather", arguments: { city: "Paris", unit: "C" } } }] },
    { role: "tool", content: "22 C", tool_call_id: "abcdef123" }], true,
   { tools: [{ type: "function", function: { name: "get_weather", description: "Current weather",
      parameters: { type: "object", properties: { city: { type: "string" }, unit: { type: "string", enum: ["C", "F"] } },
                    required: ["city"] } } }] }],
  [[U("Think first"), { role: "assistant", content: "Sure.", reasoning_content: "thinking…" }, U("ok")], true,
   { enable_thinking: false }],
];
const cases = [];
for (const [name, template] of templates)
  for (const [messages, agp, extra] of convs)
    cases.push({ name, template, messages, add_generation_prompt: agp, bos_token: "<s>", eos_token: "</s>", ...extra });
// Interpreter snippets (one template each, separated by "====" lines), with
// one conversation and an extra variable of every JSON type.
const snippets = fs.readFileSync(`${fix}/snippets.txt`, "utf8").split("\n====\n").filter((t) => t.length);
const sm = [S("sys msg"), U("Hello  "), A("<think>\nr\n</think>\n\nans"), U("héllo 世界")];
for (const template of snippets)
  cases.push({ name: "snippets.txt", template, messages: sm, add_generation_prompt: true, bos_token: "<s>",
               eos_token: "</s>", extra: { a: 1, b: [1, 2, { c: "x" }], s: "str", f: 2.5, n: null, t: true } });
process.stdout.write(JSON.stringify(cases));
JS

node tests/ref/jinja_ref.mjs "$T/cases.json" "$NPMDIR" >"$T/ref.json" || fail "reference renderer failed"
"$T/chat_render" "$T/cases.json" >"$T/ours.json" || fail "chat_render failed"

node - "$T/cases.json" "$T/ref.json" "$T/ours.json" <<'JS'
const fs = require("fs");
const [cp, rp, op] = process.argv.slice(2);
const cases = JSON.parse(fs.readFileSync(cp, "utf8"));
const ref = JSON.parse(fs.readFileSync(rp, "utf8")), ours = JSON.parse(fs.readFileSync(op, "utf8"));
const per = new Map();
let bad = 0;
cases.forEach((c, i) => {
  const r = ref[i], o = ours[i];
  const rErr = typeof r !== "string", oErr = typeof o !== "string";
  const ok = rErr || oErr ? rErr && oErr : r === o;
  const s = per.get(c.name) ?? { n: 0, ok: 0, err: 0 };
  s.n++; if (ok) s.ok++; if (ok && rErr) s.err++;
  per.set(c.name, s);
  if (!ok) {
    bad++;
    if (bad <= 10) console.log(`MISMATCH ${c.name} case ${i}:\n  ref:  ${JSON.stringify(r)}\n  ours: ${JSON.stringify(o)}`);
  }
});
for (const [name, s] of per) console.log(`${name}: ${s.ok}/${s.n} identical (${s.err} errors on both sides)`);
if (bad) { console.log(`FAIL: ${bad} case(s) differ`); process.exit(1); }
console.log(`ok: ${cases.length} cases identical`);
JS

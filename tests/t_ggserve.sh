#!/usr/bin/env bash
# t_ggserve.sh — ggserve end to end with curl, on the demo model (a small
# random Llama with the Llama 2 tokenizer, tests/make_demo_model.sh) and an
# adapter trained on it for a few steps (as a .gg file and a PEFT folder):
# health, auth (401 without / with a wrong key), models list, completions
# and chat, streamed and not (the streamed text equals the whole one), an
# adapter's greedy output differs from the base and equals `gggen -a`,
# stop strings, echo + logprobs for lm-evaluation-harness (tokens,
# token_logprobs with null first, text_offset in bytes), tokenize /
# detokenize / tokenizer_info, adapters loaded and unloaded at run time
# (confined to --adapter-dir, admin key), metrics; bad input (invalid
# JSON, wrong types, a body over --max-body, unknown model, max_tokens past
# the context, unknown endpoint, wrong method) answered with an OpenAI
# error object; a slow client timed out, a client that disconnects
# mid-stream cancelled (its slot freed), 1,000 concurrent connections
# (503 + Retry-After once the queue is full) — and the server keeps serving
# through all of it; SIGTERM ends it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GG_BIN:-bin}
T=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$T/serve.err" ] && tail -n 5 "$T/serve.err"; exit 1; }
command -v curl >/dev/null || { echo "skip: curl unavailable"; exit 0; }
command -v node >/dev/null || { echo "skip: node unavailable (used to read JSON)"; exit 0; }
[ -x "$BIN/ggserve" ] || fail "$BIN/ggserve not built"

# js FILE EXPR: evaluate EXPR with j = the JSON in FILE; print strings raw.
js() { node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); const v=eval(process.argv[2]); process.stdout.write(typeof v==="string"?v:JSON.stringify(v))' "$@"; }
# sse FILE: the text of a stream's chunks, concatenated; fails unless it ends with [DONE].
sse() {
    node -e '
const lines=require("fs").readFileSync(process.argv[1],"utf8").split("\n").filter(l=>l.startsWith("data: "));
if (lines.pop()!=="data: [DONE]") { console.error("no [DONE]"); process.exit(1); }
let t="", fin=null;
for (const l of lines) { const o=JSON.parse(l.slice(6)); for (const c of o.choices) {
  t += c.text ?? c.delta?.content ?? ""; if (c.finish_reason) fin=c.finish_reason; } }
process.stdout.write(t + "\u0000" + fin);' "$1"
}

# ---- the model and an adapter ----
bash tests/make_demo_model.sh "$T/dm" >/dev/null
"$BIN/ggconvert" -q -t nf4 -o "$T/base.gg" "$T/dm" >/dev/null 2>&1 || fail "convert"
bash tests/make_task.sh "$T/task" >/dev/null
"$BIN/ggtrain" -q -m "$T/base.gg" -d "$T/task/train.jsonl" -o "$T/ad.gg" --peft-out "$T/ad-peft" --max-steps 6 \
    --lr 2e-2 --micro-batch 4 --seq-len 64 --threads 2 >/dev/null 2>&1 || fail "ggtrain"
mkdir -p "$T/adapters/sub"
cp "$T/ad.gg" "$T/adapters/sub/late.gg"

# ---- the command line ----
grep -q 'usage: ggserve' <("$BIN/ggserve" --help) || fail "--help"
grep -q '^ggserve ' <("$BIN/ggserve" --version) || fail "--version"
cli_error() { # PATTERN ARGS...: exit 1 with one line on stderr matching PATTERN
    local pat=$1 rc=0; shift
    "$BIN/ggserve" "$@" >"$T/out" 2>"$T/err" </dev/null || rc=$?
    [ "$rc" -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "$pat" "$T/err" ||
        fail "ggserve $*: exit $rc, stderr: $(cat "$T/err")"
}
cli_error 'missing -m' --port 0
cli_error 'NAME=PATH' -m "$T/base.gg" --lora "$T/ad.gg"
cli_error 'port' -m "$T/base.gg" --port 70000
cli_error 'no such file' -m "$T/base.gg" --port 0 --lora x="$T/nope.gg"
cli_error 'chat-template' -m "$T/base.gg" --port 0 --chat-template "$T/nope.jinja"
"$BIN/ggconvert" -q -t f32 -o "$T/notok.gg" tests/fixtures/hf/llama3-gqa >/dev/null 2>&1 || fail "convert llama3-gqa"
cli_error 'tokenizer' -m "$T/notok.gg" --port 0

KEY=sk-test-123
ADMIN=admin-456
"$BIN/ggserve" -m "$T/base.gg" --name base --lora sft="$T/ad.gg" --lora peft="$T/ad-peft" --port 0 \
    --api-key "$KEY" --admin-key "$ADMIN" --adapter-dir "$T/adapters" --chat-template alpaca --parallel 4 \
    --queue 8 --timeout 3 --max-body 65536 --threads 1 --max-tokens 16 2>"$T/serve.err" &
PID=$!
for _ in $(seq 100); do grep -q '^listening on' "$T/serve.err" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$T/serve.err")
[ -n "$PORT" ] || fail "server did not start: $(cat "$T/serve.err")"
URL=http://127.0.0.1:$PORT

# req METHOD PATH [BODY] [KEY]: the status code; the body in $T/r.json, headers in $T/h.txt.
req() {
    local k=${4-$KEY}
    curl -s -o "$T/r.json" -D "$T/h.txt" -w '%{http_code}' -X "$1" ${k:+-H "Authorization: Bearer $k"} \
        -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "$URL$2"
}
is_error() { # STATUS BODY-CHECK: r.json is an OpenAI error object
    js "$T/r.json" 'typeof j.error.message==="string" && typeof j.error.type==="string" && "param" in j.error && "code" in j.error' | grep -q true
}
expect() { # WANT METHOD PATH [BODY] [KEY]
    local want=$1; shift
    local got; got=$(req "$@")
    [ "$got" = "$want" ] || fail "$1 $2 ${3:0:80}: HTTP $got, want $want: $(head -c 300 "$T/r.json")"
    if [ "${want:0:1}" != 2 ]; then is_error || fail "$1 $2: not an error object: $(cat "$T/r.json")"; fi
}

# ---- health, auth, models ----
expect 200 GET /health "" ""
[ "$(js "$T/r.json" j.status)" = ok ] || fail "health: $(cat "$T/r.json")"
expect 401 GET /v1/models "" ""
grep -qi '^WWW-Authenticate: Bearer' "$T/h.txt" || fail "401 without WWW-Authenticate"
expect 401 GET /v1/models "" "wrong-key"
expect 401 GET /v1/models "" "${KEY}x"
expect 200 GET /v1/models
[ "$(js "$T/r.json" 'j.data.map(m=>m.id).join(",")')" = "base,sft,peft" ] || fail "models: $(cat "$T/r.json")"
expect 200 GET /v1/models/sft

# ---- completions: base vs adapter vs gggen ----
P="The capital of"
g_base=$("$BIN/gggen" -q -m "$T/base.gg" -p "$P" -n 8 --temp 0 --ignore-eos -t 1)
g_ad=$("$BIN/gggen" -q -m "$T/base.gg" -a "$T/ad.gg" -p "$P" -n 8 --temp 0 --ignore-eos -t 1)
[ "$g_base" != "$g_ad" ] || fail "the adapter does not change gggen's output: '$g_base'"
body() { echo "{\"model\":\"$1\",\"prompt\":\"$P\",\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true${2-}}"; }
expect 200 POST /v1/completions "$(body base)"
[ "$(js "$T/r.json" 'j.choices[0].text')" = "$g_base" ] || fail "base: '$(js "$T/r.json" 'j.choices[0].text')' vs gggen '$g_base'"
[ "$(js "$T/r.json" 'j.choices[0].finish_reason + " " + j.usage.completion_tokens + " " + j.object')" = "length 8 text_completion" ] ||
    fail "finish/usage: $(cat "$T/r.json")"
for m in sft peft; do
    expect 200 POST /v1/completions "$(body $m)"
    [ "$(js "$T/r.json" 'j.choices[0].text')" = "$g_ad" ] || fail "$m: '$(js "$T/r.json" 'j.choices[0].text')' vs gggen -a '$g_ad'"
done
# frequency / presence penalties: as gggen's (greedy, 16 tokens; negative,
# so that they change what the random model says: it repeats itself)
g_pen=$("$BIN/gggen" -q -m "$T/base.gg" -p "$P" -n 16 --temp 0 --ignore-eos -t 1 --frequency-penalty -1.5 --presence-penalty -0.5)
g_16=$("$BIN/gggen" -q -m "$T/base.gg" -p "$P" -n 16 --temp 0 --ignore-eos -t 1)
[ "$g_pen" != "$g_16" ] || fail "the penalties do not change gggen's output: '$g_16'"
expect 200 POST /v1/completions "{\"model\":\"base\",\"prompt\":\"$P\",\"max_tokens\":16,\"temperature\":0,\"ignore_eos\":true,\"frequency_penalty\":-1.5,\"presence_penalty\":-0.5}"
[ "$(js "$T/r.json" 'j.choices[0].text')" = "$g_pen" ] || fail "penalties: '$(js "$T/r.json" 'j.choices[0].text')' vs gggen '$g_pen'"
# without ignore_eos: the end-of-sequence token ends it (no text; its logprob keeps its place)
g_eos=$("$BIN/gggen" -q -m "$T/base.gg" -a "$T/ad.gg" -p "$P" -n 8 --temp 0 -t 1)
expect 200 POST /v1/completions "{\"model\":\"sft\",\"prompt\":\"$P\",\"max_tokens\":8,\"temperature\":0,\"logprobs\":1}"
js "$T/r.json" '(()=>{const c=j.choices[0]; return c.text==='"$(node -e 'process.stdout.write(JSON.stringify(process.argv[1]))' "$g_eos")"' &&
  (c.finish_reason==="stop") === (j.usage.completion_tokens<8) && c.logprobs.tokens.length===j.usage.completion_tokens &&
  c.logprobs.tokens.join("")===c.text;})()' | grep -q true || fail "eos: $(cat "$T/r.json") vs gggen '$g_eos'"
# streamed: the same text, SSE chunks ending with [DONE]
curl -sN -o "$T/s.txt" -D "$T/h.txt" -H "Authorization: Bearer $KEY" -d "$(body sft ',"stream":true')" "$URL/v1/completions"
grep -qi '^Content-Type: text/event-stream' "$T/h.txt" || fail "stream content type: $(cat "$T/h.txt")"
out=$(sse "$T/s.txt" | tr '\0' '|') || fail "stream: $(head -c 400 "$T/s.txt")"
[ "$out" = "$g_ad|length" ] || fail "stream text '$out' vs '$g_ad|length'"
[ "$(grep -c '^data: ' "$T/s.txt")" -ge 9 ] || fail "expected a chunk per token: $(cat "$T/s.txt")"
# several prompts in one request, as strings and as token ids
ids=$(curl -s -H "Authorization: Bearer $KEY" -d "{\"prompt\":\"$P\"}" "$URL/tokenize" | node -e 'process.stdout.write(JSON.stringify(JSON.parse(require("fs").readFileSync(0)).tokens))')
expect 200 POST /v1/completions "{\"model\":\"sft\",\"prompt\":[$ids,\"$P\"],\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true}"
[ "$(js "$T/r.json" 'j.choices.map(c=>c.text).join("|")')" = "$g_ad|$g_ad" ] || fail "batch of prompts: $(cat "$T/r.json")"
# stop strings: the text ends before the stop string; finish_reason stop
stop=$(printf '%s' "$g_ad" | cut -c 4-6)
expect 200 POST /v1/completions "$(body sft ",\"stop\":[\"zzz\",\"$stop\"]")"
want=${g_ad%%"$stop"*}
[ "$(js "$T/r.json" 'j.choices[0].text + "|" + j.choices[0].finish_reason')" = "$want|stop" ] ||
    fail "stop '$stop': $(cat "$T/r.json"), want '$want'"

# ---- chat ----
Q="Tell me the capital of Japan."
g_chat=$("$BIN/gggen" -q -m "$T/base.gg" -a "$T/ad.gg" --chat --template alpaca -p "$Q" -n 12 --temp 0 -t 1)
chat() { echo "{\"model\":\"sft\",\"messages\":[{\"role\":\"user\",\"content\":\"$Q\"}],\"max_tokens\":12,\"temperature\":0${1-}}"; }
expect 200 POST /v1/chat/completions "$(chat)"
[ "$(js "$T/r.json" 'j.choices[0].message.content')" = "$g_chat" ] || fail "chat: $(cat "$T/r.json") vs gggen '$g_chat'"
[ "$(js "$T/r.json" 'j.object + " " + j.choices[0].message.role')" = "chat.completion assistant" ] || fail "chat shape"
curl -sN -o "$T/s.txt" -H "Authorization: Bearer $KEY" -d "$(chat ',"stream":true,"stream_options":{"include_usage":true}')" "$URL/v1/chat/completions"
out=$(sse "$T/s.txt" | tr '\0' '|') || fail "chat stream: $(head -c 400 "$T/s.txt")"
[ "${out%|*}" = "$g_chat" ] || fail "chat stream '$out' vs '$g_chat'"
grep -q '"delta":{"role":"assistant"' "$T/s.txt" || fail "no role delta"
grep -q '"usage":{"prompt_tokens":' "$T/s.txt" || fail "no usage chunk"
expect 200 POST /v1/chat/completions "$(chat ',"logprobs":true,"top_logprobs":2,"max_tokens":3')"
[ "$(js "$T/r.json" 'j.choices[0].logprobs.content.length + " " + j.choices[0].logprobs.content[0].top_logprobs.length')" = "3 2" ] ||
    fail "chat logprobs: $(cat "$T/r.json")"

# ---- lm-evaluation-harness: echo + logprobs ----
expect 200 POST /v1/completions "{\"model\":\"sft\",\"prompt\":[$ids],\"max_tokens\":1,\"temperature\":0,\"echo\":true,\"logprobs\":1}"
n_ids=$(node -e "process.stdout.write(String($ids.length))")
js "$T/r.json" '(()=>{const c=j.choices[0], l=c.logprobs, n=l.tokens.length; const enc=s=>Buffer.byteLength(s);
  let off=0, ok=l.token_logprobs[0]===null && l.top_logprobs[0]===null && n==='"$n_ids"'+1 && l.tokens.join("")===c.text;
  for (let i=0;i<n;i++){ ok = ok && l.text_offset[i]===off; off+=enc(l.tokens[i]); if (i>0) ok = ok && typeof l.token_logprobs[i]==="number" && l.token_logprobs[i]<=0 && Object.keys(l.top_logprobs[i]).length>=1; }
  return ok && j.usage.prompt_tokens==='"$n_ids"' && j.usage.completion_tokens===1;})()' | grep -q true ||
    fail "echo logprobs: $(cat "$T/r.json")"
expect 200 POST /v1/completions "{\"prompt\":[$ids],\"max_tokens\":0,\"echo\":true,\"logprobs\":0}"
[ "$(js "$T/r.json" 'j.choices[0].logprobs.tokens.length')" = "$n_ids" ] || fail "max_tokens 0 echo: $(cat "$T/r.json")"
expect 200 POST /tokenize '{"prompt":"Hello world","add_special_tokens":false}'
[ "$(js "$T/r.json" 'j.tokens.join(" ")')" = "$(printf 'Hello world' | "$BIN/ggtok" -m "$T/dm" --no-special)" ] ||
    fail "tokenize: $(cat "$T/r.json")"
toks=$(js "$T/r.json" 'JSON.stringify(j.tokens)')
expect 200 POST /detokenize "{\"tokens\":$toks}"
[ "$(js "$T/r.json" j.prompt)" = "Hello world" ] || fail "detokenize: $(cat "$T/r.json")"
expect 200 GET /tokenizer_info
[ "$(js "$T/r.json" j.eos_token)" = "</s>" ] || fail "tokenizer_info: $(cat "$T/r.json")"

# ---- bad input: the right status, an error object, and the server goes on ----
expect 400 POST /v1/completions '{"prompt": "hi",'
expect 400 POST /v1/completions '[1,2]'
expect 400 POST /v1/completions '{"prompt": 5}'
expect 400 POST /v1/completions '{"prompt": "hi", "max_tokens": "many"}'
expect 400 POST /v1/completions '{"prompt": "hi", "temperature": "hot"}'
expect 400 POST /v1/chat/completions '{"messages": "hi"}'
expect 400 POST /v1/chat/completions '{"messages": [{"role": "user", "content": 7}]}'
expect 404 POST /v1/completions '{"prompt": "hi", "model": "nope"}'
[ "$(js "$T/r.json" j.error.code)" = model_not_found ] || fail "unknown model code"
expect 400 POST /v1/completions '{"prompt": "hi", "max_tokens": 100000}'
[ "$(js "$T/r.json" j.error.code)" = context_length_exceeded ] || fail "context code: $(cat "$T/r.json")"
head -c 100000 /dev/zero | tr '\0' 'a' >"$T/big.txt"
code=$(curl -s -o "$T/r.json" -w '%{http_code}' -H "Authorization: Bearer $KEY" --data-binary @"$T/big.txt" "$URL/v1/completions")
[ "$code" = 413 ] && is_error || fail "huge body: HTTP $code $(cat "$T/r.json")"
code=$(head -c 100000 /dev/zero | curl -s -o "$T/r.json" -w '%{http_code}' -H "Authorization: Bearer $KEY" \
    -H 'Transfer-Encoding: chunked' --data-binary @- "$URL/v1/completions")
[ "$code" = 413 ] || fail "huge chunked body: HTTP $code"
expect 404 GET /v1/nothing
expect 405 GET /v1/completions
expect 405 DELETE /health "" ""

# ---- adapters at run time ----
expect 401 POST /v1/adapters '{"name":"late","path":"sub/late.gg"}'
expect 200 POST /v1/adapters '{"name":"late","path":"sub/late.gg"}' "$ADMIN"
expect 200 POST /v1/completions "$(body late)"
[ "$(js "$T/r.json" 'j.choices[0].text')" = "$g_ad" ] || fail "late adapter: $(cat "$T/r.json")"
expect 400 POST /v1/adapters '{"name":"evil","path":"../base.gg"}' "$ADMIN"
expect 400 POST /v1/adapters "{\"name\":\"evil\",\"path\":\"$T/ad.gg\"}" "$ADMIN"
expect 400 POST /v1/adapters '{"name":"bad/name","path":"sub/late.gg"}' "$ADMIN"
expect 409 POST /v1/adapters '{"name":"late","path":"sub/late.gg"}' "$ADMIN"
expect 200 GET /v1/models
[ "$(js "$T/r.json" 'j.data.map(m=>m.id).join(",")')" = "base,sft,peft,late" ] || fail "models after load: $(cat "$T/r.json")"
expect 200 DELETE /v1/adapters/late "" "$ADMIN"
expect 404 POST /v1/completions "$(body late)"
expect 404 DELETE /v1/adapters/late "" "$ADMIN"

# ---- slow clients, disconnects, many connections ----
# A client that sends half a request and stalls is closed after --timeout.
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\n' >&3
expect 200 GET /health "" ""
t0=$SECONDS
timeout 10 cat <&3 >/dev/null || true
exec 3<&-
[ $((SECONDS - t0)) -le 8 ] || fail "slow client not closed"
# A client that disconnects mid-stream: its request is cancelled and the slot
# freed. (It goes once the first chunks have come: the generation is running.)
curl -sN -H "Authorization: Bearer $KEY" \
    -d '{"prompt":"x","max_tokens":1900,"temperature":1,"ignore_eos":true,"stream":true}' "$URL/v1/completions" |
    head -c 200 >/dev/null || true
idle() { # wait until no request runs or waits (up to 5 s)
    for _ in $(seq 50); do
        req GET /health "" "" >/dev/null
        [ "$(js "$T/r.json" 'j.active + j.queued')" = 0 ] && return 0
        sleep 0.1
    done
    return 1
}
idle || fail "the disconnected stream still runs: $(cat "$T/r.json")"
# ... and a non-streaming one waiting on a long generation (it goes once the
# server reports the request active).
curl -s -o /dev/null -H "Authorization: Bearer $KEY" \
    -d '{"prompt":"x","max_tokens":1900,"temperature":1,"ignore_eos":true}' "$URL/v1/completions" &
cpid=$!
for _ in $(seq 100); do
    req GET /health "" "" >/dev/null
    [ "$(js "$T/r.json" 'j.active')" -ge 1 ] && break
    sleep 0.05
done
kill "$cpid" 2>/dev/null || true
wait "$cpid" 2>/dev/null || true
idle || fail "disconnected requests still run: $(cat "$T/r.json")"
expect 200 GET /metrics
grep -q '^gg_requests_cancelled_total [2-9]' "$T/r.json" || fail "cancellations not counted: $(grep cancelled "$T/r.json")"
# 1,000 concurrent connections: generation requests, far more than slots + queue.
node bench/serve_load.mjs --url "$URL" --key "$KEY" --conns 1000 --requests 1000 --max-tokens 4 --check >"$T/load.json" ||
    fail "load: $(cat "$T/load.json")"
js "$T/load.json" 'j.status["200"]>=8 && j.status["503"]>=1 && j.errors===0 && j.retry_after_missing===0 && j.bad_bodies===0' | grep -q true ||
    fail "1000 connections: $(cat "$T/load.json")"
expect 200 POST /v1/completions "$(body sft)"
[ "$(js "$T/r.json" 'j.choices[0].text')" = "$g_ad" ] || fail "after the load: $(cat "$T/r.json")"

# ---- metrics (the same prompt again and again: the scheduler reuses its prefix) ----
expect 200 GET /metrics
for k in 'gg_http_requests_total{endpoint="/v1/completions",code="2xx"} [1-9]' 'gg_generated_tokens_total [1-9]' \
    'gg_request_duration_seconds_bucket{le="+Inf"} [1-9]' 'gg_time_to_first_token_seconds_count [1-9]' \
    'gg_queue_depth 0' 'gg_slots 4' 'gg_http_requests_total{endpoint="/v1/completions",code="503"} [1-9]' \
    'gg_http_requests_total{endpoint="/v1/models",code="401"} 3' 'gg_sched_reused_tokens_total [1-9]'; do
    grep -q "^$k" "$T/r.json" || fail "metrics lack '$k'"
done

# ---- a clean shutdown ----
kill -TERM "$PID"
for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PID" 2>/dev/null && fail "still running 5 s after SIGTERM"
rc=0; wait "$PID" || rc=$?
PID=
[ "$rc" -eq 0 ] || fail "exit status $rc after SIGTERM"
! grep -q 'runtime error\|Sanitizer' "$T/serve.err" || fail "sanitizer: $(grep -m3 'runtime error\|Sanitizer' "$T/serve.err")"

# ---- --int8-matmul: the server's greedy completion equals gggen --int8-matmul's ----
"$BIN/ggserve" -m "$T/base.gg" --name base --lora sft="$T/ad.gg" --port 0 --threads 1 --int8-matmul -q \
    2>"$T/serve8.err" &
PID=$!
for _ in $(seq 100); do grep -q '^listening on' "$T/serve8.err" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$T/serve8.err")
[ -n "$PORT" ] || fail "--int8-matmul server did not start: $(cat "$T/serve8.err")"
URL=http://127.0.0.1:$PORT
g8=$("$BIN/gggen" -q -m "$T/base.gg" -a "$T/ad.gg" -p "$P" -n 8 --temp 0 --ignore-eos -t 1 --int8-matmul)
expect 200 POST /v1/completions "$(body sft)" ""
[ "$(js "$T/r.json" 'j.choices[0].text')" = "$g8" ] || fail "--int8-matmul: '$(js "$T/r.json" 'j.choices[0].text')' vs gggen '$g8'"
kill -TERM "$PID"; wait "$PID" || true; PID=
echo "t_ggserve: ok"

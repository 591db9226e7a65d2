#!/usr/bin/env bash
# t_ggserve_page.sh — ggserve's chat page (GET /) end to end in headless
# Chromium: the page lists the models in each column, the base and an
# adapter answer the same message side by side, each answer streams in
# (server-sent events read by the page as they come), and the adapter's answer equals
# `gggen --chat -a` for the same message. Driven by tests/serve/page_test.mjs
# with playwright-core (pinned in tests/serve/package.json, installed into
# build/npm/serve; it downloads no browser: Debian's chromium is used).
# Skips ("skip: ...", exit 0) without node/npm, chromium, or when the npm
# install fails (offline).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GG_BIN:-bin}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { echo "skip: node/npm unavailable"; exit 0; }
[ -n "$CHROMIUM" ] || { echo "skip: chromium unavailable"; exit 0; }
[ -x "$BIN/ggserve" ] || { echo "FAIL: $BIN/ggserve not built"; exit 1; }

NPM=build/npm/serve
if ! cmp -s tests/serve/package.json "$NPM/package.json" || [ ! -d "$NPM/node_modules/playwright-core" ]; then
    mkdir -p "$NPM"
    cp tests/serve/package.json "$NPM/package.json"
    if ! timeout 300 npm install --loglevel=error --no-audit --no-fund --ignore-scripts --prefix "$NPM" >"$NPM/install.log" 2>&1; then
        echo "skip: npm install of playwright-core failed: $(grep -m1 -E 'error' "$NPM/install.log" || echo '?')"
        rm -f "$NPM/package.json"
        exit 0
    fi
fi
cp tests/serve/page_test.mjs "$NPM/page_test.mjs"

T=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$T/serve.err" ] && tail -n 5 "$T/serve.err"; exit 1; }

bash tests/make_demo_model.sh "$T/dm" >/dev/null
"$BIN/ggconvert" -q -t nf4 -o "$T/base.gg" "$T/dm" >/dev/null 2>&1 || fail "convert"
bash tests/make_task.sh "$T/task" >/dev/null
"$BIN/ggtrain" -q -m "$T/base.gg" -d "$T/task/train.jsonl" -o "$T/ad.gg" --max-steps 6 --lr 2e-2 --micro-batch 4 \
    --seq-len 64 --threads 2 >/dev/null 2>&1 || fail "ggtrain"
KEY=page-key
"$BIN/ggserve" -m "$T/base.gg" --name base --lora sft="$T/ad.gg" --port 0 --api-key "$KEY" --chat-template alpaca \
    --threads 1 2>"$T/serve.err" &
PID=$!
for _ in $(seq 100); do grep -q '^listening on' "$T/serve.err" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$T/serve.err")
[ -n "$PORT" ] || fail "server did not start: $(cat "$T/serve.err")"
code=$(curl -s -o "$T/page.html" -w '%{http_code}' "http://127.0.0.1:$PORT/")
[ "$code" = 200 ] && grep -q '<title>ggserve</title>' "$T/page.html" || fail "GET /: HTTP $code"
grep -qE '(src|href)="https?:' "$T/page.html" && fail "the page loads external assets"

want=$("$BIN/gggen" -q -m "$T/base.gg" -a "$T/ad.gg" --chat --template alpaca -p "Tell me the capital of Japan." -n 200 \
    --temp 0 -t 1)
timeout 90 node "$NPM/page_test.mjs" "http://127.0.0.1:$PORT/" "$KEY" base sft "$CHROMIUM" >"$T/out.json" 2>"$T/node.err" ||
    fail "page test: $(tail -n 20 "$T/node.err")"
node - "$T/out.json" "$want" <<'JS' || fail "page: $(cat "$T/out.json")"
const r = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
const want = "msg assistant: " + process.argv[3];
const ok = r.errors.length === 0 && r.models.join(",") === "base,sft" && r.answers.length === 2 &&
  r.answers.every((a) => a.startsWith("msg assistant: ") && a.length > 16) && r.answers[1] === want &&
  r.updates.every((n) => n >= 1) && r.streams.length === 2 &&
  r.streams.every((x) => x.type === "text/event-stream" && x.events >= 3 && x.done);
if (!ok) { console.error("want adapter answer: " + JSON.stringify(want)); process.exit(1); }
JS
echo "t_ggserve_page: ok ($(node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1]));process.stdout.write(r.updates.join("+")+" streamed updates")' "$T/out.json"))"

// serve_load.mjs — a small load client for ggserve (node built-ins only):
// C concurrent connections issue N /v1/completions requests in all
// (round-robin over --models), streamed or not, and the run prints one
// JSON object: status counts, generated tokens, tokens/s, latency p50/p99,
// time-to-first-token p50/p99 (streams).
//
//   node bench/serve_load.mjs --url http://127.0.0.1:8080 [--key K]
//        [--conns C] [--requests N] [--max-tokens T] [--stream]
//        [--models a,b] [--prompt TEXT] [--check]
//
// --check: every answer must be well formed — a 200 with choices and
// usage, or an OpenAI error object (and Retry-After on a 503); counted in
// bad_bodies / retry_after_missing. errors counts failed connections.
import http from "node:http";

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const flag = (name) => args.includes(`--${name}`);
const url = new URL(opt("url", "http://127.0.0.1:8080"));
const key = opt("key", "");
const conns = Number(opt("conns", 4));
const total = Number(opt("requests", 16));
const maxTokens = Number(opt("max-tokens", 32));
const stream = flag("stream");
const check = flag("check");
const models = opt("models", "").split(",").filter(Boolean);
const prompt = opt("prompt", "Once upon a time");

const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
const res = { status: {}, errors: 0, bad_bodies: 0, retry_after_missing: 0, gen_tokens: 0 };
const lat = [], ttft = [];
let issued = 0;

function one(i) {
  return new Promise((resolve) => {
    const body = { prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true };
    if (models.length) body.model = models[i % models.length];
    if (stream) Object.assign(body, { stream: true, stream_options: { include_usage: true } });
    const data = JSON.stringify(body);
    const t0 = performance.now();
    let first = 0;
    const req = http.request(
      {
        agent, hostname: url.hostname, port: url.port, path: "/v1/completions", method: "POST",
        headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data),
                   ...(key ? { Authorization: `Bearer ${key}` } : {}) },
      },
      (r) => {
        let buf = "";
        r.setEncoding("utf8");
        r.on("data", (c) => {
          if (!first && stream && r.statusCode === 200 && c.includes('"text":"')) first = performance.now();
          buf += c;
        });
        r.on("end", () => {
          const code = String(r.statusCode);
          res.status[code] = (res.status[code] || 0) + 1;
          try {
            if (r.statusCode === 200 && stream) {
              const lines = buf.split("\n").filter((l) => l.startsWith("data: "));
              if (lines.pop() !== "data: [DONE]") throw new Error("no [DONE]");
              const u = JSON.parse(lines[lines.length - 1].slice(6)).usage;
              res.gen_tokens += u.completion_tokens;
            } else if (r.statusCode === 200) {
              const o = JSON.parse(buf);
              if (!o.choices || !o.usage) throw new Error("shape");
              res.gen_tokens += o.usage.completion_tokens;
            } else {
              const o = JSON.parse(buf);
              if (typeof o.error?.message !== "string") throw new Error("error shape");
              if (r.statusCode === 503 && !r.headers["retry-after"]) res.retry_after_missing++;
            }
          } catch (e) {
            if (check) res.bad_bodies++;
          }
          if (r.statusCode === 200) {
            lat.push(performance.now() - t0);
            if (first) ttft.push(first - t0);
          }
          resolve();
        });
        r.on("error", () => { res.errors++; resolve(); });
      },
    );
    req.on("error", () => { res.errors++; resolve(); });
    req.end(data);
  });
}

async function worker() {
  while (issued < total) await one(issued++);
}

const pct = (a, p) => {
  if (!a.length) return null;
  const s = [...a].sort((x, y) => x - y);
  return +(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] / 1000).toFixed(4);
};
const t0 = performance.now();
await Promise.all(Array.from({ length: Math.min(conns, total) }, worker));
const wall = (performance.now() - t0) / 1000;
agent.destroy();
Object.assign(res, {
  requests: total, conns, stream, models, max_tokens: maxTokens, wall_s: +wall.toFixed(3),
  tokens_per_s: +(res.gen_tokens / wall).toFixed(2),
  latency_p50_s: pct(lat, 50), latency_p99_s: pct(lat, 99), ttft_p50_s: pct(ttft, 50), ttft_p99_s: pct(ttft, 99),
});
console.log(JSON.stringify(res));

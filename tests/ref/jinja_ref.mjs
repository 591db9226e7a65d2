// jinja_ref.mjs — the reference chat-template renderer: @huggingface/jinja
// (the Jinja of transformers.js). Usage:
//   node tests/ref/jinja_ref.mjs CASES.json [JINJA_MODULE_DIR] > OUT.json
// CASES.json: [{template, messages, add_generation_prompt, bos_token, eos_token, ...}]
// (every key but template and name is a template variable).
// Prints a JSON array: the rendered string per case, or {"error": message}.
// JINJA_MODULE_DIR defaults to build/npm/jinja (npm install --prefix there).
import { readFileSync } from "node:fs";
import { resolve, join } from "node:path";
import { pathToFileURL } from "node:url";

const [casesPath, modDir = "build/npm/jinja"] = process.argv.slice(2);
if (!casesPath) {
  console.error("usage: node jinja_ref.mjs CASES.json [JINJA_MODULE_DIR]");
  process.exit(2);
}
const entry = join(resolve(modDir), "node_modules", "@huggingface", "jinja", "dist", "index.js");
const { Template } = await import(pathToFileURL(entry).href);
const cases = JSON.parse(readFileSync(casesPath, "utf8"));
const out = cases.map((c) => {
  try {
    const { template, name, ...ctx } = c; // name: the test's label, not a variable
    return new Template(template).render(ctx);
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
});
process.stdout.write(JSON.stringify(out, null, 1) + "\n");

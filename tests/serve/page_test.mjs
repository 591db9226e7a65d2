// page_test.mjs — open ggserve's chat page in headless Chromium, check that
// both columns list the models, pick the base in one and an adapter in the
// other, send a message, and wait until each column's answer has streamed
// in: each answer's response is a stream of server-sent events ending with
// [DONE], and the page shows the text as it arrives (updates counts the
// changes of each answer while it streams). Prints one JSON line.
//
//   node page_test.mjs URL KEY BASE ADAPTER [CHROMIUM]
import { chromium } from "playwright-core";

const [url, key, base, adapter, exe = "/usr/bin/chromium"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: exe,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Each answer's HTTP response: a stream of server-sent events.
  const streams = [];
  page.on("response", async (r) => {
    if (!r.url().endsWith("/v1/chat/completions")) return;
    const text = await r.text().catch(() => "");
    streams.push({ type: r.headers()["content-type"], events: text.split("\n").filter((l) => l.startsWith("data: ")).length,
                   done: text.trimEnd().endsWith("data: [DONE]") });
  });
  // The key goes where the page keeps it, before its script runs.
  await page.addInitScript((k) => localStorage.setItem("ggserve.key", k), key);
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(
    (n) => [...document.querySelectorAll(".column select")].every((s) => s.options.length >= n), 2,
    { timeout: 10000 });
  const models = await page.$$eval(".column:first-child select option", (os) => os.map((o) => o.value));
  const selects = await page.$$(".column select");
  await selects[0].selectOption(base);
  await selects[1].selectOption(adapter);
  // Count the updates of each answer while it streams.
  await page.evaluate(() => {
    window.__updates = [0, 0];
    document.querySelectorAll(".column .log").forEach((log, i) =>
      new MutationObserver(() => {
        const a = log.querySelector(".msg.assistant");
        if (a && a.classList.contains("streaming")) window.__updates[i]++;
      }).observe(log, { subtree: true, childList: true, characterData: true }));
  });
  await page.fill("#max_tokens", "200");
  await page.fill("#prompt", "Tell me the capital of Japan.");
  await page.click("#send");
  await page.waitForFunction(
    () => [...document.querySelectorAll(".column .msg.assistant, .column .msg.error")].filter((m) => m.dataset.done).length >= 2,
    null, { timeout: 30000 });
  const answers = await page.$$eval(".column .msg.assistant, .column .msg.error",
                                    (ms) => ms.map((m) => m.className + ": " + m.textContent));
  const updates = await page.evaluate(() => window.__updates);
  const stats = await page.$$eval(".column .stat", (ss) => ss.map((s) => s.textContent));
  for (let i = 0; i < 50 && streams.length < 2; i++) await page.waitForTimeout(100);
  console.log(JSON.stringify({ answers, updates, models, stats, errors, streams }));
} finally {
  await browser.close();
}

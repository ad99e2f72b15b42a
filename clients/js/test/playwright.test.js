// waitForAllTasks, as an end-to-end suite uses it: with a Playwright page signed in to the web
// UI (the wait runs in the page, as its user), and with an API token (the wait runs in Node).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

import { waitForAllTasks } from "../playwright.js";
import { API_URL, client, TOKEN, WS_URL } from "./support.js";

const CHROMIUM = process.env.TASKLIGHT_CHROMIUM || "/usr/bin/chromium";
const USER = process.env.TASKLIGHT_UI_USER || "dev";
const PASSWORD = process.env.TASKLIGHT_UI_PASSWORD || "dev";

let browser;
let page;
const tl = client();

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox"] });
  const context = await browser.newContext({ baseURL: API_URL });
  const signedIn = await context.request.post("/api/v1/session", {
    data: { username: USER, password: PASSWORD },
  });
  assert.ok(signedIn.ok(), await signedIn.text());
  page = await context.newPage();
  await page.goto("/");
});

after(async () => {
  tl.close();
  await browser?.close();
});

test("with a page: resolves once the page's user has nothing pending", async () => {
  const ids = [];
  for (const rounds of [2, 3]) ids.push((await tl.submit("test.count", { rounds, round_s: 0.2 })).id);

  await waitForAllTasks(page, { timeoutMs: 60_000 });

  for (const id of ids) assert.equal((await tl.get(id)).state, "completed");
});

test("with a page: rejects after its timeout, naming the task still pending", async () => {
  const long = await tl.submit("test.count", { rounds: 100, round_s: 0.2 });
  try {
    await assert.rejects(waitForAllTasks(page, { timeoutMs: 1000 }), (error) => {
      assert.match(error.message, new RegExp(`still pending after 1000 ms: ${long.id}`));
      return true;
    });
  } finally {
    await tl.cancel(long.id);
  }
  await waitForAllTasks(page, { timeoutMs: 60_000 });
  assert.equal((await tl.get(long.id)).state, "canceled");
});

test("with a token: resolves once the token's user has nothing pending", async () => {
  const task = await tl.submit("test.count", { rounds: 2, round_s: 0.2 });

  await waitForAllTasks(TOKEN, { apiUrl: API_URL, notifierUrl: WS_URL, timeoutMs: 60_000 });

  assert.equal((await tl.get(task.id)).state, "completed");
  await assert.rejects(waitForAllTasks(42), TypeError);
});

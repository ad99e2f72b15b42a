// The README's worked examples are files of examples/, and they run as the README says:
// quickstart.js in Node, wait-for-all.spec.js with Playwright Test.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

test("the README shows examples/quickstart.js as it is", async () => {
  const readme = await readFile(here("../README.md"), "utf8");
  const example = await readFile(here("../examples/quickstart.js"), "utf8");
  const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  const shown = blocks.filter((block) => block.includes("await tl.submit("));
  assert.ok(shown.length > 0, "the README shows no part of examples/quickstart.js");
  for (const block of shown) assert.ok(example.includes(block), `not in the example:\n${block}`);
});

test("examples/quickstart.js runs and prints what the README says", async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--experimental-websocket", here("../examples/quickstart.js")],
    { env: process.env, timeout: 120_000 },
  );
  assert.deepEqual(stdout.trim().split("\n"), [
    'counted: {"counted":3} shown: completed 3/3',
    "refused: 422 urn:tasklight:problem:invalid-task",
    "pending: 0",
  ]);
});

test("the README shows examples/wait-for-all.spec.js as it is", async () => {
  const readme = await readFile(here("../README.md"), "utf8");
  const spec = await readFile(here("../examples/wait-for-all.spec.js"), "utf8");
  const part = readme.split("## In end-to-end tests")[1].split("\n## ")[0];
  const block = part.match(/```js\n([\s\S]*?)```/)?.[1];
  assert.ok(block, "the README's end-to-end part shows no JavaScript block");
  assert.ok(spec.endsWith(block), `not the end of examples/wait-for-all.spec.js:\n${block}`);
});

test("examples/wait-for-all.spec.js passes under Playwright Test", async () => {
  const cli = here("../node_modules/@playwright/test/cli.js");
  const output = await mkdtemp(join(tmpdir(), "tasklight-playwright-"));
  try {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [cli, "test", "--config", here("../examples/playwright.config.js")],
      { cwd: here(".."), env: { ...process.env, TASKLIGHT_PLAYWRIGHT_OUTPUT: output }, timeout: 120_000 },
    ).catch((error) => {
      // Playwright Test's own report says what failed: show it, not only the exit status
      throw new Error(`Playwright Test failed:\n${error.stdout}\n${error.stderr}`);
    });
    assert.match(stdout, /\b1 passed\b/);
    assert.doesNotMatch(stdout, /skipped|flaky/);
  } finally {
    await rm(output, { recursive: true, force: true });
  }
});

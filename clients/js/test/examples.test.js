// The README's worked example is examples/quickstart.js, and it runs as the README says.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
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

// tasklight.js in Node against a running tasklight: REST, push, waiting, and a dead connection.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ProblemError, WaitTimeoutError, isFinal } from "../tasklight.js";
import { client, stallingProxy, TOKEN, until } from "./support.js";

test("a task is submitted, followed version by version, and waited for", async () => {
  const tl = client();
  try {
    const task = await tl.submit("test.count", { rounds: 3, round_s: 0.05 }, { metadata: { n: 1 } });
    assert.equal(task.state, "waiting");
    const versions = [];
    const stop = tl.watch(task.id, (seen) => seen && versions.push(seen.version));
    const done = await tl.waitFor(task.id, { timeoutMs: 60_000 });
    stop();
    assert.deepEqual(done.result, { counted: 3 });
    assert.deepEqual(done.metadata, { n: 1 });
    assert.deepEqual(versions, [...versions].sort((a, b) => a - b), "versions only go up");
    assert.equal(versions.at(-1), done.version);
    const history = await tl.events(task.id);
    assert.equal(history.at(-1).target, "completed");
  } finally {
    tl.close();
  }
});

test("a refusal is a ProblemError with its problem details", async () => {
  const tl = client();
  try {
    await assert.rejects(tl.submit("test.count", { rounds: -1 }), (error) => {
      assert.ok(error instanceof ProblemError);
      assert.equal(error.status, 422);
      assert.equal(error.problem.type, "urn:tasklight:problem:invalid-task");
      return true;
    });
  } finally {
    tl.close();
  }
});

test("waitForAll resolves when nothing is pending and names what is on timeout", async () => {
  const tl = client();
  try {
    for (const rounds of [1, 2, 3]) await tl.submit("test.count", { rounds, round_s: 0.05 });
    await tl.waitForAll({ timeoutMs: 60_000 });
    assert.deepEqual((await tl.list({ group: "pending" })).results, []);

    const long = await tl.submit("test.count", { rounds: 100, round_s: 0.2 });
    await assert.rejects(tl.waitForAll({ timeoutMs: 1000 }), (error) => {
      assert.ok(error instanceof WaitTimeoutError);
      assert.deepEqual(error.pending.map((t) => t.id), [long.id]);
      assert.match(error.message, new RegExp(`still pending after 1000 ms: ${long.id} \\(test.count`));
      return true;
    });
    await tl.cancel(long.id);
    assert.ok(isFinal((await tl.waitFor(long.id, { timeoutMs: 60_000 })).state));
  } finally {
    tl.close();
  }
});

test("a wrong token is refused: waitForAll rejects instead of waiting", async () => {
  const tl = client({ token: `${TOKEN}-wrong` });
  try {
    await assert.rejects(tl.waitForAll({ timeoutMs: 20_000 }), (error) => {
      assert.ok(error instanceof ProblemError);
      assert.equal(error.status, 401);
      return true;
    });
    assert.equal(tl.status, "unauthorized");
  } finally {
    tl.close();
  }
});

test("a connection that goes silent shows reconnecting within seconds", async () => {
  const proxy = await stallingProxy();
  const tl = client({ notifierUrl: proxy.url });
  const statuses = [];
  tl.on("status", ({ status }) => statuses.push(status));
  try {
    const task = await tl.submit("test.count", { rounds: 100, round_s: 0.2 });
    tl.watch(task.id, () => {});
    await until(() => tl.status === "live");
    const stalledAt = Date.now();
    proxy.stall();
    await until(() => tl.status === "reconnecting", 20_000);
    const noticedMs = Date.now() - stalledAt;
    // A ping every 3 s whose pong is due within 2 s: given up within 5 s.
    assert.ok(noticedMs < 7_000, `took ${noticedMs} ms`);
    assert.deepEqual(statuses.slice(0, 3), ["connecting", "live", "reconnecting"]);
    await tl.cancel(task.id);
  } finally {
    tl.close();
    await proxy.close();
  }
});

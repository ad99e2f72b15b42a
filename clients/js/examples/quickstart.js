// @ts-check
// The worked example of clients/js/README.md, run by test/examples.test.js against a running
// tasklight and type-checked against tasklight.d.ts by `npm run typecheck`:
//
//   TASKLIGHT_API_URL=http://127.0.0.1:8000 TASKLIGHT_WS_URL=ws://127.0.0.1:8001/ws \
//   TASKLIGHT_TOKEN=tl_dev_insecure_development_token \
//   node --experimental-websocket examples/quickstart.js
//
// In a page, `new TaskLight()` needs none of these: it finds the notifier in the page's meta tag
// and authenticates with the signed-in user's session cookie.

import { ProblemError, TaskLight } from "tasklight";

const api = process.env.TASKLIGHT_API_URL ?? "http://127.0.0.1:8000";
const tl = new TaskLight({
  apiBase: `${api}/api/v1`,
  notifierUrl: process.env.TASKLIGHT_WS_URL ?? "ws://127.0.0.1:8001/ws",
  token: process.env.TASKLIGHT_TOKEN, // a script's credentials; a page uses its session instead
});

const task = await tl.submit("test.count", { rounds: 3, round_s: 0.1 });
let shown = "";
const stop = tl.watch(task.id, (seen) => {
  // Every newer version, pushed: what a page would render.
  if (seen) shown = `${seen.state} ${seen.progress_reports.at(-1)?.done ?? 0}/3`;
});
const done = await tl.waitFor(task.id, { timeoutMs: 60_000 }); // pushed, never polled
stop();
console.log("counted:", JSON.stringify(done.result), "shown:", shown); // counted: {"counted":3} shown: completed 3/3

try {
  await tl.submit("test.count", { rounds: -1 });
} catch (error) {
  if (!(error instanceof ProblemError)) throw error;
  console.log("refused:", error.status, error.problem.type); // refused: 422 urn:tasklight:problem:invalid-task
}

await tl.submit("test.noop");
await tl.waitForAll({ timeoutMs: 60_000 }); // until none of this user's tasks is pending
const { results } = await tl.list({ group: "pending" });
console.log("pending:", results.length); // pending: 0
tl.close();

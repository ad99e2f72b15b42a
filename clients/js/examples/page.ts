// A page's use of the package, in TypeScript: type-checked against tasklight.d.ts and
// playwright.d.ts by `npm run typecheck` (the same calls run in test/ and in the web UI).

import { TaskLight, isFinal, type Task } from "tasklight";
import { waitForAllTasks, type PageLike } from "tasklight/playwright";

const tl = new TaskLight(); // the page's notifier (meta tag) and session cookie

tl.on("status", ({ status }) => {
  document.body.dataset.connection = status; // "live", "reconnecting", ...
});

function render(task: Task): string {
  const report = task.progress_reports.at(-1);
  const count = report?.total ? ` ${report.done}/${report.total}` : "";
  return `${task.name}: ${task.state}${count}${isFinal(task.state) ? " (done)" : ""}`;
}

export async function start(rounds: number): Promise<Task> {
  const task = await tl.submit("test.count", { rounds }, { metadata: { from: "page" } });
  const stop = tl.watch(task.id, (seen) => {
    if (seen) document.title = render(seen);
  });
  const done = await tl.waitFor(task.id, { timeoutMs: 60_000 });
  stop();
  return done;
}

export async function settle(page: PageLike, token: string): Promise<void> {
  await waitForAllTasks(page, { timeoutMs: 30_000 }); // as the page's user
  await waitForAllTasks(token, { notifierUrl: "ws://127.0.0.1:8001/ws" }); // as the token's
}

// tasklight/playwright: wait, in an end-to-end suite, until none of the user's tasks is pending
// (the "wait for all tasks" step Galaxy's tests take after every change), pushed, not polled.
// It needs no Playwright import: a page is anything with `evaluate`, as Playwright's `Page` is.

import { TaskLight } from "./tasklight.js";

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_NOTIFIER_URL = "ws://127.0.0.1:8001/ws";

function env(name) {
  return globalThis.process?.env?.[name] || undefined;
}

/**
 * Resolve once none of the user's tasks is pending; reject after `timeoutMs` naming those that are.
 *
 * - `target` a Playwright page signed in to tasklight's web UI (or any page that serves
 *   tasklight.js at `moduleUrl`): the wait runs inside the page, as its user, on its session.
 * - `target` an API token (a string): the wait runs here, in Node, as the token's user, on the
 *   notifier at `notifierUrl` (default `TASKLIGHT_WS_URL`, else ws://127.0.0.1:8001/ws).
 */
export async function waitForAllTasks(target, options = {}) {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (typeof target === "string") {
    const tl = new TaskLight({
      notifierUrl: options.notifierUrl ?? env("TASKLIGHT_WS_URL") ?? DEFAULT_NOTIFIER_URL,
      token: target,
      apiBase: `${options.apiUrl ?? env("TASKLIGHT_API_URL") ?? "http://127.0.0.1:8000"}/api/v1`,
    });
    try {
      await tl.waitForAll({ timeoutMs });
    } finally {
      tl.close();
    }
    return;
  }
  if (target && typeof target.evaluate === "function") {
    const args = {
      moduleUrl: options.moduleUrl ?? "/static/tasklight.js",
      notifierUrl: options.notifierUrl ?? null,
      tickets: Boolean(options.tickets),
      timeoutMs,
    };
    await target.evaluate(async ({ moduleUrl, notifierUrl, tickets, timeoutMs }) => {
      const { TaskLight } = await import(moduleUrl);
      const tl = new TaskLight({ ...(notifierUrl ? { notifierUrl } : {}), tickets });
      try {
        await tl.waitForAll({ timeoutMs });
      } finally {
        tl.close();
      }
    }, args);
    return;
  }
  throw new TypeError("waitForAllTasks: give a Playwright page or an API token");
}

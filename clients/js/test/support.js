// What the tests share: where the running tasklight is, a client on it, and a proxy that can go
// silent. The tests run against a running tasklight named by TASKLIGHT_API_URL,
// TASKLIGHT_WS_URL and TASKLIGHT_TOKEN (the server's tests/e2e/test_clients.py starts one).

import net from "node:net";

import { TaskLight } from "../tasklight.js";

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `set ${name}: these tests run against a running tasklight (TASKLIGHT_API_URL, TASKLIGHT_WS_URL, TASKLIGHT_TOKEN)`,
    );
  }
  return value;
}

export const API_URL = required("TASKLIGHT_API_URL");
export const WS_URL = required("TASKLIGHT_WS_URL");
export const TOKEN = required("TASKLIGHT_TOKEN");

/** A client acting with the test token; close it after the test. */
export function client(options = {}) {
  return new TaskLight({ apiBase: `${API_URL}/api/v1`, notifierUrl: WS_URL, token: TOKEN, ...options });
}

/** Resolve once `predicate()` holds, polling every 20 ms; reject after `timeoutMs`. */
export async function until(predicate, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A TCP proxy in front of the notifier that can go silent: after `stall()` it forwards nothing
 * either way and closes nothing, as a network that vanished without a FIN or a RST.
 */
export async function stallingProxy() {
  const target = new URL(WS_URL);
  const sockets = new Set();
  let stalled = false;
  const server = net.createServer((downstream) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const [from, to] of [
      [downstream, upstream],
      [upstream, downstream],
    ]) {
      sockets.add(from);
      from.on("data", (chunk) => {
        if (!stalled) to.write(chunk);
      });
      from.on("error", () => {});
      from.on("close", () => to.destroy());
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `ws://127.0.0.1:${port}${target.pathname}`,
    stall() {
      stalled = true;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

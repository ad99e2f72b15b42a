"""`tasklight.js` alone, in the browser, on a scripted WebSocket: versions, resume, backoff."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page

pytestmark = pytest.mark.e2e

#: A WebSocket stand-in the test drives: it records what the client sends and opens on demand.
FAKE_SOCKET = """
class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url; this.sent = []; this.readyState = 0; FakeSocket.all.push(this);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code) { this.readyState = 3; this.closedWith = code; }
  open() { this.readyState = 1; this.onopen({}); }
  push(message) { this.onmessage({ data: JSON.stringify(message) }); }
  drop(code) { this.readyState = 3; this.onclose({ code }); }
}
"""


def task(version: int, state: str = "running", updated: str = "2026-01-01T00:00:01Z") -> str:
    return (
        f'{{id: "t1", name: "test.count", state: "{state}", version: {version}, '
        f'updated_at: "{updated}", progress_reports: []}}'
    )


async def run(page: Page, body: str) -> Any:
    """Run `body` in an async function with `TaskLight` and `FakeSocket` in scope."""
    script = f"""async () => {{
      const {{ TaskLight }} = await import("/static/tasklight.js");
      {FAKE_SOCKET}
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      {body}
    }}"""
    return await page.evaluate(script)


async def test_callbacks_see_each_version_once_and_never_an_older_one(module_page: Page) -> None:
    seen = await run(
        module_page,
        f"""
        const tl = new TaskLight({{ notifierUrl: "ws://x/ws", WebSocket: FakeSocket,
                                    pingIntervalMs: 0 }});
        const seen = [];
        tl.watch("t1", (t) => seen.push(t.version));
        const socket = FakeSocket.all[0];
        socket.open();
        for (const v of [2, 1, 2, 4, 3, 5]) socket.push({{ type: "task", sub: "s1",
                                                          task: {{ ...{task(0)}, version: v }} }});
        tl.ingest({{ ...{task(0)}, version: 4 }});
        return {{ seen, subscribe: socket.sent[0] }};
        """,
    )

    assert seen["seen"] == [2, 4, 5]
    assert seen["subscribe"] == {"type": "subscribe", "id": "s1", "tasks": ["t1"]}


async def test_after_a_drop_it_reconnects_and_resumes_from_what_it_holds(
    module_page: Page,
) -> None:
    result = await run(
        module_page,
        f"""
        const tl = new TaskLight({{ notifierUrl: "ws://x/ws", WebSocket: FakeSocket,
                                    pingIntervalMs: 0, backoffMs: {{ initial: 20, max: 40 }} }});
        const statuses = [];
        tl.on("status", (e) => statuses.push(e.status));
        tl.subscribe({{ scope: "all" }});
        tl.subscribe({{ tasks: ["t1", "t2"] }});
        const first = FakeSocket.all[0];
        first.open();
        first.push({{ type: "task", sub: "s1", task: {task(7, updated="2026-01-01T00:00:09Z")} }});
        first.drop(1001);
        await sleep(100);
        const second = FakeSocket.all[1];
        second.open();
        return {{ statuses, resent: second.sent, sockets: FakeSocket.all.length }};
        """,
    )

    assert result["statuses"] == ["connecting", "live", "reconnecting", "live"]
    assert result["sockets"] == 2
    assert result["resent"] == [
        {
            "type": "subscribe",
            "id": "s1",
            "scope": "all",
            "since_ts": "2026-01-01T00:00:09Z",
            "since": {"t1": 7},
        },
        {"type": "subscribe", "id": "s2", "tasks": ["t1", "t2"], "since": {"t1": 7}},
    ]


async def test_reconnect_delays_double_up_to_the_ceiling_with_jitter(module_page: Page) -> None:
    delays = await run(
        module_page,
        """
        const tl = new TaskLight({ notifierUrl: "ws://x/ws", WebSocket: FakeSocket,
                                   pingIntervalMs: 0, backoffMs: { initial: 10, max: 80 } });
        const delays = [];
        tl.on("status", (e) => { if (e.delayMs) delays.push(e.delayMs); });
        tl.connect();
        for (let i = 0; i < 6; i++) {
          FakeSocket.all.at(-1).drop(1006);
          await sleep(delays.at(-1) + 30);
        }
        tl.close();
        return delays;
        """,
    )

    ceilings = [10, 20, 40, 80, 80, 80]
    assert len(delays) == len(ceilings)
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling


async def test_a_ping_resolves_with_the_round_trip_and_a_silent_server_is_dropped(
    module_page: Page,
) -> None:
    result = await run(
        module_page,
        """
        const tl = new TaskLight({ notifierUrl: "ws://x/ws", WebSocket: FakeSocket,
                                   pingIntervalMs: 50, pongTimeoutMs: 50,
                                   backoffMs: { initial: 10000, max: 10000 } });
        tl.connect();
        const socket = FakeSocket.all[0];
        socket.open();
        const pinging = tl.ping(1000);
        const ping = socket.sent.at(-1);
        socket.push({ type: "pong", id: ping.id });
        const rtt = await pinging;
        await sleep(200);  // the heartbeat's pings go unanswered
        return { ping, rtt, status: tl.status, closedWith: socket.closedWith };
        """,
    )

    assert result["ping"]["type"] == "ping"
    assert result["rtt"] >= 0
    assert result["status"] == "reconnecting"
    assert result["closedWith"] == 4001

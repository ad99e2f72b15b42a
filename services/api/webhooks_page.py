"""The web UI's webhooks page: a user's endpoints, created, rotated, disabled and watched.

The page is a shell like the others; `static/ui/webhooks.js` fills it from `/api/v1/webhooks`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.api.runtime import RuntimeDep
from services.api.ui import PageUserDep, page

router = APIRouter(include_in_schema=False)


@router.get("/webhooks", response_class=HTMLResponse)
async def webhooks(request: Request, runtime: RuntimeDep, user: PageUserDep) -> HTMLResponse:
    """The user's webhook endpoints and their deliveries."""
    return page(request, runtime, user, name="webhooks", title="Webhooks", body=WEBHOOKS_BODY)


WEBHOOKS_BODY = """
<link rel="stylesheet" href="/static/webhooks.css">
<section class="intro">
  <h1>Webhooks</h1>
  <p>Instead of asking whether your tasks have ended, let tasklight tell your server: each
  event is posted to your endpoint, signed as
  <a href="https://www.standardwebhooks.com/">Standard Webhooks</a>, retried with backoff until
  it is taken (the same <code>webhook-id</code> each time), and listed here with every
  attempt.</p>
</section>
<div class="webhooks">
<section class="card" aria-labelledby="new-webhook-title">
  <h2 id="new-webhook-title">Add an endpoint</h2>
  <form id="webhook-form" class="form webhook-form">
    <label class="stacked" for="webhook-url">URL
      <input id="webhook-url" name="url" type="url" required placeholder="https://example.com/hooks"
        autocomplete="off" spellcheck="false">
    </label>
    <fieldset class="events">
      <legend>Events</legend>
      <label><input type="checkbox" name="events" value="task.completed" checked> completed</label>
      <label><input type="checkbox" name="events" value="task.failed" checked> failed</label>
      <label><input type="checkbox" name="events" value="task.canceled" checked> canceled</label>
      <label><input type="checkbox" name="events" value="task.started"> started</label>
      <label><input type="checkbox" name="events" value="task.progress"> progress</label>
    </fieldset>
    <label class="stacked" for="webhook-types">Task types <span class="muted small">(comma
      separated, <code>demo.*</code> for a family; empty: all)</span>
      <input id="webhook-types" name="task_types" autocomplete="off" spellcheck="false">
    </label>
    <label class="stacked" for="webhook-description">Description
      <input id="webhook-description" name="description" maxlength="500" autocomplete="off">
    </label>
    <p id="webhook-error" class="form-error" role="alert" hidden></p>
    <div class="actions"><button type="submit" class="button primary">Add endpoint</button></div>
  </form>
</section>
<section id="secret-panel" class="card secret-panel" aria-labelledby="secret-title" hidden>
  <h2 id="secret-title">Signing secret</h2>
  <p>Copy it now: it is shown this once. Verify each delivery with it (any Standard Webhooks
  library does).</p>
  <code id="secret-value" class="secret-value"></code>
  <p id="secret-note" class="muted small"></p>
  <div class="actions">
    <button type="button" id="secret-copy" class="button">Copy</button>
    <button type="button" id="secret-done" class="button primary">I have stored it</button>
  </div>
</section>
<section class="card endpoints-card" aria-labelledby="endpoints-title">
  <div class="endpoints-head">
    <h2 id="endpoints-title">Your endpoints</h2>
    <button type="button" id="webhooks-refresh" class="button small">Refresh</button>
  </div>
  <ul id="endpoint-list" class="endpoint-list" aria-live="polite">
    <li class="muted">Loading…</li>
  </ul>
</section>
</div>
"""

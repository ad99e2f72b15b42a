// The webhooks page: a user's endpoints (add, rotate the secret, disable, enable, remove), and
// each endpoint's deliveries with every attempt, which can be sent again by hand.

import { isFinal } from "/static/tasklight.js";
import { fill, formatTime, h } from "/static/ui/dom.js";
import { confirmDialog, showFlash, startShell } from "/static/ui/shell.js";

const API = document.querySelector('meta[name="tasklight-api"]')?.content || "/api/v1";
const { tl } = startShell();
const list = document.getElementById("endpoint-list");
const form = document.getElementById("webhook-form");
const formError = document.getElementById("webhook-error");
const secretPanel = document.getElementById("secret-panel");
/** Endpoints whose deliveries are shown. */
const open = new Set();

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === "tasklight_csrf") return decodeURIComponent(rest.join("="));
  }
  return "";
}

/** A call to the REST API; rejects with the problem's detail. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`${API}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || data.title || `HTTP ${response.status}`);
  return data;
}

function showSecret(secret, note) {
  document.getElementById("secret-value").textContent = secret;
  document.getElementById("secret-note").textContent = note || "";
  secretPanel.hidden = false;
  secretPanel.scrollIntoView({ block: "nearest" });
  document.getElementById("secret-copy").focus();
}

function hideSecret() {
  document.getElementById("secret-value").textContent = "";
  secretPanel.hidden = true;
}

document.getElementById("secret-done").addEventListener("click", hideSecret);
document.getElementById("secret-copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(document.getElementById("secret-value").textContent);
    showFlash({ level: "success", message: "Secret copied." });
  } catch {
    showFlash({ level: "warning", message: "Copying is not allowed here; select it instead." });
  }
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  formError.hidden = true;
  const events = [...form.querySelectorAll('input[name="events"]:checked')].map((i) => i.value);
  const taskTypes = form.elements.task_types.value
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean);
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const created = await api("POST", "/webhooks", {
      url: form.elements.url.value.trim(),
      events,
      task_types: taskTypes,
      description: form.elements.description.value.trim(),
    });
    form.reset();
    showSecret(created.secret, `For ${created.url}.`);
    await refresh();
  } catch (error) {
    formError.textContent = error.message;
    formError.hidden = false;
  } finally {
    button.disabled = false;
  }
});

function stateChip(endpoint) {
  return endpoint.enabled
    ? h("span", { class: "chip state-completed", dataset: { enabled: "true" } }, "Enabled")
    : h("span", { class: "chip state-failed", dataset: { enabled: "false" } }, "Disabled");
}

function endpointItem(endpoint) {
  const actions = h(
    "div",
    { class: "actions" },
    h("button", { type: "button", class: "button small", dataset: { action: "deliveries" }, "aria-expanded": String(open.has(endpoint.id)), onclick: () => toggleDeliveries(endpoint) }, open.has(endpoint.id) ? "Hide deliveries" : "Deliveries"),
    h("button", { type: "button", class: "button small", dataset: { action: "rotate" }, onclick: () => rotate(endpoint) }, "Rotate secret"),
    endpoint.enabled
      ? h("button", { type: "button", class: "button small", dataset: { action: "disable" }, onclick: () => setEnabled(endpoint, false) }, "Disable")
      : h("button", { type: "button", class: "button small primary", dataset: { action: "enable" }, onclick: () => setEnabled(endpoint, true) }, "Enable"),
    h("button", { type: "button", class: "button small danger", dataset: { action: "delete" }, onclick: () => remove(endpoint) }, "Remove"),
  );
  const facts = h(
    "p",
    { class: "muted small" },
    `Events: ${endpoint.events.join(", ")}`,
    ` · Task types: ${endpoint.task_types.length ? endpoint.task_types.join(", ") : "all"}`,
    ` · Added ${formatTime(endpoint.created_at)}`,
    endpoint.last_success_at ? ` · Last success ${formatTime(endpoint.last_success_at)}` : "",
    endpoint.previous_secret_expires_at
      ? ` · Previous secret signs until ${formatTime(endpoint.previous_secret_expires_at)}`
      : "",
  );
  return h(
    "li",
    { class: "endpoint", dataset: { id: endpoint.id } },
    h(
      "div",
      { class: "endpoint-title" },
      stateChip(endpoint),
      h("span", { class: "endpoint-url" }, endpoint.url),
      endpoint.description ? h("span", { class: "muted" }, endpoint.description) : null,
    ),
    endpoint.enabled ? null : h("p", { class: "endpoint-why", role: "note" }, endpoint.disabled_reason || "Disabled"),
    facts,
    actions,
    h("div", { class: "endpoint-deliveries", hidden: !open.has(endpoint.id) }),
  );
}

function attemptLine(attempt) {
  const outcome = attempt.error
    ? attempt.error
    : `HTTP ${attempt.status_code}`;
  return h(
    "li",
    { class: attempt.error ? "attempt-failed" : "attempt-ok", title: new Date(attempt.at).toISOString() },
    `${formatTime(attempt.at)} · ${outcome} · ${Math.round(attempt.latency_ms)} ms`,
  );
}

function deliveriesTable(endpoint, deliveries) {
  if (!deliveries.length) return h("p", { class: "muted small" }, "No deliveries yet.");
  return h(
    "table",
    { class: "deliveries" },
    h("thead", {}, h("tr", {}, h("th", {}, "Event"), h("th", {}, "State"), h("th", {}, "Task"), h("th", {}, "Attempts"), h("th", {}, ""))),
    h(
      "tbody",
      {},
      deliveries.map((delivery) =>
        h(
          "tr",
          { dataset: { id: delivery.id, state: delivery.state } },
          h("td", {}, delivery.event, h("div", { class: "mono small muted" }, delivery.id)),
          h("td", { class: `delivery-state-${delivery.state}` }, delivery.state, delivery.next_attempt_at && delivery.state === "pending" ? h("div", { class: "small muted" }, `next ${formatTime(delivery.next_attempt_at)}`) : null),
          h("td", {}, h("a", { href: `/tasks/${delivery.task_id}`, class: "mono small" }, delivery.task_id.slice(0, 8))),
          h("td", {}, delivery.attempts.length ? h("ul", { class: "attempts" }, delivery.attempts.map(attemptLine)) : h("span", { class: "muted small" }, "none yet")),
          h("td", {}, h("button", { type: "button", class: "button small", dataset: { action: "replay" }, onclick: () => replay(endpoint, delivery) }, "Replay")),
        ),
      ),
    ),
  );
}

/** Show an endpoint's deliveries; resolves with them (null if they could not be read). */
async function loadDeliveries(endpoint) {
  const item = list.querySelector(`[data-id="${endpoint.id}"] .endpoint-deliveries`);
  if (!item) return null;
  try {
    const page = await api("GET", `/webhooks/${endpoint.id}/deliveries?limit=50`);
    fill(item, deliveriesTable(endpoint, page.results));
    return page.results;
  } catch (error) {
    fill(item, h("p", { class: "error-text" }, `Deliveries could not be read: ${error.message}`));
    return null;
  }
}

/** After a replay: show the delivery again each time it may have been attempted, until it has
 * been (the attempt is not pushed; this looks a few times, backing off, for at most a minute). */
async function followReplay(endpoint, deliveryId) {
  let wait = 500;
  for (let waited = 0; waited < 60_000; waited += wait, wait = Math.min(wait * 2, 8000)) {
    await new Promise((resolve) => setTimeout(resolve, wait));
    const shown = await loadDeliveries(endpoint);
    const delivery = shown && shown.find((d) => d.id === deliveryId);
    if (!delivery || delivery.state !== "pending") return;
  }
}

async function toggleDeliveries(endpoint) {
  if (open.has(endpoint.id)) open.delete(endpoint.id);
  else open.add(endpoint.id);
  await refresh();
}

async function rotate(endpoint) {
  const yes = await confirmDialog({
    title: "Rotate the secret?",
    body: [h("p", {}, "A new secret signs every delivery from now on. The current one goes on signing beside it for a while, so your receiver can switch over.")],
    yes: "Rotate",
    no: "Keep it",
  });
  if (!yes) return;
  try {
    const rotated = await api("POST", `/webhooks/${endpoint.id}/rotate-secret`);
    const until = rotated.previous_secret_expires_at;
    showSecret(rotated.secret, until ? `The previous secret signs too until ${formatTime(until)}.` : "");
    await refresh();
  } catch (error) {
    showFlash({ level: "error", message: `Not rotated: ${error.message}` });
  }
}

async function setEnabled(endpoint, enabled) {
  try {
    await api("PATCH", `/webhooks/${endpoint.id}`, { enabled });
    await refresh();
  } catch (error) {
    showFlash({ level: "error", message: error.message });
  }
}

async function remove(endpoint) {
  const yes = await confirmDialog({
    title: "Remove this endpoint?",
    body: [h("p", {}, `Nothing more is sent to ${endpoint.url}, and its deliveries are forgotten.`)],
    yes: "Remove",
    no: "Keep it",
  });
  if (!yes) return;
  try {
    await api("DELETE", `/webhooks/${endpoint.id}`);
    open.delete(endpoint.id);
    await refresh();
  } catch (error) {
    showFlash({ level: "error", message: error.message });
  }
}

async function replay(endpoint, delivery) {
  try {
    await api("POST", `/webhooks/${endpoint.id}/deliveries/${delivery.id}/replay`);
    showFlash({ level: "info", message: `Sending ${delivery.event} again (${delivery.id}).` });
    await loadDeliveries(endpoint);
    followReplay(endpoint, delivery.id);
  } catch (error) {
    showFlash({ level: "error", message: `Not replayed: ${error.message}` });
  }
}

async function refresh() {
  try {
    const { results } = await api("GET", "/webhooks");
    if (!results.length) {
      fill(list, h("li", { class: "muted" }, "No endpoints yet: add one above."));
      return;
    }
    fill(list, results.map(endpointItem));
    await Promise.all(results.filter((e) => open.has(e.id)).map(loadDeliveries));
  } catch (error) {
    fill(list, h("li", { class: "error-text" }, `Endpoints could not be read: ${error.message}`));
  }
}

document.getElementById("webhooks-refresh").addEventListener("click", refresh);

// A task of the user that ends is delivered a moment later: show it then, without polling.
let soon = null;
tl.subscribe(
  { scope: "all" },
  {
    onTask: (task) => {
      if (!isFinal(task.state) || open.size === 0) return;
      clearTimeout(soon);
      soon = setTimeout(refresh, 750);
    },
  },
);

refresh();

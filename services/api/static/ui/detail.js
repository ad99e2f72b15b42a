// The task detail page: everything about one task, live, with its history of state changes.

import { groupOf, isFinal, setFlash } from "/static/tasklight.js";
import {
  attemptLabel,
  cancelQuestion,
  fill,
  formatAgo,
  formatDuration,
  h,
  idFromHref,
  loadTaskTitles,
  plural,
  progressBar,
  reportCount,
  stateChip,
  stateLabel,
  taskDurationMs,
  taskTitle,
  tickCountdowns,
  timeElement,
  waitingLine,
} from "/static/ui/dom.js";
import { confirmDialog, showFlash, startShell } from "/static/ui/shell.js";

const initial = JSON.parse(document.getElementById("page-data").textContent);
const { tl } = startShell();
const root = document.getElementById("detail");
let events = [];
let eventsForState = null;
let children = null; // the subscription to the child tasks
let titles = new Map(); // task type name -> title
loadTaskTitles(tl.apiBase).then((loaded) => {
  titles = loaded;
  scheduleRender();
});

function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

function field(label, ...value) {
  return [h("dt", {}, label), h("dd", {}, ...value)];
}

function section(title, ...content) {
  return h("section", { class: "card detail-section" }, h("h2", {}, title), ...content);
}

function render(task) {
  if (!task) {
    fill(
      root,
      h("section", { class: "card empty-state" }, h("h1", {}, "Task deleted"), h("p", {}, h("a", { href: "/" }, "Back to the overview"))),
    );
    return;
  }
  document.body.dataset.taskState = task.state;
  document.body.dataset.taskPhase = task.phase || "";
  const focusKey = document.activeElement?.dataset?.key;
  const duration = taskDurationMs(task);
  const pending = groupOf(task.state) === "pending";
  const actions = h(
    "div",
    { class: "actions" },
    pending
      ? h("button", { type: "button", class: "button danger", dataset: { key: "cancel" }, disabled: task.state === "canceling", onclick: () => cancel(task) }, "Cancel task")
      : h("button", { type: "button", class: "button", dataset: { key: "delete" }, onclick: () => remove(task) }, "Delete"),
  );
  const worker = workerFacts(task);
  const title = taskTitle(task, titles);

  const parentId = idFromHref(task.parent_task);
  const childIds = (task.child_tasks || []).map(idFromHref);
  ensureChildren(childIds);

  fill(
    root,
    h(
      "div",
      { class: "detail-head" },
      h(
        "div",
        {},
        h("p", { class: "crumbs" }, h("a", { href: "/" }, "Overview"), " / task"),
        h("h1", {}, h("span", { class: "task-heading" }, title), " ", stateChip(task.state)),
        h("p", { class: "muted small" }, h("span", { class: "mono" }, task.name), " · ", h("span", { class: "mono" }, task.id)),
      ),
      actions,
    ),
    h(
      "div",
      { class: "detail-grid" },
      section(
        "Summary",
        h(
          "dl",
          { class: "facts" },
          field("State", stateLabel(task.state)),
          task.phase === "blocked" || task.phase === "scheduled" ? field("Waiting", waitingLine(task)) : null,
          task.run_at ? field("Scheduled for", timeElement(task.run_at)) : null,
          task.priority ? field("Priority", "high") : null,
          field("Created", timeElement(task.created_at)),
          field("Started", timeElement(task.started_at)),
          field("Finished", timeElement(task.finished_at)),
          field("Updated", timeElement(task.updated_at)),
          field("Duration", h("span", { "data-duration": "" }, duration === null ? "—" : formatDuration(duration))),
          h("dt", {}, "Worker"),
          h("dd", { class: "worker" }, ...worker),
          field("Runs", task.runs ? plural(task.runs, "run") : "none yet"),
          field("Owner", task.owner),
          field("Version", String(task.version)),
          field("Parent", parentId ? h("a", { href: `/tasks/${parentId}`, class: "mono" }, parentId) : "—"),
        ),
      ),
      section(
        "Progress",
        task.progress_reports.length === 0
          ? h("p", { class: "muted" }, isFinal(task.state) ? "It reported no progress." : "No progress reported yet.")
          : h(
              "ul",
              { class: "reports" },
              task.progress_reports.map((report) =>
                h(
                  "li",
                  {},
                  h(
                    "div",
                    { class: "report-line" },
                    h("span", { class: "report-what" }, report.message, " ", h("span", { class: "muted small mono" }, report.code)),
                    h("span", { class: "report-count muted" }, [reportCount(report), stateLabel(report.state)].filter(Boolean).join(" · ")),
                  ),
                  progressBar(report, report.state === "completed" ? "completed" : task.state),
                ),
              ),
            ),
      ),
      (task.reservations || []).length
        ? section(
            "Reservations",
            h(
              "ul",
              { class: "reservations" },
              task.reservations.map((r) =>
                h("li", { dataset: { resource: r.resource } }, h("span", { class: "mono" }, r.resource), " ", h("span", { class: "muted small" }, r.mode === "exclusive" ? "exclusive" : "shared")),
              ),
            ),
          )
        : null,
      section("Runs", runList(task)),
      section("Arguments", json(task.args)),
      task.error
        ? section("Error", h("p", { class: "error-text" }, h("strong", {}, task.error.type), ": ", task.error.message))
        : section("Result", task.result === null ? h("p", { class: "muted" }, isFinal(task.state) ? "None." : "Not yet.") : json(task.result)),
      childIds.length ? section("Child tasks", childList(childIds)) : null,
      Object.keys(task.metadata || {}).length ? section("Metadata", json(task.metadata)) : null,
      task.ui ? section("Waiting page", json(task.ui)) : null,
      section("History", historyTable()),
    ),
  );
  if (focusKey) root.querySelector(`[data-key="${focusKey}"]`)?.focus();
  refreshEvents(task);
}

/**
 * The worker, told by the task's phase: only a held task has a worker holding it. The task keeps
 * the last run's worker after that run lets go of it (a retry's delay, a hand-back, a question,
 * waiting for children), so the name alone does not mean a worker holds it now.
 */
function workerFacts(task) {
  if (!task.worker) {
    return [h("span", { class: "muted" }, isFinal(task.state) ? "none (it never ran)" : "not picked up yet")];
  }
  const name = h("span", { class: "mono" }, task.worker.name);
  if (isFinal(task.state)) {
    return [
      name,
      task.worker.missing ? h("span", { class: "chip state-failed" }, "went missing") : null,
      h("div", { class: "muted small" }, "ran it until it ended, ", timeElement(task.finished_at)),
    ];
  }
  if (task.phase === "held") {
    return [
      name,
      task.worker.missing ? h("span", { class: "chip state-failed" }, "missing") : h("span", { class: "chip state-completed" }, "alive"),
      // The task records when this run took it; the worker's lease, renewed every second, is on
      // the worker's own record, and the worker is marked missing here once it lapses.
      h(
        "div",
        { class: "muted small", title: task.worker.last_heartbeat || "" },
        "took it ",
        h("span", { "data-ago": task.worker.last_heartbeat || "" }, formatAgo(task.worker.last_heartbeat)),
        ", holds it under a lease",
      ),
    ];
  }
  return [
    h("span", { class: "chip" }, "none holds it"),
    h("div", { class: "muted small not-held" }, ...notHeldReason(task)),
    h("div", { class: "muted small" }, "last run on ", name),
  ];
}

const RELEASED_BECAUSE = {
  retry: "its last run failed and is retried",
  worker_lost: "its worker went missing",
  hand_back: "its worker handed it back as it stopped",
  asked: "its question was answered",
};

/** Why no worker holds a started task, and what it waits for. */
function notHeldReason(task) {
  if (task.phase === "awaiting_answer") {
    return ["No worker holds it while it waits for its owner's answer."];
  }
  if (task.phase === "awaiting_children") {
    return ["No worker holds it: its handler returned, and it ends when its child tasks have."];
  }
  // Released: the last attempt says why (each release records one), and a retry when it is due.
  const attempts = task.attempts || [];
  const last = attempts[attempts.length - 1];
  const because = last ? RELEASED_BECAUSE[last.outcome] || attemptLabel(last.outcome) : null;
  const due = last && last.retry_in_s && last.ended_at ? new Date(Date.parse(last.ended_at) + last.retry_in_s * 1000).toISOString() : null;
  return [
    "No worker holds it: it waits to be run again",
    because ? ` (${because})` : "",
    due ? [", ", h("span", { "data-due": due }, dueText(due))] : "",
    ".",
  ];
}

/** "due in 1.2 s", or once that time has passed, that it waits for a free worker. */
function dueText(iso) {
  const left = Date.parse(iso) - Date.now();
  return left > 0 ? `due in ${formatDuration(left)}` : "due now, for the next free worker";
}

/** Every run of the task: those that did not end it (attempts), then the one that did or runs. */
function runList(task) {
  const attempts = task.attempts || [];
  if (!task.runs && attempts.length === 0) return h("p", { class: "muted" }, "Not started yet.");
  const items = attempts.map((attempt, index) =>
    h(
      "li",
      { class: "run", dataset: { outcome: attempt.outcome } },
      h("strong", {}, `Run ${index + 1}`),
      ` ${attemptLabel(attempt.outcome)}`,
      attempt.worker ? [" on ", h("span", { class: "mono" }, attempt.worker)] : null,
      attempt.ended_at ? [", ", timeElement(attempt.ended_at)] : null,
      attempt.error ? h("div", { class: "error-text small" }, `${attempt.error.type}: ${attempt.error.message}`) : null,
      attempt.retry_in_s ? h("div", { class: "muted small" }, `next run after ${formatDuration(attempt.retry_in_s * 1000)}`) : null,
    ),
  );
  if (task.runs > attempts.length) {
    const last = isFinal(task.state)
      ? `ended ${stateLabel(task.state).toLowerCase()}`
      : task.state === "waiting"
        ? "waiting to run again"
        : task.phase === "awaiting_children"
          ? "returned; the task waits for its child tasks"
          : stateLabel(task.state).toLowerCase();
    items.push(
      h(
        "li",
        { class: "run", dataset: { outcome: task.state } },
        h("strong", {}, `Run ${task.runs}`),
        ` ${last}`,
        task.worker ? [" on ", h("span", { class: "mono" }, task.worker.name)] : null,
      ),
    );
  }
  return h("ol", { class: "runs" }, items);
}

function childList(childIds) {
  return h(
    "ul",
    { class: "children" },
    childIds.map((id) => {
      const child = tl.task(id);
      return h(
        "li",
        {},
        h("a", { href: `/tasks/${id}` }, child ? child.name : "task"),
        h("span", { class: "mono muted small", title: id }, id.slice(-12)),
        child ? stateChip(child.state) : h("span", { class: "muted" }, "…"),
      );
    }),
  );
}

function ensureChildren(childIds) {
  const key = childIds.join(",");
  if (children && children.key === key) return;
  if (children) children.sub.close();
  if (childIds.length === 0) {
    children = null;
    return;
  }
  const sub = tl.subscribe({ tasks: childIds }, { onTask: () => scheduleRender() });
  children = { key, sub };
}

function historyTable() {
  if (events.length === 0) return h("p", { class: "muted" }, "Loading…");
  return h(
    "table",
    { class: "history" },
    h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Change"), h("th", {}, "Worker"), h("th", {}, "Reason"))),
    h(
      "tbody",
      {},
      events.map((event) =>
        h(
          "tr",
          {},
          h("td", {}, timeElement(event.at)),
          h("td", {}, event.source ? [stateChip(event.source), " → "] : "", stateChip(event.target)),
          h("td", { class: "mono small" }, event.worker || "—"),
          h("td", {}, event.reason || ""),
        ),
      ),
    ),
  );
}

function refreshEvents(task) {
  // The history changes only with the state: read it again only then.
  if (eventsForState === task.state) return;
  eventsForState = task.state;
  tl.events(task.id).then(
    (list) => {
      events = list;
      scheduleRender();
    },
    () => {
      eventsForState = null;
    },
  );
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render(tl.task(initial.id));
  });
}

async function cancel(task) {
  const ok = await confirmDialog(cancelQuestion(task, taskTitle(task, titles)));
  if (!ok) return;
  try {
    await tl.cancel(task.id);
  } catch (error) {
    showFlash({ level: "error", message: `Could not cancel: ${error.message}` });
  }
}

async function remove(task) {
  const title = taskTitle(task, titles);
  const ok = await confirmDialog({
    title: `Delete “${title}”?`,
    body: [h("p", {}, "Its result, error and history are removed for good; this cannot be undone.")],
    yes: "Delete",
    no: "Keep it",
  });
  if (!ok) return;
  try {
    await tl.delete(task.id);
    setFlash({ level: "info", message: `“${title}” deleted.` });
    window.location.assign("/");
  } catch (error) {
    showFlash({ level: "error", message: `Could not delete: ${error.message}` });
  }
}

tl.ingest(initial);
render(initial);
tl.watch(initial.id, () => scheduleRender());
setInterval(() => {
  tickCountdowns(root);
  for (const element of root.querySelectorAll("[data-ago]")) element.textContent = formatAgo(element.dataset.ago);
  for (const element of root.querySelectorAll("[data-due]")) element.textContent = dueText(element.dataset.due);
  const task = tl.task(initial.id);
  const element = root.querySelector("[data-duration]");
  const duration = task && !task.finished_at ? taskDurationMs(task) : null;
  if (element && duration !== null) element.textContent = formatDuration(duration);
}, 1000);

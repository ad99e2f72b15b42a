// Small DOM and formatting helpers shared by the pages.

/** Build an element: h("a", {href: "/", class: "x"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      element.className = value;
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `element`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

// One time format everywhere: the date and the time to the second, in the reader's locale and
// time zone ("Dec 1, 11:29:35 PM"); the exact UTC timestamp is in each one's tooltip.
const timeFormat = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

/** A time for people, in the one format the UI uses. */
export function formatTime(iso) {
  if (!iso) return "—";
  return timeFormat.format(new Date(iso));
}

/** A `<time>` element showing `iso` in the UI's format, the exact timestamp as its tooltip. */
export function timeElement(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: new Date(iso).toISOString() }, formatTime(iso));
}

/** "1 round", "3 rounds": `count` and the word in the form its number takes. */
export function plural(count, singular, pluralForm = `${singular}s`) {
  return `${count} ${count === 1 ? singular : pluralForm}`;
}

/** A duration in milliseconds as "850 ms", "4.2 s", "3 min 05 s", "1 h 02 min". */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.floor(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

/** "5 s ago", "3 min ago". */
export function formatAgo(iso) {
  if (!iso) return "never";
  return `${formatDuration(Date.now() - Date.parse(iso))} ago`;
}

/** How long a task ran (or has run so far, or has waited); null before it started. */
export function taskDurationMs(task) {
  if (!task.started_at) return null;
  const end = task.finished_at ? Date.parse(task.finished_at) : Date.now();
  return end - Date.parse(task.started_at);
}

let titles = null;

/** The task types' titles by name (`GET /task-types`), fetched once per page. */
export function loadTaskTitles(apiBase) {
  if (!titles) {
    titles = fetch(`${apiBase}/task-types`, { headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : []))
      .then((types) => new Map(types.map((type) => [type.name, type.title])))
      .catch(() => new Map());
  }
  return titles;
}

/** What people call a task: its waiting-page header, else its type's title, else its type. */
export function taskTitle(task, typeTitles = new Map()) {
  return (task.ui && task.ui.header) || typeTitles.get(task.name) || task.name;
}

const STATE_LABELS = {
  waiting: "Queued",
  running: "Running",
  canceling: "Canceling",
  completed: "Completed",
  failed: "Failed",
  canceled: "Canceled",
};

/** The label of a task state. */
export function stateLabel(state) {
  return STATE_LABELS[state] || state;
}

/** A state chip. */
export function stateChip(state) {
  return h("span", { class: `chip state-${state}`, dataset: { state } }, stateLabel(state));
}

/** The report a row shows: the first one still running, else the last. */
export function currentReport(task) {
  const reports = task.progress_reports || [];
  return reports.find((r) => r.state === "running") || reports[reports.length - 1] || null;
}

/** A progress bar for a report ({done, total}); indeterminate without a total. */
export function progressBar(report, state) {
  const bar = h("div", { class: "progress", role: "progressbar", "aria-label": "Progress" });
  const fillEl = h("div", { class: "progress-fill" });
  bar.append(fillEl);
  updateProgressBar(bar, report, state);
  return bar;
}

/** Set a progress bar made by `progressBar` to a new report and task state. */
export function updateProgressBar(bar, report, state) {
  const fillEl = bar.firstElementChild;
  const total = report && report.total;
  let percent;
  if (state === "completed") percent = 100;
  else if (total) percent = Math.min(100, Math.round((100 * report.done) / total));
  else percent = null;
  bar.classList.toggle("indeterminate", percent === null && state === "running");
  bar.dataset.state = state;
  if (percent === null) {
    bar.removeAttribute("aria-valuenow");
    fillEl.style.width = state === "running" ? "" : "0%";
  } else {
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", String(percent));
    fillEl.style.width = `${percent}%`;
  }
}

/** The line under a task's name: its current step and count, or its error. */
export function taskMessage(task) {
  if (task.error && (task.state === "failed" || task.state === "canceled")) {
    return task.error.message;
  }
  if (task.state === "waiting") return "Waiting for a worker";
  if (task.state === "canceled") return "Canceled";
  const report = currentReport(task);
  if (!report) return task.state === "running" ? "Starting" : "";
  const count = reportCount(report);
  return `${report.message}${count ? ` · ${count}` : ""}`;
}

/** A report's count: "1/3 rounds", "4 files", or "" when it has none yet. */
export function reportCount(report) {
  const suffix = report.suffix ? ` ${report.suffix}` : "";
  if (report.total) return `${report.done}/${report.total}${suffix}`;
  return report.done ? `${report.done}${suffix}` : "";
}

const ATTEMPT_LABELS = {
  retry: "failed, retried",
  worker_lost: "its worker went missing; requeued",
  hand_back: "handed back when its worker stopped",
  asked: "asked its owner a question, and waited for the answer",
};

/** Why a run did not end its task, for people. */
export function attemptLabel(outcome) {
  return ATTEMPT_LABELS[outcome] || outcome;
}

/** The id at the end of a task href ("/api/v1/tasks/<id>"). */
export function idFromHref(href) {
  return href ? href.split("/").filter(Boolean).pop() : null;
}

/** Keep Tab and Shift+Tab inside `dialog` while it is open. */
export function trapFocus(dialog) {
  if (dialog.dataset.trapped) return;
  dialog.dataset.trapped = "1";
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") return;
    const focusable = [
      ...dialog.querySelectorAll("a[href], button, input, select, textarea, [tabindex]"),
    ].filter((el) => !el.disabled && el.tabIndex >= 0 && el.getClientRects().length > 0);
    if (focusable.length === 0) {
      event.preventDefault();
      return;
    }
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (event.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  });
}

/**
 * The question asked before canceling a pending task (openATTIC's background-tasks dialog warns
 * so): the step running now is not stopped at once, no further steps run, and the task will show
 * as failed. `title` is what people call the task (`taskTitle`).
 */
export function cancelQuestion(task, title = task.name) {
  const running = task.state === "running";
  return {
    title: `Cancel “${title}”?`,
    body: [
      h(
        "p",
        {},
        running
          ? "This task is running. The step it is doing now is not stopped at once: it runs to its end, and what it already did is not undone. No further steps run."
          : "This task has not started yet: it is canceled at once and nothing of it runs.",
      ),
      h("p", {}, "The task will then be listed under Failed, as canceled."),
    ],
    yes: "Cancel task",
    no: "Keep it",
  };
}

/** "in 12 s", "in 3 min 05 s": how long until `iso` (at least 0). */
export function formatCountdown(iso) {
  return `in ${formatDuration(Math.max(0, Date.parse(iso) - Date.now()))}`;
}

/** Why a waiting task waits, as a line: for a resource another task holds, or for its time. */
export function waitingLine(task) {
  if (task.state !== "waiting") return null;
  if (task.phase === "blocked" && task.waiting_for) {
    const { resource, holder } = task.waiting_for;
    return h(
      "span",
      { class: "waiting-for", dataset: { resource, holder } },
      "Waiting for ",
      h("span", { class: "mono" }, resource),
      ", held by ",
      h("a", { href: `/tasks/${holder}`, class: "mono" }, holder),
    );
  }
  if (task.phase === "scheduled" && task.run_at) {
    return h(
      "span",
      { class: "scheduled", dataset: { runAt: task.run_at } },
      "Scheduled · starts ",
      h("span", { class: "countdown", "data-countdown": task.run_at }, formatCountdown(task.run_at)),
    );
  }
  return null;
}

/** Bring every countdown under `root` up to date. */
export function tickCountdowns(root) {
  for (const element of root.querySelectorAll("[data-countdown]")) {
    element.textContent = formatCountdown(element.dataset.countdown);
  }
}

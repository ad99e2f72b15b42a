// The waiting page: the task's header and message, a spinner and its progress;
// when the push says it has ended, on to its next URL with a flash message. Never polls.

import { isFinal, setFlash } from "/static/tasklight.js";
import { fill, formatDuration, h, progressBar, stateLabel, taskDurationMs } from "/static/ui/dom.js";
import { localPath } from "/static/ui/local-path.js";
import { showQuestionOnWaitPage } from "/static/ui/question.js";
import { startShell } from "/static/ui/shell.js";

const initial = JSON.parse(document.getElementById("page-data").textContent);
const { tl } = startShell();

const messageEl = document.getElementById("wait-message");
const progressEl = document.getElementById("wait-progress");
const stateEl = document.getElementById("wait-state");
document.getElementById("wait-detail").href = `/tasks/${initial.id}`;
messageEl.textContent = (initial.ui && initial.ui.message) || "";
let leaving = false;

function render(task) {
  document.body.dataset.taskState = task.state;
  const reports = task.progress_reports || [];
  fill(
    progressEl,
    reports.map((report) =>
      h(
        "div",
        { class: "wait-report" },
        h(
          "div",
          { class: "wait-report-line" },
          h("span", {}, report.message),
          h(
            "span",
            { class: "muted" },
            report.total ? `${report.done} / ${report.total}${report.suffix ? ` ${report.suffix}` : ""}` : "",
          ),
        ),
        progressBar(report, report.state === "completed" ? "completed" : task.state),
      ),
    ),
  );
  const duration = taskDurationMs(task);
  const phase = {
    waiting: "Queued: waiting for a worker to pick it up.",
    running: "Running",
    canceling: "Canceling: stopping after the current step.",
  }[task.state];
  stateEl.textContent = isFinal(task.state)
    ? `${stateLabel(task.state)}. Moving on…`
    : `${phase}${task.state === "running" && duration !== null ? ` for ${formatDuration(duration)}` : ""}`;
  showQuestionOnWaitPage(document.querySelector(".wait"), task, tl);
}

async function goOn(task) {
  if (leaving) return;
  leaving = true;
  render(task);
  let next = `/tasks/${task.id}`;
  try {
    const outcome = await tl.outcome(task.id);
    if (outcome.flash) setFlash(outcome.flash);
    // The server applies the same rule; a page never leaves the site whatever it is told.
    next = localPath(outcome.next_url) || next;
  } catch (error) {
    setFlash({ level: task.state === "completed" ? "success" : "error", message: `Task ${task.name} ${task.state}.` });
  }
  tl.close();
  // replace: Back should not return to a page that would only send the user on again.
  window.location.replace(next);
}

tl.ingest(initial);
render(initial);
if (isFinal(initial.state)) {
  goOn(initial);
} else {
  tl.watch(initial.id, (task) => {
    if (!task) {
      stateEl.textContent = "This task was deleted.";
      return;
    }
    if (isFinal(task.state)) goOn(task);
    else render(task);
  });
  setInterval(() => {
    const task = tl.task(initial.id);
    if (task && !leaving && task.state === "running") render(task);
  }, 1000);
}

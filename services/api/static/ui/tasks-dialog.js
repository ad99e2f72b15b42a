// The background-tasks dialog (after openATTIC's): Pending / Failed / Finished tabs, live rows, delete.

import { groupOf } from "/static/tasklight.js";
import {
  cancelQuestion,
  currentReport,
  fill,
  formatDuration,
  formatTime,
  h,
  loadTaskTitles,
  progressBar,
  stateChip,
  taskDurationMs,
  taskMessage,
  taskTitle,
  tickCountdowns,
  trapFocus,
  updateProgressBar,
  waitingLine,
} from "/static/ui/dom.js";
import { showQuestionInRow } from "/static/ui/question.js";

const GROUPS = ["pending", "failed", "finished"];
const EMPTY_TEXT = {
  pending: "No pending tasks. Tasks you start show up here while they wait or run.",
  failed: "No failed tasks.",
  finished: "No finished tasks yet.",
};
// Rows a tab shows; older tasks stay reachable through their detail pages.
const ROWS_PER_TAB = 100;
// How long a deleted finished task can be brought back before it is deleted for good.
const UNDO_MS = 6_000;

export class TasksDialog {
  constructor(element, tl, { confirm, flash }) {
    this.element = element;
    this.tl = tl;
    this.confirm = confirm;
    this.flash = flash;
    this.group = "pending";
    this.rows = new Map(); // task id -> row element
    this.loaded = new Set(); // groups fetched over REST since the page loaded
    this.panel = element.querySelector("#tasks-panel");
    this.undoArea = element.querySelector("#tasks-undo");
    this.tabs = [...element.querySelectorAll('[role="tab"]')];
    this.opener = null;
    this.ticker = null;
    this.renderQueued = false;
    this.titles = new Map(); // task type name -> title
    this.deleting = new Map(); // task id -> timer: deleted on screen, not yet on the server

    for (const tab of this.tabs) {
      tab.addEventListener("click", () => this.select(tab.dataset.group, true));
      tab.addEventListener("keydown", (event) => this._onTabKey(event, tab));
    }
    element.querySelector("[data-close]").addEventListener("click", () => this.close());
    element.addEventListener("close", () => this._closed());
    element.addEventListener("click", (event) => {
      // A click on the backdrop (outside the dialog box) closes it.
      if (event.target === element) {
        const box = element.getBoundingClientRect();
        const inside =
          event.clientX >= box.left &&
          event.clientX <= box.right &&
          event.clientY >= box.top &&
          event.clientY <= box.bottom;
        if (!inside) this.close();
      }
    });
  }

  /** Open on `group` (Pending by default: what a person opening it wants to see). */
  open(group = "pending") {
    this.opener = document.activeElement;
    if (this.titles.size === 0) this._loadTitles();
    this.element.showModal();
    trapFocus(this.element);
    this.select(group, false);
    this.tabs.find((t) => t.dataset.group === group)?.focus();
    this.ticker = setInterval(() => this._tick(), 1000);
  }

  _loadTitles() {
    loadTaskTitles(this.tl.apiBase).then((titles) => {
      this.titles = titles;
      for (const [id, row] of this.rows) {
        const task = this.tl.task(id);
        if (task) this._fillRow(row, task);
      }
    });
  }

  close() {
    if (this.element.open) this.element.close();
  }

  _closed() {
    clearInterval(this.ticker);
    this.ticker = null;
    if (this.opener && this.opener.isConnected) this.opener.focus();
  }

  _onTabKey(event, tab) {
    const index = this.tabs.indexOf(tab);
    let next = null;
    if (event.key === "ArrowRight") next = this.tabs[(index + 1) % this.tabs.length];
    else if (event.key === "ArrowLeft") next = this.tabs[(index - 1 + this.tabs.length) % this.tabs.length];
    else if (event.key === "Home") next = this.tabs[0];
    else if (event.key === "End") next = this.tabs[this.tabs.length - 1];
    if (next) {
      event.preventDefault();
      this.select(next.dataset.group, true);
      next.focus();
    }
  }

  /** Show the tab of `group`; its older tasks are fetched once over REST. */
  select(group, fromUser) {
    this.group = group;
    for (const tab of this.tabs) {
      const selected = tab.dataset.group === group;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
    }
    this.panel.setAttribute("aria-labelledby", `tab-${group}`);
    this.panel.dataset.group = group;
    this._render();
    if (!this.loaded.has(group)) {
      this.loaded.add(group);
      this.tl.list({ group, limit: 50 }).then(
        () => this._scheduleRender(),
        (error) => {
          this.loaded.delete(group);
          if (fromUser) this.flash({ level: "error", message: `Could not load tasks: ${error.message}` });
        },
      );
    }
  }

  /** A task changed (pushed, or read over REST). */
  update() {
    this._scheduleRender();
  }

  /** A task is gone. */
  remove(taskId) {
    const row = this.rows.get(taskId);
    if (row) row.remove();
    this.rows.delete(taskId);
    this._scheduleRender();
  }

  _scheduleRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this._render();
    });
  }

  _render() {
    const tasks = this.tl.tasks().filter((t) => !this.deleting.has(t.id));
    const counts = { pending: 0, failed: 0, finished: 0 };
    for (const task of tasks) counts[groupOf(task.state)] += 1;
    for (const group of GROUPS) {
      const count = this.element.querySelector(`[data-count-for="${group}"]`);
      count.textContent = String(counts[group]);
    }
    if (!this.element.open) return;
    const shown = tasks.filter((t) => groupOf(t.state) === this.group).slice(0, ROWS_PER_TAB);
    let list = this.panel.querySelector("ul.task-list");
    if (shown.length === 0) {
      fill(this.panel, h("p", { class: "empty" }, EMPTY_TEXT[this.group]));
      this.rows.clear();
      return;
    }
    if (!list) {
      list = h("ul", { class: "task-list" });
      fill(this.panel, list);
      this.rows.clear();
    }
    const keep = new Set(shown.map((t) => t.id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    let previous = null;
    for (const task of shown) {
      let row = this.rows.get(task.id);
      if (!row) {
        row = this._newRow(task);
        this.rows.set(task.id, row);
      }
      this._fillRow(row, task);
      const expected = previous ? previous.nextSibling : list.firstChild;
      if (expected !== row) list.insertBefore(row, expected);
      previous = row;
    }
  }

  _newRow(task) {
    const row = h("li", { class: "task-row", dataset: { taskId: task.id } });
    row.append(
      h(
        "div",
        { class: "task-main" },
        h(
          "div",
          { class: "task-title" },
          h("a", { class: "task-name", href: `/tasks/${task.id}` }),
          h("span", { class: "task-type" }),
          h("span", { class: "task-state" }),
        ),
        h("div", { class: "task-progress" }, progressBar(null, task.state)),
        h("div", { class: "task-message" }),
        h("div", { class: "task-waiting muted small" }),
        h(
          "div",
          { class: "task-times" },
          h("span", { class: "task-started" }),
          h("span", { class: "task-duration" }),
        ),
      ),
      h(
        "button",
        {
          type: "button",
          class: "icon-button delete-button",
          onclick: () => this._delete(task.id),
        },
        h("span", { class: "trash", "aria-hidden": "true" }),
      ),
    );
    return row;
  }

  _fillRow(row, task) {
    row.dataset.state = task.state;
    row.dataset.version = String(task.version);
    const title = taskTitle(task, this.titles);
    row.querySelector(".task-name").textContent = title;
    row.querySelector(".task-type").textContent = title === task.name ? "" : task.name;
    const chip = row.querySelector(".task-state");
    if (chip.dataset.state !== task.state) {
      chip.dataset.state = task.state;
      fill(chip, stateChip(task.state));
    }
    updateProgressBar(row.querySelector(".progress"), currentReport(task), task.state);
    row.querySelector(".task-message").textContent = taskMessage(task);
    const waiting = row.querySelector(".task-waiting");
    const why = `${task.phase}|${task.waiting_for?.holder || ""}|${task.run_at || ""}`;
    if (waiting.dataset.why !== why) {
      waiting.dataset.why = why;
      fill(waiting, waitingLine(task));
    }
    const started = row.querySelector(".task-started");
    started.textContent = task.started_at
      ? `Started ${formatTime(task.started_at)}`
      : `Queued ${formatTime(task.created_at)}`;
    started.title = new Date(task.started_at || task.created_at).toISOString();
    this._fillDuration(row, task);
    const button = row.querySelector(".delete-button");
    const pending = groupOf(task.state) === "pending";
    const label = pending ? `Cancel task ${title}` : `Delete task ${title} from the list`;
    button.setAttribute("aria-label", label);
    button.title = pending ? "Cancel" : "Delete";
    button.disabled = task.state === "canceling";
    showQuestionInRow(row, task, this.tl);
  }

  _fillDuration(row, task) {
    const ms = taskDurationMs(task);
    row.querySelector(".task-duration").textContent = ms === null ? "" : formatDuration(ms);
  }

  _tick() {
    for (const row of this.rows.values()) tickCountdowns(row);
    for (const [id, row] of this.rows) {
      const task = this.tl.task(id);
      if (task && task.started_at && !task.finished_at) this._fillDuration(row, task);
    }
  }

  async _delete(taskId) {
    const task = this.tl.task(taskId);
    if (!task) return;
    if (groupOf(task.state) === "pending") {
      const ok = await this.confirm(cancelQuestion(task, taskTitle(task, this.titles)));
      if (!ok) return;
      await this._send(taskId);
    } else {
      this._deleteLater(task);
    }
    this._scheduleRender();
    // The row (and its button) may have left this tab: keep the focus in the dialog.
    requestAnimationFrame(() => {
      if (this.element.open && !this.element.contains(document.activeElement)) this.panel.focus();
    });
  }

  async _send(taskId) {
    try {
      await this.tl.delete(taskId);
    } catch (error) {
      if (error.status === 404) this.tl._forget(taskId);
      else this.flash({ level: "error", message: `Could not delete the task: ${error.message}` });
    }
  }

  /**
   * A finished task leaves the list at once and is deleted after UNDO_MS unless "Undo" is
   * pressed (in the dialog: the page behind a modal dialog cannot be clicked).
   */
  _deleteLater(task) {
    if (this.deleting.has(task.id)) return;
    const title = taskTitle(task, this.titles);
    let notice = null;
    const timer = setTimeout(async () => {
      notice.remove();
      await this._send(task.id);
      this.deleting.delete(task.id);
      this._scheduleRender();
    }, UNDO_MS);
    this.deleting.set(task.id, timer);
    const undo = h(
      "button",
      {
        type: "button",
        class: "button undo-button",
        onclick: () => {
          clearTimeout(timer);
          this.deleting.delete(task.id);
          notice.remove();
          this._scheduleRender();
        },
      },
      "Undo",
    );
    notice = h(
      "div",
      { class: "undo-notice", role: "status", dataset: { deleteAt: String(Date.now() + UNDO_MS) } },
      h("span", {}, `“${title}” deleted.`),
      undo,
    );
    this.undoArea.append(notice);
    undo.focus();
  }
}

// The frame every page shares: the live connection and its status, flash messages, the
// background-tasks control and its dialog.

import { TaskLight, groupOf, takeFlash } from "/static/tasklight.js";
import { fill, h, trapFocus } from "/static/ui/dom.js";
import { TasksDialog } from "/static/ui/tasks-dialog.js";

const STATUS_LABELS = {
  idle: "offline",
  connecting: "connecting",
  live: "live",
  reconnecting: "reconnecting",
  closed: "offline",
  unauthorized: "signed out",
};

/** Where to sign in and come back to this page. */
function signInUrl() {
  return `/login?next=${encodeURIComponent(location.pathname + location.search + location.hash)}`;
}

/** Wire the "Sign out" button: end the session, then to the sign-in page. */
function startSignOut(tl) {
  const button = document.getElementById("sign-out");
  if (!button) return;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await tl.signOut();
    } catch (error) {
      console.warn("tasklight: sign-out failed", error);
    }
    location.assign("/login");
  });
}

/** Show a flash message ({level, message}) at the top of the page; `link` is {href, text}. */
export function showFlash({ level = "info", message, link = null }) {
  const area = document.getElementById("flash");
  if (!area || !message) return null;
  const role = level === "error" ? "alert" : "status";
  const item = h(
    "div",
    { class: `flash flash-${level}`, role, dataset: { level } },
    h("span", { class: "flash-icon", "aria-hidden": "true" }),
    h("span", { class: "flash-text" }, message),
    link ? h("a", { href: link.href, class: "flash-link" }, link.text) : null,
    h(
      "button",
      {
        type: "button",
        class: "icon-button flash-close",
        "aria-label": "Dismiss",
        onclick: () => item.remove(),
      },
      "×",
    ),
  );
  area.append(item);
  return item;
}

/** Ask a yes/no question in the confirm dialog; resolves with true for yes. */
export function confirmDialog({ title, body, yes, no }) {
  const dialog = document.getElementById("confirm-dialog");
  dialog.querySelector("#confirm-title").textContent = title;
  fill(dialog.querySelector("#confirm-text"), ...body);
  dialog.querySelector('[data-answer="yes"]').textContent = yes;
  dialog.querySelector('[data-answer="no"]').textContent = no;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    const finish = (answer) => {
      dialog.removeEventListener("click", onClick);
      dialog.removeEventListener("close", onClose);
      if (dialog.open) dialog.close();
      if (opener && opener.isConnected) opener.focus();
      resolve(answer);
    };
    const onClick = (event) => {
      const button = event.target.closest("[data-answer]");
      if (button) finish(button.dataset.answer === "yes");
    };
    const onClose = () => finish(false);
    dialog.addEventListener("click", onClick);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    trapFocus(dialog);
    dialog.querySelector('[data-answer="no"]').focus();
  });
}

function showConnection(element, status) {
  element.dataset.status = status;
  element.textContent = STATUS_LABELS[status] || status;
  element.title =
    status === "live"
      ? "Live: changes are pushed to this page as they happen"
      : status === "unauthorized"
        ? "Signed out: sign in again for live updates"
        : "Not connected to live updates; reconnecting";
}

function showBadge(button, badge, count) {
  badge.textContent = String(count);
  badge.dataset.count = String(count);
  badge.setAttribute("aria-label", `${count} pending`);
  button.setAttribute("aria-label", `Background tasks, ${count} pending`);
}

/**
 * Start the shared frame: connect, subscribe to every task of the user for the badge and the
 * dialog, show any flash left by the previous page. Returns {tl, dialog}.
 */
export function startShell() {
  const api = document.querySelector('meta[name="tasklight-api"]')?.content || "/api/v1";
  const tl = new TaskLight({ apiBase: api });
  const connection = document.getElementById("connection");
  tl.on("status", ({ status }) => showConnection(connection, status));
  tl.on("error", (problem) => console.warn("tasklight notifier error", problem));
  let toldSignedOut = false;
  tl.on("unauthorized", () => {
    if (toldSignedOut) return;
    toldSignedOut = true;
    showFlash({
      level: "warning",
      message: "You are signed out; live updates have stopped.",
      link: { href: signInUrl(), text: "Sign in again" },
    });
  });
  startSignOut(tl);

  const button = document.getElementById("tasks-button");
  const badge = document.getElementById("tasks-badge");
  const dialog = new TasksDialog(document.getElementById("tasks-dialog"), tl, {
    confirm: confirmDialog,
    flash: showFlash,
  });
  const refreshBadge = () => {
    const pending = tl.tasks().filter((t) => groupOf(t.state) === "pending").length;
    showBadge(button, badge, pending);
  };
  tl.subscribe(
    { scope: "all" },
    {
      onTask: (task) => {
        dialog.update(task);
        refreshBadge();
      },
      onDeleted: (id) => {
        dialog.remove(id);
        refreshBadge();
      },
    },
  );
  button.addEventListener("click", () => dialog.open("pending"));

  const flash = takeFlash();
  if (flash) showFlash(flash);
  return { tl, dialog };
}

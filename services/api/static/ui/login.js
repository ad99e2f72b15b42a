// The sign-in page: post the user name and password as JSON (a form of another site cannot),
// then go on to the page that sent us here.

import { localPath } from "/static/ui/local-path.js";

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");

function showError(message) {
  error.textContent = message;
  error.hidden = false;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  error.hidden = true;
  const data = new FormData(form);
  try {
    const response = await fetch("/api/v1/session", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ username: data.get("username"), password: data.get("password") }),
    });
    if (response.ok) {
      // The server made `next` a path on this site; checked again: nothing else is followed.
      location.assign(localPath(form.dataset.next) || "/");
      return;
    }
    const problem = await response.json().catch(() => ({}));
    showError(
      response.status === 401
        ? "Wrong user name or password."
        : problem.detail || `Sign-in failed (HTTP ${response.status}).`,
    );
    form.querySelector("#login-password").select();
  } catch {
    showError("The server cannot be reached; try again.");
  } finally {
    button.disabled = false;
  }
});

// A question a task asks its owner (`ctx.ask` in its handler): its title and text, and a button
// per choice or a small form drawn from its JSON Schema. Shown in a row of the tasks dialog and
// on the waiting page in place of the spinner; the answer goes to POST /tasks/{id}/answer, and
// the push then shows the task going on. Self-contained: its own stylesheet, and one call from
// each page (`showQuestionInRow`, `showQuestionOnWaitPage`).

import { fill, formatTime, h } from "/static/ui/dom.js";

const STYLESHEET = "/static/ui/question.css";

/** Whether `task` waits for an answer to its question. */
export function isAsking(task) {
  return Boolean(task && task.phase === "awaiting_answer" && task.question);
}

function ensureStyles() {
  if (document.querySelector(`link[href="${STYLESHEET}"]`)) return;
  document.head.append(h("link", { rel: "stylesheet", href: STYLESHEET }));
}

/** What happens when the question's timeout passes. */
function deadlineText(question) {
  const by = `Answer by ${formatTime(question.deadline)}`;
  if (question.default === null || question.default === undefined) return `${by}, or the task fails.`;
  const choice = (question.choices || []).find((c) => c.value === question.default);
  return `${by}; after that, “${choice ? choice.label : JSON.stringify(question.default)}” is taken.`;
}

function fieldId(task, question, name) {
  return `q-${task.id}-${question.key}-${name}`.replace(/[^A-Za-z0-9_-]/g, "_");
}

/** One input for one property of a form's schema (string, integer, number, boolean). */
function field(id, name, schema, required) {
  const label = schema.title || name;
  const help = schema.description ? h("span", { class: "question-help" }, schema.description) : null;
  if (schema.type === "boolean") {
    const box = h("input", { type: "checkbox", id, name, checked: schema.default === true });
    return h("div", { class: "question-field checkbox" }, box, h("label", { for: id }, label), help);
  }
  let input;
  if (Array.isArray(schema.enum)) {
    // Options carry their index: the answer is the schema's own value, whatever its type.
    input = h(
      "select",
      { id, name, required },
      required ? null : h("option", { value: "" }, "—"),
      schema.enum.map((value, index) =>
        h("option", { value: String(index), selected: value === schema.default }, String(value)),
      ),
    );
  } else if (schema.type === "integer" || schema.type === "number") {
    input = h("input", {
      type: "number",
      id,
      name,
      required,
      min: schema.minimum,
      max: schema.maximum,
      step: schema.type === "integer" ? "1" : "any",
      value: schema.default,
    });
  } else {
    input = h("input", {
      type: "text",
      id,
      name,
      required,
      minlength: schema.minLength,
      maxlength: schema.maxLength,
      value: schema.default,
    });
  }
  return h("div", { class: "question-field" }, h("label", { for: id }, label), input, help);
}

/** The form's answer: one member per filled-in field (an empty optional one is left out). */
function readForm(form, schema) {
  const answer = {};
  for (const [name, property] of Object.entries(schema.properties || {})) {
    const input = form.elements.namedItem(name);
    if (!input) continue;
    if (property.type === "boolean") {
      answer[name] = input.checked;
    } else if (Array.isArray(property.enum)) {
      if (input.value !== "") answer[name] = property.enum[Number(input.value)];
    } else if (property.type === "integer" || property.type === "number") {
      // A value the browser cannot read as a number goes as it is: the server says what is wrong.
      if (input.value !== "") answer[name] = Number.isNaN(input.valueAsNumber) ? input.value : input.valueAsNumber;
    } else if (input.value !== "" || (schema.required || []).includes(name)) {
      answer[name] = input.value;
    }
  }
  return answer;
}

/** Why the API refused an answer, for the person who gave it. */
function refusal(error) {
  const problem = error.problem || {};
  if (error.status === 409) return "This question is no longer open (answered, timed out or canceled).";
  if (Array.isArray(problem.errors) && problem.errors.length) {
    return problem.errors.map((e) => `${(e.loc || []).slice(2).join(".") || "answer"}: ${e.msg}`).join("; ");
  }
  return error.message || "The answer could not be sent.";
}

/** A form that answers `task.question`, sending the answer with `tl.answer`. */
export function questionForm(task, tl) {
  ensureStyles();
  const question = task.question;
  const error = h("p", { class: "question-error", role: "alert", hidden: true });
  const actions = h("div", { class: "question-actions" });
  const form = h("form", {
    class: "question",
    "aria-label": question.title,
    dataset: { taskId: task.id, questionKey: question.key },
  });
  form.append(h("div", { class: "question-title" }, question.title));
  if (question.text) form.append(h("p", { class: "question-text" }, question.text));
  if (question.choices) {
    for (const choice of question.choices) {
      actions.append(
        h(
          "button",
          {
            type: "submit",
            class: `button small${choice.danger ? " danger" : ""}`,
            value: choice.value,
            dataset: { choice: choice.value },
          },
          choice.label,
        ),
      );
    }
  } else {
    const schema = question.form;
    const required = schema.required || [];
    for (const [name, property] of Object.entries(schema.properties || {})) {
      form.append(field(fieldId(task, question, name), name, property, required.includes(name)));
    }
    actions.append(h("button", { type: "submit", class: "button small primary" }, "Send answer"));
  }
  form.append(actions, h("p", { class: "question-deadline" }, deadlineText(question)), error);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const answer = question.choices ? event.submitter && event.submitter.value : readForm(form, question.form);
    if (answer === undefined || answer === null) return;
    const buttons = [...form.querySelectorAll("button")];
    for (const button of buttons) button.disabled = true;
    error.hidden = true;
    form.dataset.sending = "true";
    try {
      await tl.answer(task.id, answer, { question: question.key });
      form.dataset.answered = "true";
    } catch (failure) {
      error.textContent = refusal(failure);
      error.hidden = false;
      for (const button of buttons) button.disabled = false;
    } finally {
      delete form.dataset.sending;
    }
  });
  return form;
}

/**
 * Keep `slot` showing `task`'s question, or nothing when it asks none. The form stays as it is
 * while the same question stands, so that what the user typed is kept; whether it changed.
 */
export function syncQuestion(slot, task, tl) {
  const key = isAsking(task) ? task.question.key : "";
  if ((slot.dataset.questionKey || "") === key) return false;
  slot.dataset.questionKey = key;
  slot.hidden = !key;
  if (key) fill(slot, questionForm(task, tl));
  else fill(slot);
  return true;
}

/** The tasks dialog's hook: a row shows its task's question under its progress. */
export function showQuestionInRow(row, task, tl) {
  let slot = row.querySelector(".task-question");
  if (!slot) {
    slot = h("div", { class: "task-question", hidden: true });
    (row.querySelector(".task-main") || row).append(slot);
  }
  syncQuestion(slot, task, tl);
  row.dataset.phase = task.phase || "";
  if (isAsking(task)) {
    const message = row.querySelector(".task-message");
    if (message) message.textContent = `Waiting for an answer: ${task.question.title}`;
  }
}

/** The waiting page's hook: the question takes the spinner's place while the task waits. */
export function showQuestionOnWaitPage(card, task, tl) {
  let slot = card.querySelector(".wait-question");
  if (!slot) {
    slot = h("div", { class: "wait-question", hidden: true });
    const anchor = card.querySelector("#wait-message");
    if (anchor) anchor.after(slot);
    else card.append(slot);
  }
  const changed = syncQuestion(slot, task, tl);
  const asking = isAsking(task);
  card.classList.toggle("asking", asking);
  if (!asking) return;
  const state = card.querySelector("#wait-state");
  if (state) state.textContent = "Waiting for your answer: the task goes on once it has one.";
  // The person on this page is waiting for exactly this: take them to it.
  if (changed) {
    const first = slot.querySelector("input, select, button");
    if (first) first.focus();
  }
}

// The overview page: start test tasks, and the simulated VMs (queue and tell). The server
// renders each part only where its task types are registered, so each is looked for first.

import { isFinal } from "/static/tasklight.js";
import { fill, formatTime, h, plural } from "/static/ui/dom.js";
import { showFlash, startShell } from "/static/ui/shell.js";

const { tl } = startShell();

function queued(task, what) {
  showFlash({
    level: "info",
    message: `Task queued: ${what}. It runs in the background; Background tasks shows its progress.`,
    link: { href: `/tasks/${task.id}`, text: "Details" },
  });
}

function failedToQueue(error) {
  showFlash({ level: "error", message: `The task was not queued: ${error.message}` });
}

// ---- test tasks -------------------------------------------------------------------------------

const countForm = document.getElementById("count-form");
if (countForm) {
  countForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const mode = event.submitter?.dataset.mode || "queue";
    const rounds = Number(countForm.elements.rounds.value);
    const roundS = Number(countForm.elements.round_s.value);
    const what = `count ${plural(rounds, "round")}`;
    const buttons = countForm.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      const task = await tl.submit(
        "test.count",
        { rounds, round_s: roundS },
        {
          ui: {
            header: `Counting ${plural(rounds, "round")}`,
            message: "A test task counts one round at a time. The page moves on when it is done.",
            next_url: "/",
            success_message: `Counted ${plural(rounds, "round")}.`,
            failure_message: "Counting did not finish",
          },
        },
      );
      if (mode === "wait") window.location.assign(`/wait/${task.id}`);
      else queued(task, what);
    } catch (error) {
      failedToQueue(error);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });
}

async function queueFailing(wait) {
  try {
    const task = await tl.submit(
      "test.fail",
      { after_s: 1.5, message: "the simulated back end refused the request" },
      {
        ui: {
          header: "Trying something that will fail",
          message: "This test task fails on purpose after a moment.",
          next_url: "/",
          success_message: "That worked, unexpectedly.",
          failure_message: "The test task failed",
        },
      },
    );
    if (wait) window.location.assign(`/wait/${task.id}`);
    else queued(task, "a task that fails");
  } catch (error) {
    failedToQueue(error);
  }
}

document.getElementById("fail-queue")?.addEventListener("click", () => queueFailing(false));
document.getElementById("fail-wait")?.addEventListener("click", () => queueFailing(true));

// ---- simulated VMs ----------------------------------------------------------------------------

const POWER_TASKS = { "demo.vm_power_off": "off", "demo.vm_power_on": "on" };
const vmList = document.getElementById("vm-list");
const vms = new Map(); // id -> {id, name, provider, power, pending_task, decidedBy}
const notes = new Map(); // vm id -> note shown after queueing

function renderVm(vm) {
  const pendingTask = vm.pending_task ? tl.task(vm.pending_task) : null;
  const target = pendingTask ? POWER_TASKS[pendingTask.name] : null;
  const busy = Boolean(vm.pending_task);
  const on = vm.power === "on";
  let status;
  if (busy) {
    const verb = target === "off" ? "Powering off" : "Powering on";
    const phase = pendingTask && pendingTask.state !== "waiting" ? "in progress" : "task queued";
    status = h(
      "span",
      { class: "vm-busy" },
      h("span", { class: "mini-spinner", "aria-hidden": "true" }),
      `${verb}… `,
      h("a", { href: `/tasks/${vm.pending_task}` }, phase),
    );
  } else {
    status = h("span", { class: "muted" }, notes.get(vm.id) || `${vm.provider} · ${vm.id}`);
  }
  const item = vmList.querySelector(`[data-vm="${vm.id}"]`) || h("li", { class: "vm", id: vm.id, dataset: { vm: vm.id } });
  item.dataset.power = vm.power;
  item.dataset.busy = String(busy);
  const action = on ? "off" : "on";
  fill(
    item,
    h("span", { class: "vm-icon", "aria-hidden": "true" }),
    h(
      "div",
      { class: "vm-main" },
      h("div", { class: "vm-name" }, vm.name),
      h("div", { class: "vm-status" }, status),
    ),
    h(
      "span",
      { class: `chip power-${vm.power}`, dataset: { power: vm.power } },
      on ? "Running" : "Powered off",
    ),
    h(
      "div",
      { class: "vm-actions" },
      h(
        "button",
        {
          type: "button",
          class: "button small",
          disabled: busy,
          dataset: { action: "queue" },
          onclick: () => power(vm, action, false),
        },
        `Power ${action}`,
      ),
      h(
        "button",
        {
          type: "button",
          class: "button small ghost",
          disabled: busy,
          dataset: { action: "wait" },
          title: `Power ${action} and wait on the waiting page`,
          onclick: () => power(vm, action, true),
        },
        "and wait",
      ),
    ),
  );
  return item;
}

function renderVms() {
  if (!vmList) return;
  const items = [...vms.values()].map(renderVm);
  vmList.replaceChildren(...items);
  if (location.hash) {
    const target = document.getElementById(location.hash.slice(1));
    if (target && !target.dataset.highlighted) {
      target.dataset.highlighted = "1";
      target.classList.add("highlight");
    }
  }
}

async function power(vm, action, wait) {
  const name = `demo.vm_power_${action}`;
  try {
    const task = await tl.submit(name, { vm: vm.id, delay_s: 2 }, {
      ui: {
        header: `Powering ${action} ${vm.name}`,
        message: `The worker asks ${vm.provider} to power the VM ${action}. This takes a moment.`,
      },
    });
    if (wait) {
      window.location.assign(`/wait/${task.id}`);
      return;
    }
    vm.pending_task = task.id;
    notes.set(vm.id, "");
    renderVms();
    queued(task, `power ${action} ${vm.name}`);
  } catch (error) {
    failedToQueue(error);
  }
}

/** A pushed change of a power task: the VM it targets may be busy, or in a new state. */
function onPowerTask(task) {
  const target = POWER_TASKS[task.name];
  const vm = target && vms.get(task.args.vm);
  if (!vm) return;
  if (!isFinal(task.state)) {
    if (!vm.pending_task || vm.pending_task <= task.id) vm.pending_task = task.id;
  } else {
    if (vm.pending_task === task.id) vm.pending_task = null;
    if (task.state === "completed" && task.result && (!vm.decidedAt || task.finished_at >= vm.decidedAt)) {
      vm.power = task.result.power;
      vm.decidedAt = task.finished_at;
      notes.set(vm.id, `Powered ${vm.power} at ${formatTime(task.finished_at)}`);
    }
  }
  renderVms();
}

if (vmList) {
  // The shell's subscription follows every task; power tasks are picked out here.
  tl.on("task", onPowerTask);
  fetch("/api/v1/demo/vms", { headers: { Accept: "application/json" } })
    .then((response) => {
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return response.json();
    })
    .then((list) => {
      for (const vm of list) vms.set(vm.id, { ...vm, decidedAt: null });
      // Pushes that arrived before the list did.
      for (const task of tl.tasks()) if (POWER_TASKS[task.name]) onPowerTask(task);
      renderVms();
    })
    .catch((error) => fill(vmList, h("li", { class: "muted" }, `Could not load the VMs: ${error.message}`)));
}

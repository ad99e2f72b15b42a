// @ts-check
// The end-to-end example of clients/js/README.md ("In end-to-end tests"): a Playwright Test
// spec, run by test/examples.test.js against a running tasklight with playwright.config.js
// beside it (which signs in once and uses the system Chromium).

import { expect, test } from "@playwright/test";
import { waitForAllTasks } from "tasklight/playwright";

test("a task started from the page has ended before the test goes on", async ({ page }) => {
  await page.goto("/");
  await page.getByLabel("Rounds").fill("3");
  await page.getByLabel("Seconds per round").fill("0.5");
  await page.getByRole("button", { name: "Queue it" }).click();
  const href = await page.getByRole("link", { name: "Details" }).getAttribute("href"); // /tasks/<id>

  await waitForAllTasks(page); // in the page, as its signed-in user
  // or, from Node, as a token's user:  await waitForAllTasks(process.env.TASKLIGHT_TOKEN)

  const task = await (await page.request.get(`/api/v1${href}`)).json(); // read once, no retry
  expect(task.state).toBe("completed");
});

// @ts-check
// Playwright Test's global setup for the examples: sign in to the web UI once and keep the
// session cookies where playwright.config.js's `storageState` says, for every test to start
// signed in (TASKLIGHT_UI_USER / TASKLIGHT_UI_PASSWORD, default the development user).

import { request } from "@playwright/test";

/** @param {import("@playwright/test").FullConfig} config */
export default async function signIn(config) {
  const { baseURL, storageState } = config.projects[0].use;
  const context = await request.newContext({ baseURL });
  const response = await context.post("/api/v1/session", {
    data: {
      username: process.env.TASKLIGHT_UI_USER || "dev",
      password: process.env.TASKLIGHT_UI_PASSWORD || "dev",
    },
  });
  if (!response.ok()) throw new Error(`signing in failed: ${response.status()} ${await response.text()}`);
  await context.storageState({ path: /** @type {string} */ (storageState) });
  await context.dispose();
}

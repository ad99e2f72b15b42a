// @ts-check
// Playwright Test's configuration for examples/wait-for-all.spec.js: tasklight's web UI at
// TASKLIGHT_API_URL, a browser context signed in once (sign-in.js), and the system Chromium
// (Playwright's own browser downloads are never used).

import { tmpdir } from "node:os";
import { join } from "node:path";

import { defineConfig } from "@playwright/test";

// One folder per run, for its results and the signed-in state: named once by the runner's main
// process, and inherited by its workers (which read this file again).
process.env.TASKLIGHT_PLAYWRIGHT_OUTPUT ??= join(tmpdir(), `tasklight-playwright-${process.pid}`);
const output = process.env.TASKLIGHT_PLAYWRIGHT_OUTPUT;

export default defineConfig({
  testDir: ".",
  testMatch: "*.spec.js",
  outputDir: join(output, "results"),
  globalSetup: "./sign-in.js",
  reporter: "line",
  use: {
    baseURL: process.env.TASKLIGHT_API_URL ?? "http://127.0.0.1:8000",
    storageState: join(output, "signed-in.json"),
    launchOptions: {
      executablePath: process.env.TASKLIGHT_CHROMIUM || "/usr/bin/chromium",
      args: ["--no-sandbox"],
    },
  },
});

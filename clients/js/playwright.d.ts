// Types of playwright.js (`tasklight/playwright`).

/** What the helper needs of a page: Playwright's `Page` has it. */
export interface PageLike {
  evaluate<R, A>(pageFunction: (arg: A) => R | Promise<R>, arg: A): Promise<R>;
}

export interface WaitForAllTasksOptions {
  /** Default 60000. */
  timeoutMs?: number;
  /** With a token: the notifier (default TASKLIGHT_WS_URL, else ws://127.0.0.1:8001/ws). With a
   * page: the notifier the page should use (default: what the page's meta tag says). */
  notifierUrl?: string;
  /** With a token: the API (default TASKLIGHT_API_URL, else http://127.0.0.1:8000). */
  apiUrl?: string;
  /** With a page: where the page loads tasklight.js from (default "/static/tasklight.js"). */
  moduleUrl?: string;
  /** With a page: authenticate with single-use tickets from the API (a notifier on another site). */
  tickets?: boolean;
}

/** Resolve once none of the user's tasks is pending (the page's user, or the token's). */
export function waitForAllTasks(
  target: PageLike | string,
  options?: WaitForAllTasksOptions,
): Promise<void>;

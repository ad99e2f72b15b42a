// Types of tasklight.js (the `tasklight` package's main module). Checked by `tsc --noEmit`
// against examples/ (npm run typecheck); keep them in step with tasklight.js.

export type TaskState = "waiting" | "running" | "canceling" | "completed" | "failed" | "canceled";
export type TaskGroup = "pending" | "failed" | "finished";
export type ConnectionStatus =
  | "idle"
  | "connecting"
  | "live"
  | "reconnecting"
  | "unauthorized"
  | "closed";

/** RFC 9457 problem details, as the API and the notifier send them. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  instance?: string;
  errors?: Array<{ loc: Array<string | number>; msg: string; type?: string }>;
  [extension: string]: unknown;
}

export interface TaskError {
  type: string;
  message: string;
}

export interface ProgressReport {
  message: string;
  code: string;
  state: TaskState;
  done: number;
  total: number | null;
  suffix: string | null;
}

export interface WorkerRef {
  name: string;
  last_heartbeat: string | null;
  missing: boolean;
}

/** A run that did not end its task: a retry, a lost worker, a hand-back at shutdown. */
export interface Attempt {
  outcome: string;
  worker: string | null;
  error: TaskError | null;
  ended_at: string | null;
  retry_in_s: number;
}

export interface UiHints {
  header?: string | null;
  message?: string | null;
  next_url?: string | null;
  success_message?: string | null;
  failure_message?: string | null;
}

/** A task as the API and the notifier send it. */
export interface Task {
  id: string;
  name: string;
  state: TaskState;
  version: number;
  owner: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  updated_at: string;
  args: Record<string, unknown>;
  result: unknown;
  error: TaskError | null;
  progress_reports: ProgressReport[];
  worker: WorkerRef | null;
  parent_task: string | null;
  child_tasks: string[];
  ui: UiHints | null;
  metadata: Record<string, unknown>;
  attempts: Attempt[];
  runs: number;
  /** Who moves it on: "queued", "blocked", "scheduled", "held", "released", "awaiting_children", "awaiting_answer", "ended". */
  phase: string;
  /** While it waits for its owner's answer: the question its handler asked. */
  question?: Record<string, unknown> | null;
  /** Every answer given to it. */
  answers?: Array<Record<string, unknown>>;
  /** The resources it takes, exclusively or shared with other holders. */
  reservations?: Reservation[];
  /** While `blocked`: the resource it waits for and the task holding it. */
  waiting_for?: { resource: string; holder: string } | null;
  /** The time it was asked to start at (phase `scheduled` until then). */
  run_at?: string | null;
  /** 0 normal, 1 high. */
  priority?: number;
}

export interface Reservation {
  resource: string;
  mode: "exclusive" | "shared";
}

/** One state change of a task (`GET /tasks/{id}/events`). */
export interface TaskEvent {
  at: string;
  source: TaskState | null;
  target: TaskState;
  worker?: string | null;
  reason?: string | null;
  [field: string]: unknown;
}

export interface Outcome {
  ready: boolean;
  state: TaskState;
  next_url: string | null;
  flash: Flash | null;
}

export interface Flash {
  level: "success" | "info" | "warning" | "error";
  message: string;
}

export interface TaskPage {
  results: Task[];
  next: string | null;
}

export interface ListParams {
  group?: TaskGroup;
  state?: TaskState | TaskState[];
  name?: string;
  owner?: string;
  limit?: number;
  cursor?: string;
}

export interface SubmitOptions {
  ui?: UiHints;
  metadata?: Record<string, unknown>;
  idempotencyKey?: string;
}

export interface TaskLightOptions {
  /** The notifier's WebSocket URL; default a `tasklight-notifier` meta tag, else port 8001. */
  notifierUrl?: string;
  /** The REST API's base; default "/api/v1" (the page's origin). */
  apiBase?: string;
  fetch?: typeof globalThis.fetch;
  backoffMs?: { initial?: number; max?: number };
  /** A ping this often (default 3000; 0: none) ... */
  pingIntervalMs?: number;
  /** ... whose pong must come within this (default 2000), or the connection is reopened. */
  pongTimeoutMs?: number;
  WebSocket?: typeof globalThis.WebSocket;
  /** An API token, sent as a bearer header and in an `auth` message (scripts, Node). */
  token?: string;
  /** A single-use ticket from the API per connection (a notifier on another site). */
  tickets?: boolean;
}

export interface SubscriptionSpec {
  tasks?: string[];
  scope?: "all";
}

export interface SubscriptionHandlers {
  onTask?: (task: Task) => void;
  onDeleted?: (id: string) => void;
  onReady?: () => void;
  onError?: (problem: Problem) => void;
}

export interface Subscription {
  readonly id: string;
  ready: boolean;
  closed: boolean;
  matches(taskId: string): boolean;
  close(): void;
}

export interface StatusEvent {
  status: ConnectionStatus;
  attempt?: number;
  delayMs?: number;
  code?: number;
  reason?: string;
}

export interface TaskLightEvents {
  status: StatusEvent;
  task: Task;
  deleted: { id: string };
  error: Problem;
  unauthorized: { code?: number; reason?: string; status?: number; problem?: Problem | null };
}

export function isFinal(state: TaskState): boolean;
export function groupOf(state: TaskState): TaskGroup;
export function defaultNotifierUrl(doc?: Document, loc?: Location): string;
export function setFlash(flash: Flash): void;
export function takeFlash(): Flash | null;

export class ProblemError extends Error {
  constructor(status: number, problem: Problem | null);
  readonly status: number;
  readonly problem: Problem;
}

export class WaitTimeoutError extends Error {
  constructor(timeoutMs: number, pending: Task[]);
  /** The tasks still pending, as last seen. */
  readonly pending: Task[];
}

export class TaskLight {
  constructor(options?: TaskLightOptions);
  readonly notifierUrl: string;
  readonly apiBase: string;
  readonly status: ConnectionStatus;

  on<E extends keyof TaskLightEvents>(
    event: E,
    callback: (payload: TaskLightEvents[E]) => void,
  ): () => void;
  connect(): this;
  close(): void;
  ping(timeoutMs?: number): Promise<number>;

  subscribe(spec: SubscriptionSpec, handlers?: SubscriptionHandlers): Subscription;
  watch(taskId: string, callback: (task: Task | null) => void): () => void;
  ingest(task: Task): boolean;
  task(taskId: string): Task | undefined;
  tasks(): Task[];

  signOut(): Promise<void>;
  submit(name: string, args?: Record<string, unknown>, options?: SubmitOptions): Promise<Task>;
  get(taskId: string): Promise<Task>;
  list(params?: ListParams): Promise<TaskPage>;
  cancel(taskId: string): Promise<Task>;
  delete(taskId: string): Promise<Task | null>;
  events(taskId: string): Promise<TaskEvent[]>;
  outcome(taskId: string): Promise<Outcome>;
  waitFor(taskId: string, options?: { timeoutMs?: number }): Promise<Task>;
  waitForAll(options?: { timeoutMs?: number }): Promise<void>;
}

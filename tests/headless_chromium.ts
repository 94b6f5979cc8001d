/**
 * Headless Chromium driven over the DevTools protocol (a WebSocket, no npm
 * package): one browser per test file, pages opened in it, the DOM read with
 * Runtime.evaluate, screenshots, and downloads into a directory with their
 * progress events. The browser is closed with Browser.close, and killed if
 * it does not exit.
 */

/** How long the browser may take to start and write its DevTools port. */
const START_TIMEOUT_MS = 30_000;
/** How long one DevTools command may take. */
const COMMAND_TIMEOUT_MS = 30_000;

type Message = {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
};

export class HeadlessChromium {
  readonly #child: Deno.ChildProcess;
  readonly #profile: string;
  readonly #socket: WebSocket;
  #nextId = 1;
  readonly #waiting = new Map<number, (message: Message) => void>();
  readonly #listeners = new Set<(message: Message) => void>();

  private constructor(child: Deno.ChildProcess, profile: string, socket: WebSocket) {
    this.#child = child;
    this.#profile = profile;
    this.#socket = socket;
    socket.onmessage = (event) => {
      const message = JSON.parse(String(event.data)) as Message;
      if (message.id !== undefined) {
        this.#waiting.get(message.id)?.(message);
        this.#waiting.delete(message.id);
      } else {
        for (const listener of this.#listeners) listener(message);
      }
    };
  }

  static async start(): Promise<HeadlessChromium> {
    const profile = await Deno.makeTempDir({ prefix: "fts-chromium-" });
    const child = new Deno.Command("chromium", {
      args: [
        "--headless=new",
        // Root in a container has no user namespace for the sandbox.
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--window-size=1000,700",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        `--user-data-dir=${profile}`,
        "about:blank",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      const deadline = Date.now() + START_TIMEOUT_MS;
      let endpoint: string | undefined;
      while (endpoint === undefined) {
        const text = await Deno.readTextFile(`${profile}/DevToolsActivePort`).catch(() => "");
        const [port, path] = text.trim().split("\n");
        if (port && path) endpoint = `ws://127.0.0.1:${port}${path}`;
        else if (Date.now() > deadline) throw new Error("Chromium did not open its DevTools port");
        else await new Promise((r) => setTimeout(r, 100));
      }
      const socket = new WebSocket(endpoint);
      await new Promise<void>((resolve, reject) => {
        socket.onopen = () => resolve();
        socket.onerror = () => reject(new Error(`Cannot connect to ${endpoint}`));
      });
      return new HeadlessChromium(child, profile, socket);
    } catch (error) {
      child.kill("SIGKILL");
      await child.status;
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      throw error;
    }
  }

  /** Sends a DevTools command (to a page when `sessionId` is given) and returns its result. */
  send(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<Record<string, unknown>> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new Error(`${method} got no answer in ${COMMAND_TIMEOUT_MS} ms`));
      }, COMMAND_TIMEOUT_MS);
      this.#waiting.set(id, (message) => {
        clearTimeout(timer);
        if (message.error) reject(new Error(`${method}: ${message.error.message}`));
        else resolve(message.result ?? {});
      });
      this.#socket.send(
        JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }),
      );
    });
  }

  /** Resolves with the params of the first event `method` that `match` accepts. */
  event(
    method: string,
    match: (params: Record<string, unknown>) => boolean = () => true,
    timeoutMs = COMMAND_TIMEOUT_MS,
  ): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const listener = (message: Message) => {
        if (message.method === method && match(message.params ?? {})) {
          this.#listeners.delete(listener);
          clearTimeout(timer);
          resolve(message.params ?? {});
        }
      };
      const timer = setTimeout(() => {
        this.#listeners.delete(listener);
        reject(new Error(`No ${method} event in ${timeoutMs} ms`));
      }, timeoutMs);
      this.#listeners.add(listener);
    });
  }

  /** Opens a new page and returns its session id. */
  async newPage(): Promise<string> {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    await this.send("Page.enable", {}, String(sessionId));
    return String(sessionId);
  }

  /** Loads `url` in the page and waits for its load event. */
  async navigate(sessionId: string, url: string): Promise<void> {
    const loaded = this.event("Page.loadEventFired");
    const { errorText } = await this.send("Page.navigate", { url }, sessionId);
    if (errorText) throw new Error(`Cannot load ${url}: ${errorText}`);
    await loaded;
  }

  /** The value of a JavaScript expression evaluated in the page. */
  async evaluate<T>(sessionId: string, expression: string): Promise<T> {
    const { result, exceptionDetails } = await this.send(
      "Runtime.evaluate",
      { expression, returnByValue: true },
      sessionId,
    ) as { result: { value: T }; exceptionDetails?: unknown };
    if (exceptionDetails) {
      throw new Error(`${expression} threw: ${JSON.stringify(exceptionDetails)}`);
    }
    return result.value;
  }

  /** A PNG screenshot of the page. */
  async screenshot(sessionId: string): Promise<Uint8Array> {
    const { data } = await this.send("Page.captureScreenshot", { format: "png" }, sessionId);
    return Uint8Array.from(atob(String(data)), (c) => c.charCodeAt(0));
  }

  async close(): Promise<void> {
    await this.send("Browser.close").catch(() => {});
    try {
      this.#socket.close();
    } catch { /* closed */ }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* exited */ }
    }, 5_000);
    await this.#child.status;
    clearTimeout(timer);
    await Deno.remove(this.#profile, { recursive: true }).catch(() => {});
  }
}

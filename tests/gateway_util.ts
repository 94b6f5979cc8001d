/**
 * Helpers for the gateway tests: an `fts gateway` child on port 0 and its
 * URL, the real HTTP clients run as child processes, the gateway's counters,
 * and raw sockets for requests no polite client sends.
 */
import { outputWithin } from "../bench/fts_process.ts";
import { FtsProcess, type RunResult } from "./harness.ts";

export interface TestGateway {
  process: FtsProcess;
  /** "http://127.0.0.1:PORT" (or https). */
  url: string;
  port: number;
  stats(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** Starts `fts gateway --port 0` with `args` (which name the cluster) and waits for it. */
export async function startGateway(args: string[], host = "127.0.0.1"): Promise<TestGateway> {
  const process = new FtsProcess(["gateway", "--port", "0", "--host", host, ...args]);
  let match: RegExpMatchArray;
  try {
    match = await process.waitFor(/ready: (https?:\/\/\S+?)\/ /, 30_000);
  } catch (error) {
    process.kill();
    await process.status;
    throw error;
  }
  const url = match[1]!;
  const gateway: TestGateway = {
    process,
    url,
    port: Number(new URL(url).port),
    async stats() {
      const result = await run("curl", ["-sS", "-k", `${url}/stats`]);
      if (result.code !== 0) throw new Error(`stats: ${result.stderr}`);
      return JSON.parse(result.stdout);
    },
    async stop() {
      process.kill("SIGTERM");
      await process.status;
    },
  };
  return gateway;
}

/** Runs a program to completion, output captured; killed after `timeoutMs`. */
export async function run(
  program: string,
  args: string[],
  options: { cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  const child = new Deno.Command(program, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).spawn();
  return await outputWithin(child, options.timeoutMs ?? 60_000);
}

/** A response's status line and headers (lower-case names), from `curl -sS -D -`-style output. */
export function parseHead(text: string): { status: number; headers: Map<string, string> } {
  const lines = text.split("\r\n");
  const status = Number(/^HTTP\/\d(?:\.\d)? (\d{3})/.exec(lines[0] ?? "")?.[1] ?? NaN);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status, headers };
}

/** curl with `args` and the response head: status, headers, and the body on stdout. */
export async function curlHead(
  url: string,
  args: string[] = [],
): Promise<{ status: number; headers: Map<string, string>; body: string; code: number }> {
  const headFile = await Deno.makeTempFile({ prefix: "fts-gw-head-" });
  try {
    const result = await run("curl", ["-sS", "-k", "-D", headFile, ...args, url]);
    const head = parseHead(await Deno.readTextFile(headFile));
    return { ...head, body: result.stdout, code: result.code };
  } finally {
    await Deno.remove(headFile).catch(() => {});
  }
}

/** Sends raw bytes on a new connection and reads until the server closes it (or timeoutMs). */
export async function rawExchange(
  port: number,
  request: string | Uint8Array,
  timeoutMs = 15_000,
): Promise<{ response: string; closedAfterMs: number }> {
  const started = performance.now();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  let response = "";
  try {
    const bytes = typeof request === "string" ? new TextEncoder().encode(request) : request;
    await conn.write(bytes).catch(() => 0);
    const buffer = new Uint8Array(64 * 1024);
    const decoder = new TextDecoder();
    while (true) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) break;
      response += decoder.decode(buffer.subarray(0, n), { stream: true });
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
  return { response, closedAfterMs: performance.now() - started };
}

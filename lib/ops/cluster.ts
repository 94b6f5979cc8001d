/**
 * The cluster supervisor: starts every instance as its own child process,
 * reports them going down and coming back (or living but no longer
 * answering), restarts one on request (the control channel that `fts start`
 * uses), and stops them all on the way out.
 */
import { type ClusterConfig, dataPaths, instanceAddress, instanceIds } from "../state/config.ts";
import { AnswerWatch, checkIntervalFor } from "./answer_watch.ts";
import { writeFileAtomic } from "../base/fs_util.ts";
import { Healer, type HealEvent, type RepairRunner } from "./heal.ts";
import { repairCluster } from "./repair.ts";
import { livePid } from "./instances.ts";
import { resolve } from "../base/paths.ts";
import { saveServeFlags } from "../state/serve_flags.ts";
import { instanceCommand } from "./instance_bundle.ts";
import { TLS_CA_ENV } from "../wire/tls.ts";
import { portFree, portHolder } from "../base/ports.ts";

/** How long a new supervisor waits for the instances of a dead one to exit by themselves. */
const ORPHANS_EXIT_WAIT_MS = 2_000;
/** How long one instance may take to print its ready line. */
export const READY_TIMEOUT_MS = 30_000;
/** Taken ports named in the error when a cluster cannot start; the rest are counted. */
const MAX_LISTED_TAKEN_PORTS = 5;
/** How much of an instance's stderr is kept to say why it did not start. */
const LAST_WORDS_CHARS = 2_048;
/** How long instances get to exit after SIGTERM before SIGKILL. */
export const STOP_GRACE_MS = 3_000;

export type InstanceState = "starting" | "up" | "down";

export type SupervisorEvent =
  | { type: "up"; id: string; pid: number }
  | { type: "down"; id: string; pid: number; signal: string | null; code: number }
  /** Running, but no answer to MISSED_ANSWERS_DOWN checks in a row: down for healing. */
  | { type: "silent"; id: string }
  | { type: "answering"; id: string }
  /** Answers, but cannot read its part store (`reason`): down for healing. */
  | { type: "failing"; id: string; reason: string }
  /** A failing instance reads its part store again. */
  | { type: "serving"; id: string };

interface _Instance {
  id: string;
  state: InstanceState;
  child?: Deno.ChildProcess | undefined;
  pid?: number | undefined;
  /** SIGKILLed by kill(), and not gone yet. */
  killed?: boolean;
}

export class Supervisor {
  readonly dir: string;
  readonly config: ClusterConfig;
  readonly #instances = new Map<string, _Instance>();
  readonly #onEvent: (event: SupervisorEvent) => void;
  #stopping = false;
  /** Whether this host's children going down and up drive healing. */
  readonly #localHealEvents: boolean;
  #control: Deno.TcpListener | undefined;
  #lock: Deno.FsFile | undefined;

  /** Extra flags passed to every `fts serve` (e.g. --limit-rate). */
  readonly serveArgs: string[];
  /** Re-replicates the parts of instances that stay down (healing); undefined when off. */
  readonly healer: Healer | undefined;
  /** Finds instances that live but no longer answer, for healing (answer_watch.ts). */
  readonly #answers: AnswerWatch | undefined;

  constructor(
    dir: string,
    config: ClusterConfig,
    onEvent: (event: SupervisorEvent) => void,
    options: {
      serveArgs?: string[];
      /** 0 turns healing off. */
      healAfterMs?: number;
      healRateBytesPerSecond?: number;
      onHeal?: (event: HealEvent) => void;
      /**
       * How healing repairs, when not this data directory's cluster (a
       * cluster in etcd); its down and up events then come from outside
       * (etcd's liveness keys), not from this host's children.
       */
      repair?: RepairRunner;
    } = {},
  ) {
    this.dir = dir;
    this.config = config;
    this.#onEvent = onEvent;
    this.#localHealEvents = options.repair === undefined;
    this.serveArgs = options.serveArgs ?? [];
    this.healer = options.healAfterMs
      ? new Healer(options.repair ?? ((o) => repairCluster(dir, config, o)), {
        healAfterMs: options.healAfterMs,
        ...(options.healRateBytesPerSecond !== undefined
          ? { rateBytesPerSecond: options.healRateBytesPerSecond }
          : {}),
        ...(options.onHeal ? { onEvent: options.onHeal } : {}),
        // In etcd, acting on who is down and up waits for this host's election.
        ...(options.repair !== undefined ? { leading: false } : {}),
      })
      : undefined;
    for (const id of instanceIds(config)) this.#instances.set(id, { id, state: "down" });
    const healer = this.healer;
    // In etcd, who is down is what the liveness keys of every host say
    // (etcd_heal.ts); this host's watch still starts runs for what its own
    // instances report: a quarantined copy, a listed copy missing.
    const local = this.#localHealEvents;
    this.#answers = healer && new AnswerWatch({
      intervalMs: checkIntervalFor(healer.healAfterMs),
      instances: () =>
        [...this.#instances.values()].filter((i) => i.state === "up").map(({ id }) => ({
          id,
          address: instanceAddress(config, id),
        })),
      onSilent: (id) => {
        if (local) healer.instanceDown(id);
        this.#onEvent({ type: "silent", id });
      },
      onAnswering: (id) => {
        if (local) healer.instanceUp(id);
        this.#onEvent({ type: "answering", id });
      },
      onFailing: (id, reason) => {
        if (local) healer.instanceDown(id);
        this.#onEvent({ type: "failing", id, reason });
      },
      onServing: (id) => {
        if (local) healer.instanceUp(id);
        this.#onEvent({ type: "serving", id });
      },
      onQuarantined: (id) => healer.trigger(`instance ${id} quarantined a bad copy`),
      onReportedMissing: (id) =>
        healer.triggerLimited(`a client found a listed copy missing on instance ${id}`),
    });
  }

  /**
   * After startAll(): a healing run, once the cluster has been up for
   * --heal-after, for what a supervisor before this one left (Healer's
   * afterStart()). In etcd, hosts joining start runs.
   */
  healLeftovers(): void {
    if (this.#localHealEvents) this.healer?.afterStart();
  }

  states(): Record<string, InstanceState> {
    return Object.fromEntries([...this.#instances.values()].map((i) => [i.id, i.state]));
  }

  /** Starts every instance; resolves when all listen, or throws naming the ones that failed. */
  async startAll(): Promise<void> {
    const paths = dataPaths(this.dir);
    await Deno.mkdir(paths.runDir, { recursive: true });
    await Deno.mkdir(paths.logDir, { recursive: true });
    // Held while this supervisor lives (the kernel lets go when it dies): two
    // clusters started at once on one directory both passed the check for a
    // running one, then each failed on the other's instances.
    const lock = await Deno.open(paths.supervisorLock, {
      write: true,
      create: true,
    });
    if (!lock.tryLockSync(true)) {
      lock.close();
      throw new Error(`A cluster is already running for ${this.dir}`);
    }
    this.#lock = lock;
    // Instances of a supervisor killed a moment ago exit by themselves (they
    // watch their parent); those that do not (fts start) are refused below.
    let running: string[] = [];
    for (const stopAt = Date.now() + ORPHANS_EXIT_WAIT_MS;;) {
      running = [];
      for (const id of this.#instances.keys()) {
        const pid = await livePid(this.dir, id);
        if (pid !== undefined) running.push(`${id} (pid ${pid})`);
      }
      if (running.length === 0 || Date.now() >= stopAt) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (running.length > 0) {
      throw new Error(
        `Instances already running for ${this.dir}: ${running.slice(0, 5).join(", ")}${
          running.length > 5 ? ", ..." : ""
        }; stop them (fts kill PORT) or use another --data`,
      );
    }
    await refuseTakenPorts(this.config);
    await this.#listenControl();
    // For an instance started later without this supervisor (fts start): the same flags.
    const tlsCa = Deno.env.get(TLS_CA_ENV);
    await saveServeFlags(this.dir, {
      args: this.serveArgs,
      ...(tlsCa ? { tlsCa: resolve(tlsCa) } : {}),
    });
    const results = await Promise.allSettled(
      [...this.#instances.keys()].map((id) => this.start(id)),
    );
    const failed = results.flatMap((r) => (r.status === "rejected" ? [r.reason] : []));
    if (failed.length === 0) this.#answers?.start();
    if (failed.length > 0) {
      const first = (failed[0] as Error)?.message ?? String(failed[0]);
      throw new Error(
        `${failed.length} instances failed to start; the first said: ${first}` +
          ` (logs in ${dataPaths(this.dir).logDir})`,
        { cause: failed[0] },
      );
    }
  }

  /** Starts one instance and waits for its ready line. */
  async start(id: string): Promise<void> {
    const instance = this.#instances.get(id);
    if (!instance) throw new RangeError(`Instance ${id} is not part of this cluster`);
    // Killed a moment ago (a start typed right after a kill): once it is gone.
    if (instance.killed && instance.child) await instance.child.status;
    if (instance.state !== "down") throw new Error(`Instance ${id} is already ${instance.state}`);
    if (this.#stopping) throw new Error("The cluster is stopping");
    const pid = await livePid(this.dir, id);
    if (pid !== undefined) throw new Error(`Instance ${id} is already running (pid ${pid})`);
    instance.state = "starting";
    instance.killed = false;
    const paths = dataPaths(this.dir);
    const { program, prefix } = await instanceCommand(paths.runDir);
    const child = new Deno.Command(program, {
      args: [
        ...prefix,
        "serve",
        "--port",
        id,
        "--host",
        this.config.host,
        "--data",
        this.dir,
        "--parent-pid",
        String(Deno.pid),
        ...this.serveArgs,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    instance.child = child;
    instance.pid = child.pid;
    const log = await Deno.open(paths.logFile(id), { append: true, create: true });
    // Drain stderr into the log at all times so the child never blocks on a full pipe.
    // Written through at once (FsFile.writable holds what it is given until it is closed:
    // the log stayed empty while the instance ran), so that `tail -f` shows each line.
    const writeLog = async (bytes: Uint8Array) => {
      try {
        for (let done = 0; done < bytes.length;) done += await log.write(bytes.subarray(done));
      } catch { /* log closed */ }
    };
    // The end of what it said on stderr: an instance that fails to start says why there.
    let said = "";
    const stderrDrained = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stderr) {
        await writeLog(chunk);
        said = (said + decoder.decode(chunk, { stream: true })).slice(-LAST_WORDS_CHARS);
      }
    })().catch(() => {});
    let stdoutDrained: Promise<void> = Promise.resolve();
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`Instance ${id} did not become ready in ${READY_TIMEOUT_MS} ms`)),
        READY_TIMEOUT_MS,
      );
      stdoutDrained = (async () => {
        let pending = "";
        let seen = false;
        const decoder = new TextDecoder();
        for await (const chunk of child.stdout) {
          await writeLog(chunk);
          if (seen) continue;
          pending += decoder.decode(chunk, { stream: true });
          if (pending.includes("ready")) {
            seen = true;
            clearTimeout(timer);
            resolve();
          }
        }
        clearTimeout(timer);
        if (!seen) {
          await stderrDrained;
          // Its one error line, without the hint that only its own --verbose would honour.
          const why = said.trim().split("\n").at(-1)?.trim().replace(
            / \(--verbose for the cause\)$/,
            "",
          );
          reject(
            new Error(
              `Instance ${id} exited before it was ready${why ? `: ${why}` : ""} (see ${
                paths.logFile(id)
              })`,
            ),
          );
        }
      })().catch((error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    void child.status.then(async (status) => {
      instance.state = "down";
      instance.child = undefined;
      this.#answers?.forget(id);
      // Its last words (a crash's, say) are in the pipes still: into the log first.
      await Promise.all([stderrDrained, stdoutDrained]);
      try {
        log.close();
      } catch { /* closed already */ }
      // A killed instance could not remove its own pid file.
      try {
        const recorded = Number((await Deno.readTextFile(paths.pidFile(id))).trim());
        if (recorded === child.pid) await Deno.remove(paths.pidFile(id));
      } catch { /* already gone */ }
      if (!this.#stopping) {
        if (this.#localHealEvents) this.healer?.instanceDown(id);
        this.#onEvent({
          type: "down",
          id,
          pid: child.pid,
          signal: status.signal,
          code: status.code,
        });
      }
    });
    try {
      await ready;
    } catch (error) {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      throw error;
    }
    instance.state = "up";
    this.#onEvent({ type: "up", id, pid: child.pid });
    if (this.#localHealEvents) this.healer?.instanceUp(id);
  }

  /** Ends one instance at once, as a crash would. */
  /** SIGKILLs instance `id` and resolves with its pid once it is gone (and marked down). */
  async kill(id: string): Promise<number> {
    const instance = this.#instances.get(id);
    if (!instance) throw new RangeError(`Instance ${id} is not part of this cluster`);
    if (!instance.child || instance.state === "down" || instance.killed) {
      throw new Error(`Instance ${id} is already down`);
    }
    const { child } = instance;
    const pid = instance.pid!;
    instance.killed = true;
    child.kill("SIGKILL");
    // Its exit handler, registered first, marks it down before this goes on: a start
    // typed right after finds it down, not "already up".
    await child.status;
    return pid;
  }

  /** Stops every instance and waits for them; SIGKILL for any that linger. */
  async stopAll(): Promise<void> {
    this.#stopping = true;
    this.#answers?.stop();
    try {
      this.#control?.close();
    } catch { /* closed */ }
    await this.healer?.stop();
    const children = [...this.#instances.values()].flatMap((i) => (i.child ? [i.child] : []));
    for (const child of children) {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
    }
    const grace = setTimeout(() => {
      for (const child of children) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }
    }, STOP_GRACE_MS);
    await Promise.allSettled(children.map((child) => child.status));
    clearTimeout(grace);
    await Deno.remove(dataPaths(this.dir).clusterFile).catch(() => {});
    this.#lock?.close();
    this.#lock = undefined;
  }

  async #listenControl(): Promise<void> {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#control = listener;
    await writeFileAtomic(
      dataPaths(this.dir).clusterFile,
      JSON.stringify({ pid: Deno.pid, controlPort: (listener.addr as Deno.NetAddr).port }) + "\n",
    );
    void (async () => {
      for await (const conn of listener) void this.#serveControl(conn);
    })().catch(() => {});
  }

  /** One JSON request line in, one JSON reply line out. Local use only. */
  async #serveControl(conn: Deno.Conn): Promise<void> {
    const reply = async (value: unknown) => {
      try {
        await conn.write(new TextEncoder().encode(JSON.stringify(value) + "\n"));
      } catch { /* client gone */ }
    };
    try {
      const buffer = new Uint8Array(4096);
      let text = "";
      while (!text.includes("\n")) {
        const n = await conn.read(buffer);
        if (n === null || text.length > 4096) break;
        text += new TextDecoder().decode(buffer.subarray(0, n));
      }
      const request = JSON.parse(text.trim()) as { op?: unknown; id?: unknown };
      if (request.op === "start" && typeof request.id === "string") {
        await this.start(request.id);
        const pid = this.#instances.get(request.id)?.pid;
        await reply({ ok: true, pid });
      } else if (request.op === "status") {
        await reply({ ok: true, instances: this.states() });
      } else if (request.op === "heal") {
        await reply({ ok: true, heal: this.healer?.status() ?? null });
      } else {
        await reply({ ok: false, error: "Unknown control request" });
      }
    } catch (error) {
      await reply({ ok: false, error: error instanceof Error ? error.message : String(error) });
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }
}

/**
 * Names every instance port of `config` that something else already listens
 * on, and what holds it, before any instance starts: else each of those
 * instances fails on its own and the operator learns only how many did.
 */
export async function refuseTakenPorts(config: ClusterConfig): Promise<void> {
  const taken: string[] = [];
  const free = (port: number) => {
    try {
      return portFree(port, config.host);
    } catch (cause) {
      throw new Error(
        `Cannot start the cluster: ${(cause as Error).message} (the data directory's ` +
          `config.json records it as the instances' --host)`,
        { cause },
      );
    }
  };
  for (const id of instanceIds(config)) {
    const port = Number(id);
    if (!Number.isInteger(port) || free(port)) continue;
    const holder = await portHolder(port);
    taken.push(`port ${port} is in use${holder ? ` by ${holder}` : ""}`);
  }
  if (taken.length === 0) return;
  const shown = taken.slice(0, MAX_LISTED_TAKEN_PORTS).join(", ") +
    (taken.length > MAX_LISTED_TAKEN_PORTS
      ? ` and ${taken.length - MAX_LISTED_TAKEN_PORTS} more`
      : "");
  throw new Error(
    `Cannot start the cluster on ${config.host}: ${shown}; stop what holds ${
      taken.length === 1 ? "it" : "them"
    }, or start a cluster on other ports (another --data with --base-port)`,
  );
}

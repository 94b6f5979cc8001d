import {
  boolFlag,
  CLUSTER_FLAGS,
  clusterFlags,
  durationFlag,
  ETCD_FLAGS,
  etcdTarget,
  expectPositionals,
  intFlag,
  isTerminal,
  type ParsedFlags,
  parseFlags,
  sizeFlag,
  stringFlag,
} from "../lib/cli/flags.ts";
import { rateFlag } from "../lib/cli/repair_flags.ts";
import { exists } from "../lib/base/fs_util.ts";
import {
  checkFlagsAgainst,
  type ClusterConfig,
  DEFAULT_CONFIG,
  ensureConfig,
  loadConfig,
  plannedConfig,
  resolveDataDir,
} from "../lib/state/config.ts";
import {
  markedEtcdCluster,
  markEtcdHost,
  readEtcdHostMark,
  refuseEtcdHost,
} from "../lib/state/manifest_guard.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { loadOrCreateIdentity, operatorIdentityPath } from "../lib/auth/identity.ts";
import { refuseTakenPorts, Supervisor } from "../lib/ops/cluster.ts";
import { type GatewayChild, startGatewayChild } from "../lib/ops/gateway_child.ts";
import { DEFAULT_HEAL_AFTER_MS, HEAL_RETRY_MS, type HealEvent } from "../lib/ops/heal.ts";
import { runningSupervisor } from "../lib/ops/instances.ts";
import { resolve } from "../lib/base/paths.ts";
import { DEFAULT_REPAIR_RATE_BYTES_PER_SECOND } from "../lib/ops/repair.ts";
import { startingUnlessUp } from "../lib/ui/cluster_watch.ts";
import { LiveScreen } from "../lib/ui/live_screen.ts";
import { LiveSession } from "../lib/ui/live_session.ts";
import { clusterStatus } from "../lib/ops/status.ts";
import { clusterTitle } from "../lib/ui/status_watch.ts";
import { clock, formatBytes, formatDuration, plural } from "../lib/base/units.ts";
import { formatRepairEvent, formatRepairSummary } from "../lib/ui/repair_format.ts";
import { formatStatus } from "../lib/ui/status_format.ts";
import {
  checkServerCertificate,
  loadTlsClientOptions,
  loadTlsServerOptions,
  TLS_CA_ENV,
} from "../lib/wire/tls.ts";
import { checkHostAddress } from "../lib/etcd/host_address.ts";
import { onStopSignal } from "../lib/base/stop_signal.ts";
import { type EtcdCluster } from "../lib/etcd/etcd_cluster.ts";
import { etcdRepairRunner, leadHealing, watchMembers } from "../lib/ops/etcd_heal.ts";

export const USAGE =
  "fts cluster [--servers 50] [--base-port 9001] [--replicas 5] [--host 127.0.0.1] [--limit-rate RATE per instance] [--heal-after 60s (0: off)] [--heal-rate 64MiB] [--tls-cert FILE --tls-key FILE --tls-ca FILE] [--http PORT [--verify]] [--plain] [--quiet] [--data DIR] [--etcd URLS --host ADDR [--zone NAME] [--cluster NAME] [--part-size SIZE]]";

export const EXAMPLE = [
  "fts cluster                                  # 50 instances on 9001-9050, live view on a terminal",
  "fts cluster --servers 10 --replicas 3 --plain  # plain lines instead of the live view",
  "fts cluster --etcd http://10.0.0.1:2379 --host 10.0.0.2 --servers 10 --replicas 3  # one host of many",
  "fts cluster --http 8080                      # and an HTTP gateway: curl -O http://127.0.0.1:8080/files/NAME",
].join("\n");

const HELP_LINES = "commands: kill PORT, start PORT, status, quit";
const LIVE_HELP = "kill PORT · start PORT · status · quit   (Ctrl-C also stops every instance)";

/** Now, as the local time of day (as the live view shows it). */
function _time(): string {
  return clock(Date.now());
}

/** What healing did, in the cluster's output: each run's cause and outcome, and any trouble. */
function _printHeal(event: HealEvent): void {
  if (event.type === "start") {
    console.log(`${_time()} heal: ${event.reason}: checking every part's copies`);
  } else if (event.type === "done") {
    console.log(`${_time()} heal: ${formatRepairSummary(event.report, event.elapsedMs)}`);
  } else if (event.type === "error") {
    console.log(
      `${_time()} heal: failed: ${event.message}; trying again in ${formatDuration(HEAL_RETRY_MS)}`,
    );
  } else if (
    ["corrupt", "copy-failed", "drop-failed", "short", "lost"].includes(event.event.type)
  ) {
    // Each copy and drop is in the summary; trouble gets a line of its own.
    const line = formatRepairEvent(event.event);
    if (line !== undefined) console.log(`${_time()} heal: ${line}`);
  }
}

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    ...CLUSTER_FLAGS,
    quiet: { type: "boolean" },
    plain: { type: "boolean" },
    "limit-rate": { type: "string" },
    "heal-after": { type: "string" },
    "heal-rate": { type: "string" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    "tls-ca": { type: "string" },
    "part-size": { type: "string" },
    zone: { type: "string" },
    ...ETCD_FLAGS,
    http: { type: "string" },
    verify: { type: "boolean" },
  });
  expectPositionals(flags, 0, 0, USAGE);
  const httpPort = intFlag(flags, "http", 0, 65535);
  const verify = boolFlag(flags, "verify");
  if (verify && httpPort === undefined) {
    throw new UsageError(
      "--verify is for the HTTP gateway (every part checked with its SHA-256): give --http PORT too",
    );
  }
  const requested = clusterFlags(flags);
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const etcd = etcdTarget(flags);
  // Checked before anything is written: a mistyped key file leaves no data directory behind.
  const tlsArgs = await _tlsServeArgs(
    flags,
    // The address the instances will listen on and be dialled at (etcd mode requires --host).
    requested.host ?? (etcd ? undefined : (await loadConfig(dir))?.host ?? DEFAULT_CONFIG.host),
  );
  const healRate = rateFlag(flags, "heal-rate") ?? DEFAULT_REPAIR_RATE_BYTES_PER_SECOND;
  const limitRate = sizeFlag(flags, "limit-rate");
  // Each instance's own rule (fts serve), said once here rather than by every instance's log.
  if (limitRate !== undefined && limitRate < 1024) {
    throw new UsageError("--limit-rate must be at least 1KiB (per instance)");
  }
  // A host's directory of a cluster in etcd, started without --etcd, would serve "no files".
  if (!etcd) refuseEtcdHost(dir);
  // Refused for this host's own reasons before anything is written, here or in etcd.
  const existing = await runningSupervisor(dir);
  if (existing) throw new Error(`A cluster is already running for ${dir} (pid ${existing.pid})`);
  if (etcd) await _checkEtcdHostDir(dir, etcd.cluster, requested);
  // In etcd mode the data directory's config describes this host's instances
  // only; the replica count and the files live in etcd.
  const configFlags = etcd
    ? { ...requested, replicas: (await loadConfig(dir))?.replicas ?? 1 }
    : requested;
  // The ports, before anything is recorded: a mistake fixed on the next try
  // must not meet "contradicts the cluster recorded".
  const planned = await plannedConfig(dir, configFlags);
  const lastPort = planned.basePort + planned.servers - 1;
  if (httpPort !== undefined && httpPort >= planned.basePort && httpPort <= lastPort) {
    throw new UsageError(
      `--http ${httpPort} is one of the instances' ports (${planned.basePort}-${lastPort}): pick another`,
    );
  }
  // A directory with a config is checked by the supervisor, once the instances
  // of one killed a moment ago have exited (they hold its ports until then).
  if (!(await loadConfig(dir))) await refuseTakenPorts(planned);
  const etcdArgs = etcd ? await _joinEtcd(etcd, flags, dir, requested) : undefined;
  const config = await ensureConfig(dir, configFlags, { manifest: !etcd });
  // The operator's key signs the copies repair and heal make, which a cluster
  // closed to other writers (fts writers closed) still takes.
  if (!etcd) await loadOrCreateIdentity(operatorIdentityPath(dir));
  if (!etcd && (stringFlag(flags, "part-size") ?? stringFlag(flags, "zone")) !== undefined) {
    throw new UsageError(
      "--part-size and --zone belong to a cluster in etcd (--etcd); fts preload takes --part-size",
    );
  }

  const quiet = boolFlag(flags, "quiet");
  let ready = false;
  const healAfterMs = durationFlag(flags, "heal-after") ?? DEFAULT_HEAL_AFTER_MS;
  const serveArgs = limitRate !== undefined ? ["--limit-rate", String(limitRate)] : [];
  serveArgs.push(...tlsArgs, ...(etcdArgs?.serveArgs ?? []));
  const supervisor = new Supervisor(dir, config, (event) => {
    if (event.type === "down") {
      const how = event.signal ? `killed by ${event.signal}` : `exited with code ${event.code}`;
      console.log(`${_time()} instance ${event.id} down (${how})`);
    } else if (event.type === "silent") {
      console.log(
        `${_time()} instance ${event.id} does not answer (running, but hung?): down for healing`,
      );
    } else if (event.type === "answering") {
      console.log(`${_time()} instance ${event.id} answers again`);
    } else if (event.type === "failing") {
      console.log(
        `${_time()} instance ${event.id} answers but ${event.reason}: down for healing`,
      );
    } else if (event.type === "serving") {
      console.log(`${_time()} instance ${event.id} reads its parts again`);
    } else if (ready) {
      console.log(`${_time()} instance ${event.id} up (pid ${event.pid})`);
    }
  }, {
    serveArgs,
    healAfterMs,
    healRateBytesPerSecond: healRate,
    onHeal: _printHeal,
    ...(etcdArgs ? { repair: etcdRepairRunner(etcdArgs.cluster, { dir, host: config.host }) } : {}),
  });
  // In etcd, who is down is what etcd's liveness keys say, over every host.
  const stopWatching = etcdArgs && supervisor.healer
    ? watchMembers(etcdArgs.cluster, supervisor.healer)
    : undefined;
  // One host, elected, acts on that for the cluster; another takes over when it stops or dies.
  const stopLeading = etcdArgs && supervisor.healer
    ? leadHealing(etcdArgs.cluster, supervisor.healer, `heal@${config.host} (pid ${Deno.pid})`)
    : undefined;
  // Copies on this host's instances of parts a delete on another host left unused.
  const freeing = new AbortController();
  if (etcdArgs) {
    const { freeAnnouncedCopies } = await import("../lib/ops/etcd_instance.ts");
    const { hostStoreOf, storesOnHost } = await import("../lib/state/part_gc.ts");
    const holder = `free@${config.host} (pid ${Deno.pid})`;
    const stores = () => storesOnHost(dir);
    const storeOf = hostStoreOf(dir, config.host);
    void freeAnnouncedCopies(etcdArgs.cluster, { holder, stores, storeOf }, freeing.signal);
  }

  let gateway: GatewayChild | undefined;
  let stopping: Promise<void> | undefined;
  // The healer's election goes first: another host leads before these instances go down.
  const stop = () => (stopping ??= (async () => {
    await stopLeading?.();
    await Promise.all([gateway?.stop(), supervisor.stopAll()]);
  })());
  const done = Promise.withResolvers<number>();
  const onSignal = () => void stop().then(() => done.resolve(0));
  const stopListening = onStopSignal(onSignal);

  // On a terminal: the live view, from the start so instances are seen coming up.
  // What this command prints from here on shows as the view's events.
  // The live view shows a single-host cluster; a host of an etcd cluster prints lines.
  const live = !etcd && !quiet && !boolFlag(flags, "plain") && LiveScreen.available()
    ? new LiveSession({
      dir,
      config,
      title: clusterTitle("fts cluster", dir, config),
      // Until ready, an instance not up yet is starting, not down.
      states: () => ready ? supervisor.states() : startingUnlessUp(supervisor.states()),
      upDown: false,
      ...(isTerminal(Deno.stdin)
        ? { commands: { help: LIVE_HELP, run: (line) => _runCommand(line, supervisor, onSignal) } }
        : { footer: "Ctrl-C stops every instance" }),
      onQuit: onSignal,
    })
    : undefined;
  live?.start();
  const started = performance.now();
  try {
    await supervisor.startAll();
    if (httpPort !== undefined) {
      // In etcd, this host's gateway serves the whole cluster and announces itself there.
      const etcdGatewayArgs = etcd
        ? ["--etcd", etcd.endpoints.join(","), "--cluster", etcd.cluster]
        : [];
      gateway = await startGatewayChild(dir, {
        host: config.host,
        port: httpPort,
        args: [...tlsArgs, ...etcdGatewayArgs, ...(verify ? ["--verify"] : [])],
      });
      void gateway.exited.then((status) => {
        if (stopping === undefined) {
          console.log(
            `${_time()} HTTP gateway down (exit ${status.code}); restart the cluster to bring it back`,
          );
        }
      });
    }
  } catch (error) {
    // Ctrl-C while instances start stops them, which then fail to start: no failure of theirs.
    const interrupted = stopping !== undefined;
    await stop();
    for (const line of (await live?.stop()) ?? []) console.log(line);
    if (interrupted) throw new DOMException("Interrupted", "AbortError");
    throw error;
  }
  ready = true;
  console.log(
    `fts cluster: ready: ${config.servers} instances listening on ${config.host}:${config.basePort}-${lastPort}` +
      ` (R=${etcdArgs?.replicas ?? config.replicas}, ${
        etcd ? `cluster "${etcd.cluster}" in etcd at ${etcd.endpoints.join(",")}, ` : ""
      }data in ${dir}, ${formatDuration(performance.now() - started)}); Ctrl-C stops them all`,
  );
  if (gateway) {
    console.log(
      `fts cluster: HTTP gateway at ${gateway.url}/ (curl -O ${gateway.url}/files/NAME; a browser shows the index)`,
    );
  }
  if (etcdArgs) {
    // Fewer instances than copies a part needs: uploads cannot publish until more join.
    const members = (await etcdArgs.cluster.members().catch(() => undefined))?.size;
    if (members !== undefined && members < etcdArgs.replicas) {
      console.log(
        `fts cluster: the cluster has ${
          plural(members, "instance")
        }, fewer than the ${etcdArgs.replicas} ` +
          `copies each part needs (R): uploads fail until more hosts join`,
      );
    }
  }
  console.log(
    healAfterMs > 0
      ? `fts cluster: healing: the parts of an instance down for ${
        formatDuration(healAfterMs)
      } are copied elsewhere (at most ${
        healRate > 0 ? `${formatBytes(healRate)}/s` : "full speed"
      }); --heal-after 0 turns it off`
      : "fts cluster: healing is off (--heal-after 0); fts repair heals by hand",
  );
  supervisor.healLeftovers();

  if (isTerminal(Deno.stdin) && !quiet && !live) {
    console.log(HELP_LINES);
    void _commandLoop(supervisor, () => onSignal());
  }
  const code = await done.promise;
  // The view's events, printed again on the normal screen as a record.
  for (const line of (await live?.stop()) ?? []) console.log(line);
  stopListening();
  stopWatching?.();
  freeing.abort();
  etcdArgs?.cluster.close();
  console.log("fts cluster: all instances stopped");
  return code;
}

/**
 * Joins (or creates) the cluster in etcd: records the settings the first
 * time, checks the flags against them after, and records this data
 * directory's operator key when the cluster has none. Returns the flags
 * every instance of this host gets.
 */
async function _joinEtcd(
  etcd: { endpoints: string[]; cluster: string },
  flags: ParsedFlags,
  dir: string,
  requested: { host?: string; replicas?: number },
): Promise<{ serveArgs: string[]; replicas: number; cluster: EtcdCluster }> {
  if (requested.host === undefined) {
    throw new UsageError("--etcd needs --host ADDR: the address other hosts reach this host on");
  }
  checkHostAddress(requested.host);
  const partSize = sizeFlag(flags, "part-size");
  const { EtcdCluster } = await import("../lib/etcd/etcd_cluster.ts");
  const cluster = new EtcdCluster(etcd.endpoints, etcd.cluster);
  // The host's key is made before etcd's settings are checked (they record it): a refused
  // start removes the directory it made, leaving nothing behind.
  const made = !(await exists(dir));
  try {
    await Deno.mkdir(dir, { recursive: true });
    await _refuseLostCluster(dir, cluster, etcd);
    const operator = await loadOrCreateIdentity(operatorIdentityPath(dir));
    const settings = await cluster.ensureSettings(
      {
        ...(requested.replicas !== undefined ? { replicas: requested.replicas } : {}),
        ...(partSize !== undefined ? { partSize } : {}),
        operatorKey: operator.owner,
      },
      { replicas: DEFAULT_CONFIG.replicas, partSize: DEFAULT_CONFIG.partSize },
    );
    // This host heals with its own key: a cluster closed to other writers takes its copies.
    const { changeEtcdWriters, readEtcdWriters } = await import("../lib/etcd/etcd_writers.ts");
    if (!(await readEtcdWriters(cluster.etcd, cluster.keys)).hostKeys?.includes(operator.owner)) {
      await changeEtcdWriters(cluster.etcd, cluster.keys, { type: "host", key: operator.owner });
    }
    // Marked, so that a command given this directory without --etcd is told to pass it.
    await markEtcdHost(dir, etcd.cluster, etcd.endpoints, settings.clusterId);
    if (settings.operatorKey !== operator.owner) {
      console.log(
        `fts cluster: the operator key is another host's: to preload from this host, copy that ` +
          `host's operator_identity.json to ${operatorIdentityPath(dir)}`,
      );
    }
    const zone = stringFlag(flags, "zone");
    return {
      serveArgs: [
        "--etcd",
        etcd.endpoints.join(","),
        "--cluster",
        etcd.cluster,
        ...(zone !== undefined ? ["--zone", zone] : []),
      ],
      replicas: settings.replicas,
      cluster,
    };
  } catch (error) {
    cluster.close();
    if (made) await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

/**
 * Refuses a host directory of a cluster that this etcd does not hold as the
 * one the directory was marked for: etcd wiped or restored from an old
 * backup, or --etcd naming another etcd. Going on would create a new, empty
 * cluster of that name, and every part in the directory would count as
 * unused there (deleted by the first healing run once old enough).
 */
async function _refuseLostCluster(
  dir: string,
  cluster: EtcdCluster,
  etcd: { endpoints: string[]; cluster: string },
): Promise<void> {
  const mark = readEtcdHostMark(dir);
  if (mark?.cluster !== etcd.cluster) return;
  const settings = await cluster.settings();
  if (settings !== undefined && (!mark.clusterId || settings.clusterId === mark.clusterId)) return;
  const was = mark.clusterId ? ` (id ${mark.clusterId})` : "";
  const now = settings === undefined
    ? "which etcd at " + etcd.endpoints.join(",") + " does not hold"
    : `but etcd at ${
      etcd.endpoints.join(",")
    } holds another cluster of that name (id ${settings.clusterId})`;
  throw new UsageError(
    `${dir} is a host of cluster "${etcd.cluster}"${was}, ${now}: a wiped or restored etcd, ` +
      `or another one. Starting would make a new, empty cluster, and every part in ${dir} would ` +
      `count as unused; point --etcd at the etcd that holds the cluster (or restore it), or give ` +
      `a new cluster another --data`,
  );
}

/**
 * Refuses a data directory that belongs to another cluster in etcd (its
 * parts would count as unused there, and be deleted a day later) or whose
 * recorded instances the flags contradict.
 */
async function _checkEtcdHostDir(
  dir: string,
  cluster: string,
  requested: Partial<ClusterConfig>,
): Promise<void> {
  const marked = markedEtcdCluster(dir);
  if (marked !== undefined && marked !== cluster) {
    throw new UsageError(
      `${dir} holds the parts of a host of cluster "${marked}" in etcd, not of "${cluster}": ` +
        `pass --cluster ${marked}, or give this host of "${cluster}" another --data`,
    );
  }
  // The replica count is the cluster's, in etcd; the directory records this host's instances.
  const { replicas: _, ...local } = requested;
  const recorded = await loadConfig(dir);
  if (recorded) checkFlagsAgainst(recorded, local, dir);
}

/**
 * TLS flags for every instance, checked here once rather than in each child.
 * A CA is required with them: the supervisor's own connections to its
 * instances (healing, the answer watch, the live view) check them with it,
 * and the certificate must pass that check at `host`, as clients dial it.
 */
async function _tlsServeArgs(flags: ParsedFlags, host: string | undefined): Promise<string[]> {
  const cert = stringFlag(flags, "tls-cert");
  const key = stringFlag(flags, "tls-key");
  const server = await loadTlsServerOptions(cert, key);
  if (!server) return [];
  const ca = stringFlag(flags, "tls-ca") ?? (Deno.env.get(TLS_CA_ENV) || undefined);
  if (ca === undefined) {
    throw new UsageError(
      "--tls-cert needs --tls-ca FILE too (or FTS_TLS_CA): healing and the supervisor's checks " +
        "reach the instances over TLS and verify them with the CA (fts certs wrote ca.pem)",
    );
  }
  const client = await loadTlsClientOptions(ca);
  // Instances whose certificate their clients refuse would serve no one, healing included.
  if (host !== undefined && client) {
    await checkServerCertificate(server, client, host, { cert: cert!, ca });
  }
  Deno.env.set(TLS_CA_ENV, resolve(ca));
  return ["--tls-cert", resolve(cert!), "--tls-key", resolve(key!)];
}

async function _commandLoop(supervisor: Supervisor, quit: () => void): Promise<void> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of Deno.stdin.readable) {
    pending += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      await _runCommand(line, supervisor, quit);
    }
  }
  quit();
}

/** One line of the interactive loop (or the live view's command line); prints its outcome. */
async function _runCommand(line: string, supervisor: Supervisor, quit: () => void): Promise<void> {
  const [word, ...args] = line.trim().split(/\s+/);
  if (!word) return;
  if (word === "quit" || word === "exit") return quit();
  if (word === "kill" || word === "start") {
    // Each port in turn, each with its own outcome: "kill 9006 9007" kills both.
    if (args.length === 0 || !args.every((arg) => /^\d+$/.test(arg))) {
      return console.log(`error: ${word} takes one or more PORTs (${word} 9012)`);
    }
    for (const port of args) {
      await _tell(async () => {
        if (word === "start") return await supervisor.start(port);
        console.log(`killed instance ${port} (pid ${await supervisor.kill(port)})`);
      });
    }
  } else if (word === "status") {
    await _tell(async () => {
      console.log(formatStatus(await clusterStatus(supervisor.dir, supervisor.config)));
    });
  } else {
    console.log(`unknown command "${line}"; ${HELP_LINES}`);
  }
}

/** Runs one command of the prompt; a failure is its one "error:" line. */
async function _tell(run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (error) {
    console.log(`error: ${error instanceof Error ? error.message : String(error)}`);
  }
}

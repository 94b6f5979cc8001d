/**
 * Sending a signed request (file.publish, file.delete, file.rename) to the
 * first server that answers. Each attempt is signed anew, so a retry on
 * another server never looks like a replay.
 */
import { resolveDataDir } from "../state/config.ts";
import { type ErrorCode, ProtocolError, RemoteProtocolError, UsageError } from "../wire/errors.ts";
import { type Identity, identityFromFlags } from "../auth/identity.ts";
import { Peer } from "./peer.ts";
import { type ReplyOf } from "../wire/ops.ts";
import { instanceTls, resolveServers } from "./servers.ts";
import { type EtcdTarget } from "../etcd/etcd_keys.ts";
import { signRequest, type UnsignedRequest } from "../auth/signed_request.ts";
import { shuffled } from "../base/shuffled.ts";
import { defaultTlsClientOptions, preferredTlsError, TlsError } from "../wire/tls.ts";

/** How long a signed request may wait for its reply: the server may free many parts first. */
export const MUTATION_REPLY_TIMEOUT_MS = 30_000;
/**
 * How long the hello and the binding reads before it may stall: a hung
 * instance (stopped, its disk hung) still accepts connections, and each one
 * tried cost the whole reply timeout before the next server was.
 */
export const MUTATION_HANDSHAKE_TIMEOUT_MS = 3_000;
export const MUTATION_CONNECT_TIMEOUT_MS = 2_000;

/** Answers that another server would give just the same: stop and report them. */
const FINAL_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "UNAUTHORIZED",
  "NOT_YOURS",
  "ALREADY_EXISTS",
  "BAD_NAME",
  "NOT_FOUND",
  "MISSING_PARTS",
  "BAD_REQUEST",
  "BODY_TOO_LARGE",
  "UNAVAILABLE",
  // The writers policy and quotas are the cluster's.
  "NOT_ALLOWED",
]);

/** An attempt that sent its request and then lost the reply: it may have made the change. */
export interface LostReply {
  address: string;
  /** How the reply was lost (reset, closed, timed out...). */
  reason: string;
}

/**
 * A final answer (NOT_FOUND, NOT_YOURS...) that came after an earlier attempt
 * sent the request and lost its reply. That attempt may have made the change,
 * so the answer may describe the state after it: NOT_FOUND to a delete can
 * mean "already deleted". The commands decide; code and message are the answer's.
 */
export class AfterLostReplyError extends ProtocolError {
  readonly lostReplies: readonly LostReply[];
  constructor(answer: ProtocolError, lostReplies: readonly LostReply[]) {
    super(answer.code, answer.message, { cause: answer });
    this.name = "AfterLostReplyError";
    this.lostReplies = lostReplies;
  }
}

type _Without<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/**
 * A signed request as a command states it, before it is bound to a cluster;
 * a delete or rename names the content it means to change when the command
 * looked it up (file.get), else it is looked up when bound.
 */
export type UnboundRequest = _Without<UnsignedRequest, "cluster" | "contentId"> & {
  contentId?: string;
};

/**
 * Binds a request to what `peer` says: the cluster's id and, for a delete
 * or rename that names no content, the content id of the entry it changes
 * (NOT_FOUND when there is none).
 */
export async function bindRequest<R extends UnboundRequest>(
  peer: Peer,
  request: R,
): Promise<UnsignedRequest & { op: R["op"] }> {
  const cluster = (await peer.clusterInfo()).clusterId;
  const { contentId, ...fields } = request;
  if (fields.op === "file.publish") return { ...fields, cluster } as never;
  return {
    ...fields,
    cluster,
    contentId: contentId ?? (await peer.getFile(fields.name)).entry.contentId,
  } as never;
}

/**
 * Binds `request` (bindRequest) on each server tried in order, signs it as
 * `identity` and sends it; returns the reply. A final answer after a lost
 * reply is thrown as AfterLostReplyError.
 */
export async function sendSigned<R extends UnboundRequest>(
  servers: readonly string[],
  identity: Identity,
  request: R,
  body?: Uint8Array,
  options: { connectTimeoutMs?: number; stallTimeoutMs?: number } = {},
): Promise<ReplyOf<R["op"]>> {
  if (servers.length === 0) throw new TypeError("No servers to send the request to");
  // A CA file that cannot be read is the news, not "no server answered".
  defaultTlsClientOptions();
  const tlsErrors: TlsError[] = [];
  const reasons: string[] = [];
  const lostReplies: LostReply[] = [];
  /** The first server that answered with an error frame, and what it said. */
  let answered: { address: string; message: string } | undefined;
  for (const address of servers) {
    let peer: Peer | undefined;
    let sent = false;
    try {
      peer = await Peer.connect(address, {
        connectTimeoutMs: options.connectTimeoutMs ?? MUTATION_CONNECT_TIMEOUT_MS,
        stallTimeoutMs: Math.min(
          options.stallTimeoutMs ?? MUTATION_REPLY_TIMEOUT_MS,
          MUTATION_HANDSHAKE_TIMEOUT_MS,
        ),
      });
      const signed = await signRequest(identity, await bindRequest(peer, request));
      // From here on a failure leaves the outcome unknown: the server may have the request.
      sent = true;
      peer.reader.timeoutMs = options.stallTimeoutMs ?? MUTATION_REPLY_TIMEOUT_MS;
      return await peer.requestSigned<R["op"]>(signed, body);
    } catch (error) {
      if (error instanceof ProtocolError && FINAL_CODES.has(error.code)) {
        throw lostReplies.length > 0 ? new AfterLostReplyError(error, lostReplies) : error;
      }
      if (error instanceof TlsError) tlsErrors.push(error);
      const reason = error instanceof Error ? error.message : String(error);
      reasons.push(`${address}: ${reason}`);
      if (error instanceof RemoteProtocolError) answered ??= { address, message: reason };
      // An error frame is an answer: that server did not make the change.
      if (sent && !(error instanceof RemoteProtocolError)) lostReplies.push({ address, reason });
    } finally {
      peer?.close();
    }
  }
  const unknown = lostReplies.length > 0
    ? `; the attempt on ${lostReplies[0]!.address} lost its reply, so it may have been applied`
    : "";
  const cause = new Error(reasons.slice(0, 5).join("; "));
  // A server that answered with an error is running: what it said is the news.
  if (answered) {
    throw new Error(
      `${request.op} failed on every server (tried ${servers.length})${unknown}; ` +
        `${answered.address} answered: ${answered.message}`,
      { cause },
    );
  }
  // Up, but speaking TLS differently (or with another CA): say that, not "is it running?".
  const tlsError = preferredTlsError(tlsErrors, servers.length);
  if (tlsError && lostReplies.length === 0) throw tlsError;
  throw new Error(
    `Cannot send ${request.op} to any server (tried ${servers.length})${unknown}; ` +
      `is the cluster running?`,
    { cause },
  );
}

/** Where a signing command sends its requests and as whom, as its flags said. */
export interface SigningOptions {
  /** The data directory (--data); absent means the default one. */
  dataDir: string | undefined;
  /** Servers to try (--server); none means every instance of the cluster in the data directory. */
  servers: readonly string[];
  /** An identity file (--identity); absent means the user's own. */
  identity: string | undefined;
  /** Sign as the cluster's operator (--operator). */
  operator: boolean;
  /** The CA that signed the instances' certificates (--tls-ca); absent: FTS_TLS_CA, or plain TCP. */
  tlsCa?: string | undefined;
  /** The cluster in etcd (--etcd): its live instances are the servers. */
  etcd?: EtcdTarget | undefined;
  /** Whether a missing identity file is made (upload); rm and mv need an existing key. */
  createIdentity?: boolean;
}

/** Servers (shuffled) and identity for a signing command; says when it made a new identity. */
export async function signingContext(
  options: SigningOptions,
): Promise<{ servers: string[]; identity: Identity }> {
  const dir = resolveDataDir(options.dataDir);
  // Through the environment, as every connection of the command (and FTS_TLS_CA) goes.
  await instanceTls(dir, options.servers, options.etcd, options.tlsCa);
  const servers = shuffled(
    await resolveServers(dir, [...options.servers], options.etcd, {
      forChange: true,
    }),
  );
  const identity = await identityFromFlags(
    { identity: options.identity, operator: options.operator },
    dir,
    // With etcd the data directory holds no config, only the operator's key.
    { needConfig: options.etcd === undefined, create: options.createIdentity ?? true },
  );
  if (identity.created) console.error(`created a new identity in ${identity.path}`);
  if (options.operator && options.etcd) await _requireOperatorKey(options.etcd, identity);
  return { servers, identity };
}

/**
 * In etcd mode each host's data directory holds a key of its own (it signs
 * that host's healing copies); only the first host's is the operator's.
 * Signing as another would make its owner that host, not the operator.
 */
async function _requireOperatorKey(etcd: EtcdTarget, identity: Identity): Promise<void> {
  const { EtcdCluster } = await import("../etcd/etcd_cluster.ts");
  const cluster = new EtcdCluster(etcd.endpoints, etcd.cluster);
  try {
    const { operatorKey } = await cluster.requireSettings();
    if (operatorKey === undefined || operatorKey === identity.owner) return;
    throw new UsageError(
      `${identity.path} is this host's own key, not the operator's of cluster ` +
        `${JSON.stringify(etcd.cluster)} (${operatorKey.slice(0, 24)}...): to act as the ` +
        `operator here, copy operator_identity.json from the data directory of the host whose ` +
        `fts cluster created the cluster (chmod 600)`,
    );
  } finally {
    cluster.close();
  }
}

/**
 * A small etcd v3 client over etcd's JSON gateway, with nothing but `fetch()`:
 * a gRPC client (the npm `etcd3` package) costs an instance ~35 MB more, and
 * instances must stay small. It speaks the few calls fts needs:
 *
 * 1. key-value reads (`range`, paged with `limit` and `more`, optionally at a
 *    past revision), `put`, `deleteRange` and `txn` (compare-and-swap on a
 *    key's mod or create revision);
 * 2. leases (`grant`, `keepAlive`, `revoke`) for keys that vanish with the
 *    process that wrote them;
 * 3. `watch`, a streamed response of newline-separated JSON messages.
 *
 * Keys and values are UTF-8 strings here (base64 on the wire); etcd's 64-bit
 * numbers arrive as strings and become numbers (revisions stay far below 2^53).
 * Each call tries the endpoints in turn, starting with the last that answered;
 * when none answers it throws EtcdUnavailableError naming every endpoint.
 */
import { EtcdUnavailableError } from "./etcd_errors.ts";
import { prefixEnd } from "./etcd_keys.ts";

/** How long one call waits for an endpoint before trying the next. */
export const ETCD_REQUEST_TIMEOUT_MS = 5_000;
/** How long a read waits for a quorum before falling back to the member's own copy. */
export const ETCD_QUORUM_READ_TIMEOUT_MS = 2_000;
/** After a quorum read timed out, reads skip the quorum this long before trying it again. */
export const QUORUM_RECHECK_MS = 5_000;

const _encoder = new TextEncoder();
/** ignoreBOM: a key or value that starts with U+FEFF keeps it (see manifest_layout.ts). */
const _decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** Base64 of a string's UTF-8 bytes. */
export function toBase64(text: string): string {
  return _encoder.encode(text).toBase64();
}

/** The string whose UTF-8 bytes `base64` encodes. */
export function fromBase64(base64: string): string {
  // Native: a loop over atob's characters was a fifth of `fts ls` at
  // 100,000 files in etcd (376 of 1,700 ms).
  return _decoder.decode(Uint8Array.fromBase64(base64));
}

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  lease: string;
}

export interface RangeOptions {
  /** Every key from `key` up to (not including) this one. */
  rangeEnd?: string;
  /** Every key that starts with `key`. */
  prefix?: boolean;
  limit?: number;
  /** Read as the store was at this revision (0 or absent: now). */
  revision?: number;
  keysOnly?: boolean;
  countOnly?: boolean;
  /** Read this member's copy without asking the quorum (may be stale). */
  serializable?: boolean;
  /** Only keys last written at this revision or later. */
  minModRevision?: number;
}

export interface RangeResult {
  kvs: KeyValue[];
  more: boolean;
  count: number;
  /** The store's revision when the read was served. */
  revision: number;
}

/** A condition of a transaction. */
export type Compare =
  | { key: string; target: "MOD"; result: "EQUAL" | "LESS" | "GREATER"; modRevision: number }
  | { key: string; target: "CREATE"; result: "EQUAL"; createRevision: number }
  | { key: string; target: "VALUE"; result: "EQUAL"; value: string };

/** One operation of a transaction. */
export type TxnOp =
  | { put: { key: string; value: string; lease?: string } }
  | { deleteRange: { key: string; prefix?: boolean } }
  | { range: { key: string } };

export interface TxnResult {
  succeeded: boolean;
  revision: number;
  /** What each range of the branch taken read, in order (empty for other ops). */
  ranges: KeyValue[][];
}

/** One message of a watch: the events of one or more revisions. */
export interface WatchBatch {
  revision: number;
  events: { type: "PUT" | "DELETE"; kv: KeyValue }[];
  /** Set when the start revision was compacted away: changes were lost. */
  compactRevision?: number;
}

type _Json = Record<string, unknown>;

function _number(value: unknown): number {
  return value === undefined ? 0 : Number(value);
}

function _kv(raw: _Json): KeyValue {
  return {
    key: fromBase64(String(raw.key ?? "")),
    value: raw.value === undefined ? "" : fromBase64(String(raw.value)),
    createRevision: _number(raw.create_revision),
    modRevision: _number(raw.mod_revision),
    lease: String(raw.lease ?? "0"),
  };
}

function _rangeBody(key: string, options: RangeOptions): _Json {
  const body: _Json = { key: toBase64(key) };
  const end = options.prefix ? prefixEnd(key) : options.rangeEnd;
  if (end !== undefined) body.range_end = _endBase64(end);
  if (options.limit) body.limit = String(options.limit);
  if (options.revision) body.revision = String(options.revision);
  if (options.keysOnly) body.keys_only = true;
  if (options.countOnly) body.count_only = true;
  if (options.serializable) body.serializable = true;
  if (options.minModRevision) body.min_mod_revision = String(options.minModRevision);
  return body;
}

/** prefixEnd() returns Latin-1 chars standing for bytes: encode those bytes as they are. */
function _endBase64(end: string): string {
  // Every char below 0x80 is one UTF-8 byte, so either encoding gives the same bytes.
  return [...end].every((c) => c.charCodeAt(0) < 0x80) ? toBase64(end) : btoa(end);
}

function _compare(compare: Compare): _Json {
  const base: _Json = {
    key: toBase64(compare.key),
    target: compare.target,
    result: compare.result,
  };
  if (compare.target === "MOD") base.mod_revision = String(compare.modRevision);
  else if (compare.target === "CREATE") base.create_revision = String(compare.createRevision);
  else base.value = toBase64(compare.value);
  return base;
}

function _op(op: TxnOp): _Json {
  if ("put" in op) {
    const put: _Json = { key: toBase64(op.put.key), value: toBase64(op.put.value) };
    if (op.put.lease) put.lease = op.put.lease;
    return { request_put: put };
  }
  if ("deleteRange" in op) {
    const del: _Json = { key: toBase64(op.deleteRange.key) };
    if (op.deleteRange.prefix) del.range_end = _endBase64(prefixEnd(op.deleteRange.key));
    return { request_delete_range: del };
  }
  return { request_range: { key: toBase64(op.range.key) } };
}

/** An etcd server answered with an error (not a transport failure). */
export class EtcdResponseError extends Error {
  readonly status: number;
  /** The gRPC status code the gateway's JSON answer carried, if any (14: unavailable). */
  readonly grpcCode: number | undefined;
  constructor(status: number, message: string, options?: ErrorOptions & { grpcCode?: number }) {
    super(message, options);
    this.name = "EtcdResponseError";
    this.status = status;
    this.grpcCode = options?.grpcCode;
  }
}

/** gRPC's UNAVAILABLE: the gateway could not reach its own member (stopping, restarting). */
const _GRPC_UNAVAILABLE = 14;

/**
 * An answer that means "this member cannot serve now": try another. So is
 * one that is not JSON: no etcd answered (a peer port, a proxy's error page).
 */
function _memberUnavailable(error: unknown): boolean {
  if (!(error instanceof EtcdResponseError) || error.cause instanceof SyntaxError) return true;
  if (error.grpcCode === _GRPC_UNAVAILABLE) return true;
  return error.status >= 500 &&
    /no leader|timed out|not capable|unhealthy|stopped|leader changed|too many requests|error while dialing|connection refused/i
      .test(error.message);
}

export interface EtcdClientOptions {
  /** TLS: the CA that signed the etcd servers' certificates (PEM text). */
  caCert?: string;
  requestTimeoutMs?: number;
}

export class EtcdClient {
  readonly endpoints: readonly string[];
  readonly #timeoutMs: number;
  readonly #httpClient: Deno.HttpClient | undefined;
  /** The endpoint that answered last: tried first next time. */
  #preferred = 0;
  /** Until then, reads go straight to a member's own copy: a quorum read just timed out. */
  #quorumLostUntil = 0;
  /** Why that quorum read failed, endpoint by endpoint. */
  #quorumFailures: readonly string[] = [];
  /** When a quorum read last answered. */
  #quorumSeenAt = -Infinity;

  constructor(endpoints: readonly string[], options: EtcdClientOptions = {}) {
    if (endpoints.length === 0) throw new TypeError("No etcd endpoint given");
    this.endpoints = endpoints.map((url) => url.replace(/\/+$/, ""));
    this.#timeoutMs = options.requestTimeoutMs ?? ETCD_REQUEST_TIMEOUT_MS;
    this.#httpClient = options.caCert === undefined
      ? undefined
      : Deno.createHttpClient({ caCerts: [options.caCert] });
  }

  /** The endpoints, for messages: "http://a:2379, http://b:2379". */
  describe(): string {
    return this.endpoints.join(", ");
  }

  close(): void {
    this.#httpClient?.close();
  }

  /** POSTs `body` to `path` on one endpoint after another until one answers. */
  async call(path: string, body: _Json, timeoutMs = this.#timeoutMs): Promise<_Json> {
    const failures: string[] = [];
    for (let i = 0; i < this.endpoints.length; i++) {
      const index = (this.#preferred + i) % this.endpoints.length;
      const endpoint = this.endpoints[index]!;
      try {
        const answer = await this.#post(endpoint, path, body, AbortSignal.timeout(timeoutMs));
        this.#preferred = index;
        return answer;
      } catch (error) {
        if (!_memberUnavailable(error)) throw error;
        failures.push(`${endpoint}: ${_reason(error)}`);
      }
    }
    throw new EtcdUnavailableError(this.describe(), failures);
  }

  async #post(endpoint: string, path: string, body: _Json, signal: AbortSignal): Promise<_Json> {
    const response = await fetch(`${endpoint}${path}`, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
      signal,
      ...(this.#httpClient ? { client: this.#httpClient } : {}),
    });
    const text = await response.text();
    let parsed: _Json;
    try {
      parsed = JSON.parse(text) as _Json;
    } catch (cause) {
      throw new EtcdResponseError(
        response.status,
        `${endpoint}${path} answered ${response.status} with something other than JSON: ${
          text.slice(0, 120)
        }`,
        { cause },
      );
    }
    if (!response.ok || parsed.error !== undefined) {
      const message = String(parsed.message ?? parsed.error ?? response.statusText);
      const code = typeof parsed.code === "number" ? parsed.code : undefined;
      throw new EtcdResponseError(response.ok ? 500 : response.status, message, {
        ...(code !== undefined ? { grpcCode: code } : {}),
      });
    }
    return parsed;
  }

  async range(key: string, options: RangeOptions = {}): Promise<RangeResult> {
    const body = _rangeBody(key, options);
    let answer: _Json;
    if (options.serializable || performance.now() < this.#quorumLostUntil) {
      answer = await this.call("/v3/kv/range", { ...body, serializable: true });
    } else {
      // A quorum read, unless the quorum is gone: then this member's copy,
      // so that reading known files keeps working while etcd is degraded.
      try {
        answer = await this.#quorumRead(body);
      } catch (error) {
        if (!(error instanceof EtcdUnavailableError)) throw error;
        answer = await this.call("/v3/kv/range", { ...body, serializable: true });
      }
    }
    return {
      kvs: ((answer.kvs ?? []) as _Json[]).map(_kv),
      more: answer.more === true,
      count: _number(answer.count),
      revision: _number((answer.header as _Json | undefined)?.revision),
    };
  }

  /** A linearizable read that gives up after ETCD_QUORUM_READ_TIMEOUT_MS, remembering the outcome. */
  async #quorumRead(body: _Json): Promise<_Json> {
    try {
      const answer = await this.call("/v3/kv/range", body, ETCD_QUORUM_READ_TIMEOUT_MS);
      this.#quorumSeenAt = performance.now();
      return answer;
    } catch (error) {
      if (error instanceof EtcdUnavailableError) {
        this.#quorumLostUntil = performance.now() + QUORUM_RECHECK_MS;
        this.#quorumFailures = error.failures;
      }
      throw error;
    }
  }

  /**
   * Throws EtcdUnavailableError unless etcd has a quorum, so that a change
   * fails within ETCD_QUORUM_READ_TIMEOUT_MS instead of waiting out the
   * request timeout at each of its steps. A quorum read answered within the
   * last second counts; one that timed out within QUORUM_RECHECK_MS too.
   */
  async requireQuorum(): Promise<void> {
    const now = performance.now();
    if (now < this.#quorumLostUntil) {
      throw new EtcdUnavailableError(this.describe(), this.#quorumFailures);
    }
    if (now - this.#quorumSeenAt < 1_000) return;
    await this.#quorumRead({ key: toBase64("\0"), count_only: true });
  }

  /** The value of one key, or undefined. */
  async get(key: string, options: RangeOptions = {}): Promise<KeyValue | undefined> {
    return (await this.range(key, options)).kvs[0];
  }

  async put(key: string, value: string, lease?: string): Promise<number> {
    const body: _Json = { key: toBase64(key), value: toBase64(value) };
    if (lease) body.lease = lease;
    const answer = await this.call("/v3/kv/put", body);
    return _number((answer.header as _Json | undefined)?.revision);
  }

  async deleteRange(key: string, options: { prefix?: boolean } = {}): Promise<number> {
    const body: _Json = { key: toBase64(key) };
    if (options.prefix) body.range_end = _endBase64(prefixEnd(key));
    const answer = await this.call("/v3/kv/deleterange", body);
    return _number(answer.deleted);
  }

  async txn(compare: Compare[], success: TxnOp[], failure: TxnOp[] = []): Promise<TxnResult> {
    const answer = await this.call("/v3/kv/txn", {
      compare: compare.map(_compare),
      success: success.map(_op),
      failure: failure.map(_op),
    });
    const responses = (answer.responses ?? []) as _Json[];
    return {
      succeeded: answer.succeeded === true,
      revision: _number((answer.header as _Json | undefined)?.revision),
      ranges: responses
        .map((r) => r.response_range as _Json | undefined)
        .filter((r): r is _Json => r !== undefined)
        .map((r) => ((r.kvs ?? []) as _Json[]).map(_kv)),
    };
  }

  /** A lease of `ttlSeconds`; returns its id (a decimal string). */
  async grantLease(ttlSeconds: number): Promise<string> {
    const answer = await this.call("/v3/lease/grant", { TTL: String(ttlSeconds) });
    return String(answer.ID);
  }

  /** Renews a lease; false when it has expired (its keys are gone). */
  async keepAlive(lease: string): Promise<boolean> {
    const answer = await this.call("/v3/lease/keepalive", { ID: lease });
    const result = answer.result as _Json | undefined;
    return _number(result?.TTL) > 0;
  }

  async revokeLease(lease: string): Promise<void> {
    try {
      await this.call("/v3/lease/revoke", { ID: lease });
    } catch (error) {
      // Already expired: the same outcome.
      if (!(error instanceof EtcdResponseError && /not found/i.test(error.message))) throw error;
    }
  }

  /**
   * The changes to keys starting with `prefix` from `startRevision` on, batch
   * by batch, until `signal` aborts or the stream ends (the caller resumes
   * from the last revision it saw).
   */
  async *watch(
    prefix: string,
    startRevision: number,
    signal?: AbortSignal,
    /** The end of the keys watched, when not the end of `prefix`'s. */
    rangeEnd = prefixEnd(prefix),
  ): AsyncGenerator<WatchBatch> {
    const body = {
      create_request: {
        key: toBase64(prefix),
        range_end: _endBase64(rangeEnd),
        start_revision: String(startRevision),
      },
    };
    const endpoint = this.endpoints[this.#preferred]!;
    const response = await fetch(`${endpoint}/v3/watch`, {
      method: "POST",
      body: JSON.stringify(body),
      ...(signal ? { signal } : {}),
      ...(this.#httpClient ? { client: this.#httpClient } : {}),
    });
    if (!response.ok || !response.body) {
      throw new EtcdResponseError(response.status, `${endpoint}/v3/watch: ${response.statusText}`);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) return;
        buffered += value;
        let newline: number;
        while ((newline = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line === "") continue;
          const result = (JSON.parse(line) as _Json).result as _Json | undefined;
          if (!result) continue;
          const header = result.header as _Json | undefined;
          const events = ((result.events ?? []) as _Json[]).map((e) => ({
            type: e.type === "DELETE" ? "DELETE" as const : "PUT" as const,
            kv: _kv(e.kv as _Json),
          }));
          const compacted = _number(result.compact_revision);
          yield {
            revision: _number(header?.revision),
            events,
            ...(compacted > 0 ? { compactRevision: compacted } : {}),
          };
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }
}

function _reason(error: unknown): string {
  if (error instanceof DOMException && error.name === "TimeoutError") return "no answer in time";
  if (!(error instanceof Error)) return String(error);
  // fetch() says only "fetch failed"; its cause says why (refused, a TLS error...).
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return `${error.message}${cause}`;
}

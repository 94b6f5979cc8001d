/**
 * The writers policy: which keys may store parts on a cluster, and how many
 * bytes each may hold. The operator sets it (`fts writers`); instances
 * enforce it at part.put and at file.publish. A cluster starts open (any
 * key may store, as before there was a policy), so that a new cluster works
 * with no setup; `fts writers closed` leaves only the listed keys and the
 * operator's. A quota (a key's own, else the default) caps the bytes of the
 * files a key has published and, per instance, the bytes of parts it stored
 * that no file uses yet. The operator's key is always allowed and has no
 * quota: repair, heal and preload store copies with it. So are the keys of
 * the hosts of a cluster in etcd (each `fts cluster --etcd` records its
 * data directory's operator key), since each host heals with its own.
 *
 * This file holds the policy itself (parse, encode, the checks and the
 * edits); writers_file.ts keeps it in a data directory and
 * lib/etcd/etcd_writers.ts in etcd.
 */
import { ProtocolError } from "../wire/errors.ts";
import { formatBytes } from "../base/units.ts";
import { publicKeyOf } from "./identity.ts";

export const WRITERS_FORMAT = "fts-writers";
export const WRITERS_VERSION = 1;
/**
 * How long an instance trusts the policy it read: a change the operator makes
 * reaches every instance within this, with no restart.
 */
export const WRITERS_CACHE_MS = 1_000;
/** Listed keys, at most: the policy is read whole, once a second, by every instance. */
export const MAX_WRITERS = 10_000;

export interface WritersPolicy {
  /** Any key may store parts (listed keys still get their own quotas). */
  open: boolean;
  /** The listed keys (owner strings, `ed25519:...`), each with its quota in bytes if it has one. */
  keys: Record<string, { quotaBytes?: number }>;
  /** The quota of every key that has none of its own, in bytes; none when absent. */
  defaultQuotaBytes?: number;
  /** Keys of the cluster's hosts (etcd): allowed like the operator's, with no quota. */
  hostKeys?: string[];
}

/** The policy of a cluster whose operator never set one: open, no quotas. */
export function openPolicy(): WritersPolicy {
  return { open: true, keys: {} };
}

/** What `fts writers` may change. */
export type WritersChange =
  | { type: "add"; key: string; quotaBytes?: number | undefined }
  | { type: "remove"; key: string }
  | { type: "open" }
  | { type: "closed" }
  /** A host of the cluster joined with this key (fts cluster --etcd). */
  | { type: "host"; key: string }
  /** `key` undefined sets the default quota; `quotaBytes` undefined removes the quota. */
  | { type: "quota"; key: string | undefined; quotaBytes: number | undefined };

/** A key spelled as `fts whoami` prints it, or a TypeError saying what is wrong. */
export function checkWriterKey(key: string): string {
  try {
    publicKeyOf(key);
  } catch (cause) {
    throw new TypeError(
      `${JSON.stringify(key.slice(0, 80))} is not a key as \`fts whoami\` prints it ` +
        `(ed25519:...): ${(cause as Error).message}`,
      { cause },
    );
  }
  return key;
}

/** The policy after `change`; throws RangeError or TypeError for a change that cannot apply. */
export function changePolicy(policy: WritersPolicy, change: WritersChange): WritersPolicy {
  const keys = { ...policy.keys };
  switch (change.type) {
    case "open":
      return { ...policy, keys, open: true };
    case "closed":
      return { ...policy, keys, open: false };
    case "host": {
      const hosts = new Set(policy.hostKeys ?? []);
      hosts.add(checkWriterKey(change.key));
      return { ...policy, keys, hostKeys: [...hosts].sort() };
    }
    case "add": {
      const key = checkWriterKey(change.key);
      if (!Object.hasOwn(keys, key) && Object.keys(keys).length >= MAX_WRITERS) {
        throw new RangeError(`The writers list is full (${MAX_WRITERS} keys)`);
      }
      const quota = change.quotaBytes ?? keys[key]?.quotaBytes;
      keys[key] = quota === undefined ? {} : { quotaBytes: quota };
      return { ...policy, keys };
    }
    case "remove": {
      // A host's key too: else a host taken out of service (or whose key leaked)
      // stayed allowed, with no quota, for good. A host that starts again adds it again.
      const hosts = (policy.hostKeys ?? []).filter((key) => key !== change.key);
      if (!Object.hasOwn(keys, change.key) && hosts.length === (policy.hostKeys ?? []).length) {
        // Not a usage error: the list's state, not the command, is what is off.
        throw new Error(`${_short(change.key)} is not on the writers list`);
      }
      delete keys[change.key];
      const { hostKeys: _, ...rest } = policy;
      return { ...rest, keys, ...(policy.hostKeys ? { hostKeys: hosts } : {}) };
    }
    case "quota": {
      if (change.key === undefined) {
        const { defaultQuotaBytes: _, ...rest } = policy;
        return change.quotaBytes === undefined
          ? { ...rest, keys }
          : { ...rest, keys, defaultQuotaBytes: change.quotaBytes };
      }
      const key = checkWriterKey(change.key);
      if (!Object.hasOwn(keys, key) && !policy.open) {
        throw new RangeError(
          `${_short(key)} is not on the writers list of this closed cluster: ` +
            `\`fts writers add ${key}\` first`,
        );
      }
      keys[key] = change.quotaBytes === undefined ? {} : { quotaBytes: change.quotaBytes };
      return { ...policy, keys };
    }
  }
}

/**
 * Throws NOT_ALLOWED when `key` may not store parts under `policy`
 * (`operatorKey` always may).
 */
export function assertMayStore(
  policy: WritersPolicy,
  key: string,
  operatorKey: string | undefined,
): void {
  if (policy.open || _isHost(policy, key, operatorKey) || Object.hasOwn(policy.keys, key)) return;
  throw new ProtocolError(
    "NOT_ALLOWED",
    `key ${key} is not allowed to store parts on this cluster; ` +
      `ask the operator to run \`fts writers add ${key}\``,
  );
}

/** The quota of `key` in bytes, or undefined when it has none (the operator never has one). */
export function quotaOf(
  policy: WritersPolicy,
  key: string,
  operatorKey: string | undefined,
): number | undefined {
  if (_isHost(policy, key, operatorKey)) return undefined;
  const own = Object.hasOwn(policy.keys, key) ? policy.keys[key]!.quotaBytes : undefined;
  return own ?? policy.defaultQuotaBytes;
}

/** Throws NOT_ALLOWED saying what the quota is and how far `wanted` would go past it. */
export function assertWithinQuota(
  what: string,
  key: string,
  quotaBytes: number | undefined,
  heldBytes: number,
  addedBytes: number,
  /** What frees room: by default removing published files. */
  remedy = "remove files (fts rm) or ask the operator to raise it (fts writers quota KEY SIZE)",
): void {
  if (quotaBytes === undefined || heldBytes + addedBytes <= quotaBytes) return;
  throw new ProtocolError(
    "NOT_ALLOWED",
    `key ${_short(key)} is over its quota of ${formatBytes(quotaBytes)}: ${what} ` +
      `${formatBytes(heldBytes)}, and this needs ${formatBytes(addedBytes)} more; ${remedy}`,
  );
}

/**
 * What frees room taken by parts no file uses yet (left by uploads that did
 * not finish): removing published files does not.
 */
export const UNPUBLISHED_QUOTA_REMEDY =
  "those are parts of uploads that did not finish; ask the operator to delete them " +
  "(fts repair --unused-after 1h, for those stored an hour ago or more) or to raise the quota " +
  "(fts writers quota KEY SIZE)";

/** The JSON text of a policy, as kept on disk and in etcd. */
export function encodePolicy(policy: WritersPolicy): string {
  return `${JSON.stringify({ format: WRITERS_FORMAT, version: WRITERS_VERSION, ...policy })}\n`;
}

/** Parses a kept policy; `where` names its file or etcd key in the error. */
export function parsePolicy(text: string, where: string): WritersPolicy {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new SyntaxError(`${where} is not valid JSON`, { cause });
  }
  if (value?.format !== WRITERS_FORMAT || value.version !== WRITERS_VERSION) {
    throw new SyntaxError(
      `${where} is not an fts writers policy (format ${String(value?.format)}, ` +
        `version ${String(value?.version)})`,
    );
  }
  const { open, keys, defaultQuotaBytes, hostKeys } = value;
  if (typeof open !== "boolean" || typeof keys !== "object" || keys === null) {
    throw new SyntaxError(`${where} holds a malformed writers policy`);
  }
  const parsed: WritersPolicy["keys"] = {};
  for (const [key, entry] of Object.entries(keys as Record<string, unknown>)) {
    const quota = (entry as { quotaBytes?: unknown } | null)?.quotaBytes;
    parsed[key] = _isBytes(quota) ? { quotaBytes: quota } : {};
  }
  return {
    open,
    keys: parsed,
    ...(_isBytes(defaultQuotaBytes) ? { defaultQuotaBytes } : {}),
    ...(Array.isArray(hostKeys)
      ? { hostKeys: hostKeys.filter((key): key is string => typeof key === "string") }
      : {}),
  };
}

/** The operator's key, or one of a host of the cluster. */
function _isHost(policy: WritersPolicy, key: string, operatorKey: string | undefined): boolean {
  return key === operatorKey || (policy.hostKeys?.includes(key) ?? false);
}

function _isBytes(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function _short(key: string): string {
  return key.length > 24 ? `${key.slice(0, 20)}...` : key;
}

/**
 * A user's identity: an Ed25519 key pair (WebCrypto) kept in a file that only
 * its owner may read. The public key, written `ed25519:<base64url>`, is the
 * owner string the manifest records; signed requests prove the caller holds
 * the matching private key.
 *
 * The operator (who owns files placed by `fts preload`) is whoever can read the
 * operator identity in the data directory: preload needs that directory anyway.
 */
import { dataPaths } from "../state/config.ts";
import { UsageError } from "../wire/errors.ts";
import { readJsonFile, tempPathBeside } from "../base/fs_util.ts";
import { dirname, join } from "../base/paths.ts";

export const IDENTITY_FORMAT = "fts-identity";
export const IDENTITY_VERSION = 1;
/** Owner strings of key holders start with this; the rest is the raw public key. */
export const OWNER_PREFIX = "ed25519:";
/** Bytes of an Ed25519 public key and of a signature. */
export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
/** Permission bits an identity file may have: read and write for its owner only. */
export const IDENTITY_FILE_MODE = 0o600;

const ALGORITHM = { name: "Ed25519" } as const;
const BASE64URL = { alphabet: "base64url", omitPadding: true } as const;

export interface Identity {
  /** Where the key pair lives. */
  path: string;
  /** `ed25519:<base64url public key>`: what the manifest records as owner. */
  owner: string;
  privateKey: CryptoKey;
  /** True when this call created the file. */
  created: boolean;
}

/** Base64url without padding, as used for keys, signatures and nonces. */
export function toBase64Url(bytes: Uint8Array): string {
  return bytes.toBase64(BASE64URL);
}

/** Decodes unpadded base64url in its one canonical spelling; throws TypeError on anything else. */
export function fromBase64Url(text: string): Uint8Array<ArrayBuffer> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = Uint8Array.fromBase64(text, { alphabet: "base64url" });
  } catch (cause) {
    throw new TypeError(`Not base64url: "${text.slice(0, 20)}"`, { cause });
  }
  if (toBase64Url(bytes) !== text) {
    throw new TypeError(`Not canonical base64url: "${text.slice(0, 20)}"`);
  }
  return bytes;
}

/**
 * The raw public key inside an owner string. Only the canonical spelling is
 * accepted, so that one key has exactly one owner string.
 */
export function publicKeyOf(owner: string): Uint8Array<ArrayBuffer> {
  if (!owner.startsWith(OWNER_PREFIX)) {
    throw new TypeError(`Owner key must start with "${OWNER_PREFIX}"`);
  }
  const key = fromBase64Url(owner.slice(OWNER_PREFIX.length));
  if (key.length !== PUBLIC_KEY_BYTES) {
    throw new TypeError(`Owner key is not a ${PUBLIC_KEY_BYTES}-byte Ed25519 public key`);
  }
  return key;
}

/**
 * Where the identity lives: `--identity`, then FTS_IDENTITY, then
 * `$XDG_CONFIG_HOME/fts/identity.json`, then `~/.config/fts/identity.json`.
 */
export function resolveIdentityPath(flag: string | undefined): string {
  // An empty --identity (an unset shell variable) is a mistake, not "the default".
  if (flag !== undefined && flag.trim() === "") throw new UsageError("--identity needs a FILE");
  const chosen = flag ?? Deno.env.get("FTS_IDENTITY");
  if (chosen !== undefined && chosen.length > 0) return chosen;
  const xdg = Deno.env.get("XDG_CONFIG_HOME");
  if (xdg) return join(xdg, "fts", "identity.json");
  const home = Deno.env.get("HOME");
  if (!home) {
    throw new UsageError("Cannot find a config directory: set HOME, or pass --identity FILE");
  }
  return join(home, ".config", "fts", "identity.json");
}

/** The operator's identity file in a data directory. */
export function operatorIdentityPath(dir: string): string {
  return dataPaths(dir).operatorIdentity;
}

/**
 * The identity a command acts as: the operator's (`--operator`, which needs
 * the data directory), else the user's. Created on first use.
 */
export async function identityFromFlags(
  flags: { identity: string | undefined; operator: boolean },
  dir: string,
  options: {
    needConfig?: boolean;
    /** Whether the user's identity is made when missing (not for rm, mv: a new key owns nothing). */
    create?: boolean;
  } = {},
): Promise<Identity> {
  if (flags.operator && flags.identity !== undefined) {
    throw new UsageError("Pass --identity FILE or --operator, not both");
  }
  if (flags.operator && options.needConfig === false) {
    // A host of a cluster in etcd: the key `fts cluster` made, or one copied here.
    const path = operatorIdentityPath(dir);
    const identity = await loadIdentity(path);
    if (!identity) {
      throw new UsageError(
        `--operator needs the operator's key in ${path}: copy operator_identity.json there ` +
          `from the data directory of the host whose fts cluster created the cluster`,
      );
    }
    return identity;
  }
  if (flags.operator) {
    try {
      if (!(await Deno.stat(dataPaths(dir).config)).isFile) throw new Error("not a file");
    } catch (cause) {
      throw new UsageError(
        `--operator needs the cluster's data directory, and ${dir} holds none: pass --data DIR`,
        { cause },
      );
    }
    return await loadOrCreateIdentity(operatorIdentityPath(dir));
  }
  const path = resolveIdentityPath(flags.identity);
  if (options.create === false) {
    const identity = await loadIdentity(path);
    if (identity) return identity;
    throw new UsageError(
      `No identity file ${path}: only the key that uploaded a file may change it, and a new ` +
        `key owns nothing (check --identity or FTS_IDENTITY; fts whoami makes one)`,
    );
  }
  return await loadOrCreateIdentity(path);
}

function _malformed(path: string, what: string, cause?: unknown): never {
  throw new SyntaxError(`Identity file ${path} is not usable: ${what}`, { cause });
}

/** Reads only the owner string of an identity file; undefined when it does not exist. */
export async function readIdentityOwner(path: string): Promise<string | undefined> {
  const value = await readJsonFile(path) as Record<string, unknown> | undefined;
  if (value === undefined) return undefined;
  if (value?.format !== IDENTITY_FORMAT || typeof value.owner !== "string") {
    _malformed(path, `not an ${IDENTITY_FORMAT} file`);
  }
  try {
    publicKeyOf(value.owner);
  } catch (cause) {
    _malformed(path, "bad owner key", cause);
  }
  return value.owner;
}

/** Loads an identity file, checking its permissions and that its two halves match. */
export async function loadIdentity(path: string): Promise<Identity | undefined> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  if (!info.isFile) throw new Error(`Identity file ${path} is not a file (a directory?)`);
  // Like ssh: a private key others can read is no proof of anything.
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    throw new Error(
      `Identity file ${path} is accessible by others (mode ${
        (info.mode & 0o777).toString(8)
      }); run "chmod 600 ${path}"`,
    );
  }
  const owner = await readIdentityOwner(path);
  if (owner === undefined) return undefined;
  const value = await readJsonFile(path) as { privateKey?: JsonWebKey };
  let privateKey: CryptoKey;
  try {
    privateKey = await crypto.subtle.importKey("jwk", value.privateKey ?? {}, ALGORITHM, false, [
      "sign",
    ]);
  } catch (cause) {
    _malformed(path, "bad private key", cause);
  }
  if (value.privateKey?.x === undefined || `${OWNER_PREFIX}${value.privateKey.x}` !== owner) {
    _malformed(path, "private and public key differ");
  }
  // One signature proves the private key belongs to the public one.
  const probe = new TextEncoder().encode("fts-identity-check");
  const signature = new Uint8Array(await crypto.subtle.sign(ALGORITHM, privateKey, probe));
  if (!(await verifySignature(owner, probe, signature))) {
    _malformed(path, "private and public key differ");
  }
  return { path, owner, privateKey, created: false };
}

/**
 * Loads the identity, creating a new key pair when the file does not exist.
 * Two processes creating it at once end up with the same one: the file appears
 * whole (hard link of a finished temp file) or not at all.
 */
export async function loadOrCreateIdentity(path: string): Promise<Identity> {
  const existing = await loadIdentity(path);
  if (existing) return existing;
  await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const pair = await crypto.subtle.generateKey(ALGORITHM, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const owner = `${OWNER_PREFIX}${jwk.x}`;
  const text = JSON.stringify(
    {
      format: IDENTITY_FORMAT,
      version: IDENTITY_VERSION,
      owner,
      created: new Date().toISOString(),
      privateKey: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, d: jwk.d },
    },
    null,
    2,
  ) + "\n";
  const temp = tempPathBeside(path);
  const file = await Deno.open(temp, { write: true, createNew: true, mode: IDENTITY_FILE_MODE });
  try {
    const bytes = new TextEncoder().encode(text);
    let done = 0;
    while (done < bytes.length) done += await file.write(bytes.subarray(done));
    await file.sync();
  } finally {
    file.close();
  }
  try {
    await Deno.chmod(temp, IDENTITY_FILE_MODE); // the umask may have taken bits away, never added
    await Deno.link(temp, path);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    // Another process won the race: use its identity.
    const theirs = await loadIdentity(path);
    if (!theirs) throw error;
    return theirs;
  } finally {
    await Deno.remove(temp).catch(() => {});
  }
  const created = await loadIdentity(path);
  if (!created) throw new Error(`Identity file ${path} vanished right after it was created`);
  return { ...created, created: true };
}

/**
 * A key pair that lives only in this process (its path is empty): for a
 * process that must sign part.put but owns nothing, such as a repair copying
 * parts between instances.
 */
export async function ephemeralIdentity(): Promise<Identity> {
  const pair = await crypto.subtle.generateKey(ALGORITHM, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  return { path: "", owner: `${OWNER_PREFIX}${jwk.x}`, privateKey: pair.privateKey, created: true };
}

/** Signs a message with the identity's private key. */
export async function signWith(
  identity: Identity,
  message: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.sign(ALGORITHM, identity.privateKey, message));
}

const _verifyKeys = new Map<string, Promise<CryptoKey>>();
/** Imported public keys kept for reuse; a server sees few distinct owners. */
const MAX_CACHED_KEYS = 1024;

/** True when `signature` is the owner's signature of `message`; false on any bad input. */
export async function verifySignature(
  owner: string,
  message: Uint8Array<ArrayBuffer>,
  signature: Uint8Array<ArrayBuffer>,
): Promise<boolean> {
  if (signature.length !== SIGNATURE_BYTES) return false;
  let key = _verifyKeys.get(owner);
  if (!key) {
    let raw: Uint8Array<ArrayBuffer>;
    try {
      raw = publicKeyOf(owner);
    } catch {
      return false;
    }
    if (_verifyKeys.size >= MAX_CACHED_KEYS) _verifyKeys.clear();
    key = crypto.subtle.importKey("raw", raw, ALGORITHM, false, ["verify"]);
    _verifyKeys.set(owner, key);
  }
  try {
    return await crypto.subtle.verify(ALGORITHM, await key, signature, message);
  } catch {
    _verifyKeys.delete(owner);
    return false;
  }
}

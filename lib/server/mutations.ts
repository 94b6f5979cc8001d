/**
 * The server side of upload, delete and rename. Each signed request
 * is checked in this order: freshness and signature (signed_request.ts), whether
 * the key may ask it at all (a writer; the file's owner), nonce not used
 * before (replay_guard.ts), the body's digest (publish), then names,
 * ownership and the change itself, as one manifest change. A refused request
 * changes nothing.
 *
 * Ownership: a file belongs to the key that published it (`ed25519:...`);
 * files placed by `fts preload` belong to OPERATOR_OWNER, which stands for the
 * key in the data directory's operator identity file.
 */
import { dataPaths, loadConfig } from "../state/config.ts";
import { type ClusterView, configView } from "../state/cluster_view.ts";
import { ProtocolError } from "../wire/errors.ts";
import { readIdentityOwner } from "../auth/identity.ts";
import {
  contentIdOf,
  type FileEntry,
  OPERATOR_OWNER,
  parseFileEntry,
  validateFileName,
  validateNewFileName,
} from "../state/manifest.ts";
import { type Locker, type ManifestStore, PARTS_LOCK } from "../state/manifest_store.ts";
import { openLocker, openManifestStore } from "../state/open_manifest_store.ts";
import { freeUnreferenced, referencedDigests, storesOnHost } from "../state/part_gc.ts";
import { requireManifestIfParts } from "../state/manifest_guard.ts";
import { loadOrCreateClusterId } from "../state/cluster_id.ts";
import { type ReplyOf, type RequestOf } from "../wire/ops.ts";
import { type ClusterReply, type ClusterReplyBody } from "../wire/ops_control.ts";
import { type NonceStore } from "../auth/nonce_store.ts";
import { FileNonceStore } from "../auth/file_nonce_store.ts";
import { ReplayGuard } from "../auth/replay_guard.ts";
import { checkSignedRequest, type SignedRequest } from "../auth/signed_request.ts";
import { sha256Hex } from "../hash/sha256.ts";
import { PartStore } from "../state/store.ts";
import {
  assertMayStore,
  assertWithinQuota,
  quotaOf,
  UNPUBLISHED_QUOTA_REMEDY,
  WRITERS_CACHE_MS,
  type WritersPolicy,
} from "../auth/writers_policy.ts";
import { readWritersFile, writersPath } from "../auth/writers_file.ts";
import { cachedRead } from "../base/cached_read.ts";
import { PendingParts } from "../state/pending_parts.ts";

/** Missing copies named in a MISSING_PARTS message, at most. */
const MAX_LISTED_MISSING = 10;

/** Checks a name; a name a file is about to get (`isNew`) also by validateNewFileName. */
function _checkName(name: string, what = "File name", isNew = false): string {
  try {
    return isNew ? validateNewFileName(name) : validateFileName(name);
  } catch (cause) {
    throw new ProtocolError("BAD_NAME", `${what}: ${(cause as Error).message}`, { cause });
  }
}

function _short(owner: string): string {
  return owner.length > 24 ? `${owner.slice(0, 20)}...` : owner;
}

/**
 * What the mutations need of the cluster, whichever store backs it: a
 * single-host cluster reads its data directory (fileMutationsContext()); one
 * in etcd asks etcd and the other instances (ops/etcd_instance.ts).
 */
export interface MutationsContext {
  readonly nonces: NonceStore;
  readonly store: ManifestStore;
  readonly locker: Locker;
  /** Replicas, part size, every instance and its failure domain. */
  view(): Promise<ClusterView>;
  /** The key that OPERATOR_OWNER stands for, if the cluster has an operator. */
  operatorKey(): Promise<string | undefined>;
  /** The cluster's id, which every signed request must name (state/cluster_id.ts). */
  clusterId(): Promise<string>;
  /** The size of each named copy, or undefined where its instance holds none (or is down). */
  storedSizes(copies: readonly { id: string; digest: string }[]): Promise<(number | undefined)[]>;
  /** Frees the parts no entry references any more (part_gc.ts). */
  freeParts(digests: string[]): Promise<{ digests: number; copies: number }>;
  /** The writers policy now (read at most once per WRITERS_CACHE_MS). */
  writers(): Promise<WritersPolicy>;
}

/** The context of the single-host cluster in `dir`: config, stores and keys all in it. */
export function fileMutationsContext(
  dir: string,
  store: ManifestStore = openManifestStore(dir),
): MutationsContext {
  let view: Promise<ClusterView> | undefined;
  let clusterId: Promise<string> | undefined;
  const stores = new Map<string, PartStore>();
  const locker = openLocker(dir);
  return {
    nonces: new FileNonceStore(dir),
    store,
    locker,
    view: async () => {
      // A publish would start a new manifest beside the lost one's parts.
      await requireManifestIfParts(dir, () => storesOnHost(dir)).catch((cause) => {
        throw new ProtocolError("UNAVAILABLE", cause.message, { cause });
      });
      return await (view ??= loadConfig(dir).then((config) => {
        if (!config) throw new Error(`No cluster config in ${dir}`);
        return configView(config);
      }));
    },
    operatorKey: cachedRead(
      () =>
        _damagedSaid(
          () => readIdentityOwner(dataPaths(dir).operatorIdentity),
          dataPaths(dir).operatorIdentity,
          "restore the operator's key from a backup",
        ),
      WRITERS_CACHE_MS,
    ),
    clusterId: () => clusterId ??= loadOrCreateClusterId(dir),
    storedSizes: async (copies) => {
      const sizes: (number | undefined)[] = [];
      for (const { id, digest } of copies) {
        let store = stores.get(id);
        if (!store) stores.set(id, store = new PartStore(dataPaths(dir).instanceDir(id)));
        sizes.push(await store.sizeOf(digest));
      }
      return sizes;
    },
    // The instance's own store, whose index is built: a store opened per
    // call indexed the whole manifest again for every rm (12 MB of heap and
    // about 0.3 s at 100,000 files).
    freeParts: (digests) =>
      freeUnreferenced(
        { store, locker, stores: () => storesOnHost(dir) },
        digests,
      ),
    writers: cachedRead(
      () =>
        _damagedSaid(
          () => readWritersFile(dir),
          writersPath(dir),
          "restore it from a backup, or delete it and set the policy again with fts writers",
        ),
      WRITERS_CACHE_MS,
    ),
  };
}

/**
 * What `read` gives; a file it cannot read becomes an answer naming the file
 * and what the operator should do. As "Internal server error" each client
 * tried every instance and learned nothing; every instance would say the
 * same, so UNAVAILABLE, which clients do not try elsewhere.
 */
async function _damagedSaid<T>(read: () => Promise<T>, path: string, fix: string): Promise<T> {
  try {
    return await read();
  } catch (cause) {
    throw new ProtocolError(
      "UNAVAILABLE",
      `The cluster cannot read ${path} (${(cause as Error).message}): ${fix} (the operator must)`,
      { cause },
    );
  }
}

/**
 * The content id of an entry read from the store, computed from its parts: a
 * serving instance's store passes stored ids on unchecked (ParseOptions
 * storedContentId), and a change must not rest on one.
 */
function _computedContentId(entry: FileEntry): string {
  return contentIdOf(entry.size, entry.parts);
}

export class Mutations {
  readonly #context: MutationsContext;
  readonly #store: ManifestStore;
  readonly #locker: Locker;
  readonly #replayGuard: ReplayGuard;
  /** The ledger of each part store this instance took parts into (one, in practice). */
  readonly #pending = new Map<string, PendingParts>();

  constructor(context: MutationsContext) {
    this.#context = context;
    this.#replayGuard = new ReplayGuard(context.nonces);
    this.#store = context.store;
    this.#locker = context.locker;
  }

  /** The cluster's id, which signed requests and part.put name. */
  clusterId(): Promise<string> {
    return this.#context.clusterId();
  }

  /**
   * What an uploading client needs: R, the part size, every instance's
   * address and domain, and with `uploader`, that key's quota and its
   * published bytes (but the file `name`, which a replace takes the place of),
   * so that an upload over quota stops before it sends a byte.
   */
  async clusterInfo(
    addressOf?: (id: string) => string,
    uploader?: { key: string; name: string | undefined },
  ): Promise<{ header: ClusterReply; body: ClusterReplyBody }> {
    const view = await this.#context.view();
    const address = addressOf ?? ((id: string) => view.address(id));
    const instances = Object.fromEntries(view.ids.map((id) => [id, address(id)]));
    const domains = Object.fromEntries(view.ids.map((id) => [id, view.domain(id)]));
    const spread = new Set(Object.values(domains)).size > 1;
    return {
      header: {
        op: "cluster",
        replicas: view.replicas,
        partSize: view.partSize,
        clusterId: await this.#context.clusterId(),
        ...(uploader ? await this.#quotaOf(uploader.key, uploader.name) : {}),
        // So that an upload replacing a preloaded file is refused before it sends a part.
        ...(uploader ? { operator: uploader.key === await this.#context.operatorKey() } : {}),
      },
      body: spread ? { instances, domains } : { instances },
    };
  }

  /** `key`'s quota and the bytes its published files but `except` hold; {} without a quota. */
  async #quotaOf(
    key: string,
    except: string | undefined,
  ): Promise<{ quotaBytes?: number; publishedBytes?: number }> {
    const quota = quotaOf(await this.#context.writers(), key, await this.#context.operatorKey());
    if (quota === undefined) return {};
    const published = await this.#store.publishedBytes(key, except);
    return { quotaBytes: quota, publishedBytes: published };
  }

  /** Throws NOT_ALLOWED unless the writers policy lets `key` store parts. */
  async assertMayStore(key: string): Promise<void> {
    assertMayStore(await this.#context.writers(), key, await this.#context.operatorKey());
  }

  /**
   * Admits a part `key` (whose signature checked out) is about to store in
   * `store`: the key must be a writer, and its parts here that no file uses
   * yet must fit its quota with this one. Call stored() once the part is
   * committed, released() if it was not.
   */
  async admitPart(
    key: string,
    digest: string,
    size: number,
    store: PartStore,
    /** The instance of `store`, as the refusal names it. */
    instanceId: string,
  ): Promise<{ stored: () => Promise<void>; released: () => void }> {
    const policy = await this.#context.writers();
    const operator = await this.#context.operatorKey();
    assertMayStore(policy, key, operator);
    let pending = this.#pending.get(store.root);
    if (!pending) {
      pending = new PendingParts(store, () => referencedDigests(this.#store));
      this.#pending.set(store.root, pending);
    }
    const quota = quotaOf(policy, key, operator);
    const reserved = await pending.reserve(key, digest, size, quota);
    if (typeof reserved !== "number") return reserved;
    // Refused: the bytes the key holds do not leave room, which this says and throws.
    assertWithinQuota(
      `its parts no file uses yet on instance ${instanceId} hold`,
      key,
      quota,
      reserved,
      size,
      UNPUBLISHED_QUOTA_REMEDY,
    );
    throw new RangeError(`reserve() refused ${size} bytes that fit the quota`);
  }

  /**
   * Signature, freshness, the cluster, `mayAct` (whether the signer may ask
   * this at all), then the nonce: returns the signer's owner string. Claiming
   * a nonce writes to the shared nonce store, so a key that could never be
   * granted the request (not a writer, not the file's owner) is refused
   * before: anyone can make a key, and a closed cluster must not take writes
   * from strangers' keys. The change itself checks again.
   */
  async #authenticate(
    request: SignedRequest,
    mayAct: (signer: string) => Promise<void>,
  ): Promise<string> {
    await checkSignedRequest(request);
    const cluster = await this.#context.clusterId();
    if (request.cluster !== cluster) {
      throw new ProtocolError(
        "UNAUTHORIZED",
        `Signed ${request.op} is for cluster ${JSON.stringify(request.cluster.slice(0, 64))}, ` +
          `not this one (${cluster})`,
      );
    }
    await mayAct(request.auth.key);
    await this.#replayGuard.claim(request.auth);
    return request.auth.key;
  }

  /** A pre-check for #authenticate: `signer` owns the file `name` names now. */
  async #ownsNow(name: string, signer: string, verb: string): Promise<void> {
    const found = await this.#store.get(_checkName(name));
    if (!found) throw new ProtocolError("NOT_FOUND", `No file named ${JSON.stringify(name)}`);
    await this.#assertOwner(found.entry, signer, verb);
  }

  /** Refuses a delete or rename signed for content the name no longer holds. */
  #assertContent(entry: FileEntry, request: RequestOf<"file.delete" | "file.rename">): void {
    const held = _computedContentId(entry);
    if (held === request.contentId) return;
    throw new ProtocolError(
      "UNAUTHORIZED",
      `Signed ${request.op} of ${JSON.stringify(entry.name)} is for content ${
        request.contentId.slice(0, 12)
      }..., but the file now holds ${
        held.slice(0, 12)
      }... (it changed since the request was signed); run the command again`,
    );
  }

  async #assertOwner(entry: FileEntry, signer: string, verb: string): Promise<void> {
    if (entry.owner === signer) return;
    const operator = await this.#context.operatorKey();
    if (entry.owner === OPERATOR_OWNER && operator === signer) return;
    // Preloaded over the network (etcd), a file's owner is the operator's key: named as such.
    const owner = operator !== undefined && entry.owner === operator
      ? `operator (${_short(entry.owner)})`
      : _short(entry.owner);
    throw new ProtocolError(
      "NOT_YOURS",
      `Cannot ${verb} ${JSON.stringify(entry.name)}: it belongs to ${owner}, not to ${
        _short(signer)
      }`,
    );
  }

  /**
   * file.publish: adds (or with replace, swaps in) a file whose parts are all
   * stored. The body is read only once the header's signature checked out, so
   * no one can make an instance buffer a part list without a key.
   */
  async publish(
    request: RequestOf<"file.publish">,
    readBody: () => Promise<Uint8Array>,
  ): Promise<ReplyOf<"file.publish">> {
    const signer = await this.#authenticate(request, (key) => this.assertMayStore(key));
    const body = await readBody();
    if ((await sha256Hex(body)) !== request.bodyDigest) {
      throw new ProtocolError("UNAUTHORIZED", "Body of file.publish does not match its bodyDigest");
    }
    const name = _checkName(request.name, "File name", true);
    const policy = await this.#context.writers();
    const operator = await this.#context.operatorKey();
    assertMayStore(policy, signer, operator);
    const quota = quotaOf(policy, signer, operator);
    const view = await this.#context.view();
    const entry = this.#parseEntry(request, body, signer, view);
    // Under the parts lock, so that freeing parts cannot slip in between check and publish
    // (and two publishes of one owner cannot both fit a quota only one fits).
    const outcome = await this.#locker.withLock(
      PARTS_LOCK,
      async () => {
        // Exact as of now: every change that adds or removes bytes waits for this lock.
        const published = quota === undefined ? 0 : await this.#store.publishedBytes(signer, name);
        return await this.#store.change([name], async (current) => {
          const existing = current.get(name)?.entry;
          if (
            existing && existing.owner === signer &&
            _computedContentId(existing) === entry.contentId
          ) {
            // The same upload again (a retry whose reply was lost): nothing to do,
            // unless the entry, from an older fts, lacks the fast digests this one has.
            const fast = (e: FileEntry) => e.parts.every((part) => part.xxh128 !== undefined);
            if (fast(existing) || !fast(entry)) return { result: [] as string[] };
            const parts = existing.parts.map((part, i) => ({
              ...part,
              xxh128: entry.parts[i]!.xxh128!,
            }));
            return { puts: [{ ...existing, parts }], result: [] as string[] };
          }
          if (existing && !request.replace) {
            throw new ProtocolError(
              "ALREADY_EXISTS",
              `A file named ${JSON.stringify(name)} already exists; replace it only if it is yours`,
            );
          }
          if (existing) await this.#assertOwner(existing, signer, "replace");
          // A replace counts the difference: the old file's bytes were left out above.
          assertWithinQuota("its published files hold", signer, quota, published, entry.size);
          const copies = entry.parts.flatMap((part, index) =>
            part.replicas.map((id) => ({ id, digest: part.digest, size: part.size, index }))
          );
          const sizes = await this.#context.storedSizes(copies);
          const missing = copies.flatMap((copy, i) =>
            sizes[i] === copy.size ? [] : [`part ${copy.index} on instance ${copy.id}`]
          );
          if (missing.length > 0) {
            throw new ProtocolError(
              "MISSING_PARTS",
              `Cannot publish ${
                JSON.stringify(name)
              }: ${missing.length} part copies are not stored (${
                missing.slice(0, MAX_LISTED_MISSING).join(", ")
              }${missing.length > MAX_LISTED_MISSING ? ", ..." : ""})`,
            );
          }
          return { puts: [entry], result: existing ? existing.parts.map((p) => p.digest) : [] };
        });
      },
    );
    const freed = await this.#context.freeParts(outcome.result);
    return {
      op: "published",
      name,
      contentId: entry.contentId,
      generation: outcome.revision,
      unchanged: !outcome.changed,
      partsFreed: freed.digests,
    };
  }

  #parseEntry(
    request: RequestOf<"file.publish">,
    body: Uint8Array,
    owner: string,
    view: ClusterView,
  ): FileEntry {
    let entry: FileEntry;
    try {
      const value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
      entry = parseFileEntry({
        name: request.name,
        size: request.size,
        partSize: request.partSize,
        parts: value?.parts,
      });
    } catch (cause) {
      throw new ProtocolError(
        "BAD_REQUEST",
        `file.publish body is not a valid part list: ${(cause as Error).message}`,
        { cause },
      );
    }
    const ids = new Set(view.ids);
    for (const [index, part] of entry.parts.entries()) {
      const distinct = new Set(part.replicas);
      const unknown = part.replicas.find((id) => !ids.has(id));
      if (unknown !== undefined) {
        throw new ProtocolError(
          "BAD_REQUEST",
          `Part ${index} names instance ${JSON.stringify(unknown)}, not one of this cluster`,
        );
      }
      if (distinct.size !== part.replicas.length || distinct.size < view.replicas) {
        throw new ProtocolError(
          "BAD_REQUEST",
          `Part ${index} needs ${view.replicas} distinct replicas, got ${part.replicas.length}`,
        );
      }
    }
    return { ...entry, owner, created: new Date().toISOString() };
  }

  /** file.delete: removes the entry at once, then the parts no other file uses. */
  async remove(request: RequestOf<"file.delete">): Promise<ReplyOf<"file.delete">> {
    const signer = await this.#authenticate(
      request,
      (key) => this.#ownsNow(request.name, key, "delete"),
    );
    const name = _checkName(request.name);
    // Under the parts lock, like every change that adds or removes a name:
    // repair finds the entries to update by a walk under that lock, and an
    // entry leaving meanwhile would make it drop its update.
    const outcome = await this.#locker.withLock(
      PARTS_LOCK,
      () =>
        this.#store.change([name], async (current) => {
          const entry = current.get(name)?.entry;
          if (!entry) throw new ProtocolError("NOT_FOUND", `No file named ${JSON.stringify(name)}`);
          await this.#assertOwner(entry, signer, "delete");
          this.#assertContent(entry, request);
          return { deletes: [name], result: entry.parts.map((p) => p.digest) };
        }),
    );
    // After the lock is released: freeing takes it again.
    const freed = await this.#context.freeParts(outcome.result);
    return {
      op: "deleted",
      name,
      generation: outcome.revision,
      partsFreed: freed.digests,
      copiesFreed: freed.copies,
    };
  }

  /** file.rename: metadata only; no part moves. */
  async rename(request: RequestOf<"file.rename">): Promise<ReplyOf<"file.rename">> {
    const signer = await this.#authenticate(
      request,
      (key) => this.#ownsNow(request.name, key, "rename"),
    );
    const name = _checkName(request.name);
    const to = _checkName(request.to, "New name", true);
    // Under the parts lock, as remove() says why.
    const { revision } = await this.#locker.withLock(
      PARTS_LOCK,
      () =>
        this.#store.change([name, to], async (current) => {
          const entry = current.get(name)?.entry;
          if (!entry) throw new ProtocolError("NOT_FOUND", `No file named ${JSON.stringify(name)}`);
          await this.#assertOwner(entry, signer, "rename");
          this.#assertContent(entry, request);
          if (name === to) return { result: undefined };
          if (current.has(to)) {
            throw new ProtocolError(
              "ALREADY_EXISTS",
              `Cannot rename ${JSON.stringify(name)}: a file named ${JSON.stringify(to)} exists`,
            );
          }
          return { deletes: [name], puts: [{ ...entry, name: to }], result: undefined };
        }),
    );
    return { op: "renamed", name, to, generation: revision };
  }
}

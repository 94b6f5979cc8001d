/**
 * The bytes each owner's published files hold (file sizes, not copies: what
 * a quota counts), kept in memory by a manifest store and brought up to date
 * from the changes since its revision, so that a publish under a quota does
 * not walk every entry. A store builds one with walkTally() the first time it
 * is asked, and again only when it cannot tell what changed since (a gap in
 * the changes it remembers, or etcd history compacted away).
 *
 * It is derived from the entries alone, so it stays right whoever wrote them
 * (an rm, mv or replace, a preload, or an older fts that knows nothing of it).
 * It is exact at its revision; a publish asks for it under the parts lock,
 * which every change that adds, removes or renames an entry takes, so two
 * publishes of one owner see each other's bytes.
 */
import { ManifestChangedError, type ManifestStore, walkWhole } from "./manifest_store.ts";

/** An owner's running total; every entry of that owner points at the one record. */
interface _Owner {
  owner: string;
  bytes: number;
}

export class OwnerTally {
  /** The store revision the tally is exact at. */
  revision: number;
  readonly #byName = new Map<string, { of: _Owner; size: number }>();
  readonly #byOwner = new Map<string, _Owner>();

  constructor(revision: number) {
    this.revision = revision;
  }

  /** Entries counted. */
  get size(): number {
    return this.#byName.size;
  }

  /** The entry `name` is now owned by `owner` and `size` bytes long. */
  set(name: string, owner: string, size: number): void {
    this.delete(name);
    let of = this.#byOwner.get(owner);
    if (!of) this.#byOwner.set(owner, of = { owner, bytes: 0 });
    of.bytes += size;
    this.#byName.set(name, { of, size });
  }

  /** The entry `name` is gone (nothing if it was not counted). */
  delete(name: string): void {
    const held = this.#byName.get(name);
    if (!held) return;
    this.#byName.delete(name);
    held.of.bytes -= held.size;
    if (held.of.bytes === 0 && this.#byOwner.get(held.of.owner) === held.of) {
      this.#byOwner.delete(held.of.owner);
    }
  }

  /** Bytes of `owner`'s files, leaving out the file named `except`. */
  bytesOf(owner: string, except?: string): number {
    const total = this.#byOwner.get(owner)?.bytes ?? 0;
    const left = except === undefined ? undefined : this.#byName.get(except);
    return left && left.of.owner === owner ? total - left.size : total;
  }
}

/** A tally of every entry of `store`, from one walk of its summaries at one revision. */
export function walkTally(store: ManifestStore): Promise<OwnerTally> {
  return walkWhole(async () => {
    const limit = store.walkPageEntries;
    const tally = new OwnerTally(0);
    let after: string | undefined;
    let revision: number | undefined;
    while (true) {
      const page = await store.summaries(
        after === undefined ? { limit } : { after, limit, atRevision: revision! },
      );
      revision ??= page.revision;
      if (page.revision !== revision) throw new ManifestChangedError(revision, page.revision);
      for (const { name, owner, size } of page.summaries) tally.set(name, owner, size);
      if (!page.more || page.summaries.length === 0) break;
      after = page.summaries.at(-1)!.name;
    }
    tally.revision = revision;
    return tally;
  });
}

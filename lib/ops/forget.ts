/**
 * Forgetting instances of a cluster in etcd for good. A host taken out of
 * service stays a member: its record under `members/` is kept while it is
 * down, so that its copies are still known, and placement, uploads and
 * `fts status` go on counting it. Forgetting deletes those records once that
 * loses nothing:
 *
 * 1. Every instance named must be down: no liveness key.
 * 2. No file entry may list a copy on it. Healing (or `fts repair`) drops a
 *    down instance's copies from the entries once the part has R good copies
 *    elsewhere; a copy still listed is one not made again yet, or the last
 *    copy of a part.
 * 3. Each record goes in a transaction that checks again that the liveness
 *    key is absent and the record unchanged, so an instance that came back
 *    meanwhile stays a member.
 *
 * A forgotten instance that starts again joins again, as a new member.
 */
import { type EtcdCluster, type MemberRecord } from "../etcd/etcd_cluster.ts";
import { allEntries, walkWhole } from "../state/manifest_store.ts";
import { plural } from "../base/units.ts";

/** File names a refusal quotes at most. */
const _NAMED_FILES = 3;

export interface ForgetResult {
  /** The ids whose records were deleted. */
  forgotten: string[];
  /** Ids that came back while being forgotten: still members. */
  cameBack: string[];
}

/** The members `selector` names: the one whose id it is, or every one at that host address. */
function _membersNamed(
  members: ReadonlyMap<string, MemberRecord>,
  selector: string,
): string[] {
  if (members.has(selector)) return [selector];
  return [...members.keys()].filter((id) => _hostOf(id) === selector).sort();
}

/**
 * Forgets the members the selectors name (`ADDR:PORT` or `ADDR`); throws,
 * having changed nothing, when one names no member, is up, or is listed as
 * holding a copy.
 */
export async function forgetMembers(
  cluster: EtcdCluster,
  selectors: readonly string[],
): Promise<ForgetResult> {
  const [members, alive] = await Promise.all([cluster.members(), cluster.alive()]);
  const ids = new Set<string>();
  for (const selector of selectors) {
    const named = _membersNamed(members, selector);
    if (named.length === 0) {
      const hosts = [...new Set([...members.keys()].map(_hostOf))].sort();
      throw new Error(
        `No member of cluster ${JSON.stringify(cluster.name)} is ${selector} ` +
          (hosts.length > 0 ? `(its hosts: ${hosts.join(", ")})` : "(it has no members)"),
      );
    }
    for (const id of named) ids.add(id);
  }
  const up = [...ids].filter((id) => alive.has(id)).sort();
  if (up.length > 0) {
    throw new Error(
      `${up.join(", ")} ${up.length === 1 ? "is" : "are"} up: stop ${
        up.length === 1 ? "it" : "them"
      } first (fts kill PORT, or stop that host's fts cluster); a host that died is seen down ` +
        `once its liveness lease lapses (6 s)`,
    );
  }
  const listed = await _listedCopies(cluster, ids);
  if (listed.parts > 0) {
    const more = listed.files.size > _NAMED_FILES ? ", ..." : "";
    throw new Error(
      `${plural(listed.parts, "part")} of ${plural(listed.files.size, "file")} (${
        [...listed.files].slice(0, _NAMED_FILES).join(", ")
      }${more}) still ${listed.parts === 1 ? "lists" : "list"} a copy on ${
        [...ids].sort().join(", ")
      }: let healing copy them ` +
        `elsewhere, or run fts repair; a part whose copies were all there is lost ` +
        `(fts status names its files; fts rm them, or bring the host back)`,
    );
  }
  const result: ForgetResult = { forgotten: [], cameBack: [] };
  for (const id of [...ids].sort()) {
    const record = await cluster.etcd.get(cluster.keys.member(id));
    if (!record) {
      // Another forget got there first: forgotten all the same.
      result.forgotten.push(id);
      continue;
    }
    const { succeeded } = await cluster.etcd.txn(
      [
        { key: cluster.keys.aliveKey(id), target: "CREATE", result: "EQUAL", createRevision: 0 },
        {
          key: cluster.keys.member(id),
          target: "MOD",
          result: "EQUAL",
          modRevision: record.modRevision,
        },
      ],
      [{ deleteRange: { key: cluster.keys.member(id) } }],
    );
    (succeeded ? result.forgotten : result.cameBack).push(id);
  }
  return result;
}

/** How many parts, of which files, list a copy on one of `ids`. */
async function _listedCopies(
  cluster: EtcdCluster,
  ids: ReadonlySet<string>,
): Promise<{ parts: number; files: Set<string> }> {
  return await walkWhole(async () => {
    const found = { parts: 0, files: new Set<string>() };
    for await (const { entry } of allEntries(cluster.manifest)) {
      for (const part of entry.parts) {
        if (!part.replicas.some((id) => ids.has(id))) continue;
        found.parts++;
        found.files.add(entry.name);
      }
    }
    return found;
  });
}

/** The host address of an instance id `ADDR:PORT`. */
function _hostOf(id: string): string {
  return id.slice(0, id.lastIndexOf(":"));
}

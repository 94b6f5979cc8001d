/**
 * Finding a run of free loopback ports, for a cluster that must not collide
 * with anything, and telling who holds a port that is taken.
 */

/** Ports tried: above the usual services, below the kernel's ephemeral range. */
export const FREE_PORT_FIRST = 20_000;
export const FREE_PORT_LAST = 32_000;
const ATTEMPTS = 200;

/** True when `port` on `hostname` can be bound right now. */
export function portFree(port: number, hostname = "127.0.0.1"): boolean {
  try {
    Deno.listen({ hostname, port }).close();
    return true;
  } catch (error) {
    // Not a port taken, but an address this machine does not have (or cannot resolve).
    if (
      !(error instanceof Deno.errors.AddrInUse || error instanceof Deno.errors.PermissionDenied)
    ) {
      throw new Error(
        `${hostname} is not an address of this machine: nothing can listen there`,
        { cause: error },
      );
    }
    return false;
  }
}

/** The first port of `count` consecutive ports free on 127.0.0.1 right now. */
export function findFreePortRange(count: number): number {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const base = FREE_PORT_FIRST +
      Math.floor(Math.random() * (FREE_PORT_LAST - FREE_PORT_FIRST - count));
    let free = true;
    for (let port = base; port < base + count && free; port++) free = portFree(port);
    if (free) return base;
  }
  throw new Error(
    `No ${count} consecutive free ports found in ${FREE_PORT_FIRST}-${FREE_PORT_LAST}`,
  );
}

/** TCP state "listening" in /proc/net/tcp. */
const _LISTEN_STATE = "0A";

/**
 * Who listens on TCP `port`, as "pid 1234 (nginx)", from /proc (Linux): the
 * socket's inode in /proc/net/tcp{,6}, then the process with that socket
 * open. Undefined when it cannot tell (another OS, or a process of another
 * user whose descriptors cannot be read).
 */
export async function portHolder(port: number): Promise<string | undefined> {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = await Deno.readTextFile(table);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1]?.split(":")[1];
      if (fields[3] === _LISTEN_STATE && local && parseInt(local, 16) === port) {
        inodes.add(fields[9]!);
      }
    }
  }
  if (inodes.size === 0) return undefined;
  try {
    for await (const proc of Deno.readDir("/proc")) {
      if (!/^\d+$/.test(proc.name)) continue;
      try {
        for await (const fd of Deno.readDir(`/proc/${proc.name}/fd`)) {
          const target = await Deno.readLink(`/proc/${proc.name}/fd/${fd.name}`).catch(() => "");
          const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
          if (inode && inodes.has(inode)) {
            const comm = (await Deno.readTextFile(`/proc/${proc.name}/comm`).catch(() => ""))
              .trim();
            return `pid ${proc.name}${comm ? ` (${comm})` : ""}`;
          }
        }
      } catch {
        // Gone, or not ours to read.
      }
    }
  } catch {
    // No /proc.
  }
  return undefined;
}

/** Finding a run of free loopback ports, for a cluster that must not collide with anything. */

/** Ports tried: above the usual services, below the kernel's ephemeral range. */
export const FREE_PORT_FIRST = 20_000;
export const FREE_PORT_LAST = 32_000;
const ATTEMPTS = 200;

/** True when `port` on 127.0.0.1 can be bound right now. */
export function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
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

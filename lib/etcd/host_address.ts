/**
 * The address a host of a cluster in etcd is known by: its instances listen
 * there, and their ids (`ADDR:PORT`), which clients and other hosts dial, are
 * recorded with it. So it must be an address of this machine, and one that
 * names it: a wildcard (0.0.0.0, ::) listens everywhere but, dialled, reaches
 * whichever machine dials it.
 */
import { UsageError } from "../wire/errors.ts";
import { isWildcardAddress } from "../wire/host_address.ts";

/** Throws a UsageError (one clear line, before anything is recorded) for a `host` unfit for --host. */
export function checkHostAddress(host: string): void {
  if (isWildcardAddress(host)) {
    throw new UsageError(
      `--host ${host} is a wildcard address, which other hosts and clients cannot dial: ` +
        `give an address of this machine they reach it on`,
    );
  }
  // Ids join address and port with a colon, unbracketed: an IPv6 address cannot be told apart.
  if (host.includes(":")) {
    throw new UsageError(
      `--host ${host} is an IPv6 address, which fts cannot take yet (an instance's id is ` +
        `ADDR:PORT): give an IPv4 address of this machine, or a name that resolves to one`,
    );
  }
  checkLocalAddress(host);
}

/**
 * Throws a UsageError unless something can listen on `host` here: an address
 * of this machine (IPv4 or IPv6, or a wildcard), or a name resolving to one.
 * What a listener alone needs (the gateway); checkHostAddress() also wants
 * an address others can dial and that an instance id can hold.
 */
export function checkLocalAddress(host: string): void {
  try {
    Deno.listen({ hostname: host, port: 0 }).close();
  } catch (cause) {
    if (cause instanceof Deno.errors.PermissionDenied) throw cause;
    // AddrNotAvailable, or a name that does not resolve or is no name at all.
    const why = cause instanceof Deno.errors.AddrNotAvailable
      ? "nothing can listen there"
      : `it does not resolve (${(cause as Error).message})`;
    throw new UsageError(`--host ${host} is not an address of this machine: ${why}`, { cause });
  }
}

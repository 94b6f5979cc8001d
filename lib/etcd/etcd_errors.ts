/**
 * The errors etcd-backed code throws for conditions its callers handle: etcd
 * not reachable at all, and a cluster name or settings that do not match.
 */
import { ProtocolError } from "../wire/errors.ts";

/** No etcd endpoint answered: every one is named, so an operator can check them. */
export class EtcdUnavailableError extends Error {
  readonly failures: readonly string[];
  constructor(endpoints: string, failures: readonly string[]) {
    // An https etcd whose certificate this client cannot check is no outage: say what to pass.
    const untrusted = failures.some((failure) =>
      /UnknownIssuer|invalid peer certificate|certificate verify/i.test(failure)
    );
    super(
      `etcd is unavailable: none of ${endpoints} answered (${failures.slice(0, 3).join("; ")})` +
        (untrusted
          ? `; its certificate is not one this client trusts: pass --etcd-ca FILE (or ` +
            `FTS_ETCD_CA) naming the CA that signed it`
          : ""),
    );
    this.name = "EtcdUnavailableError";
    this.failures = failures;
  }
}

/**
 * Runs `work`; etcd out of reach (or without quorum) becomes UNAVAILABLE,
 * which names the endpoints and tells the client not to try another instance.
 */
export async function unavailableOnEtcdError<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof EtcdUnavailableError) {
      throw new ProtocolError("UNAVAILABLE", error.message, { cause: error });
    }
    throw error;
  }
}

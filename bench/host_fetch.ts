/**
 * One HTTP request made from inside a test host. The test process lives in the
 * machine's own network namespace, which has no route to a test host's address,
 * so a request to a server in a test host (etcd's /health, its JSON gateway) is
 * made by this script run there with `ip netns exec`: the request as JSON in
 * the first argument, the answer as JSON on stdout. On loopback hosts the test
 * calls hostFetch() directly.
 */

/** What to ask. */
export interface HostRequest {
  url: string;
  method?: string;
  /** Sent as a JSON body when given. */
  json?: unknown;
  timeoutMs: number;
}

/** What came back: the status and body, or why there was no answer. */
export type HostAnswer = { status: number; body: string } | { error: string };

/** Makes the request from this process; never throws. */
export async function hostFetch(request: HostRequest): Promise<HostAnswer> {
  try {
    const response = await fetch(request.url, {
      method: request.method ?? (request.json === undefined ? "GET" : "POST"),
      ...(request.json === undefined ? {} : {
        body: JSON.stringify(request.json),
        headers: { "content-type": "application/json" },
      }),
      signal: AbortSignal.timeout(request.timeoutMs),
    });
    return { status: response.status, body: await response.text() };
  } catch (error) {
    return { error: `${request.url}: ${error instanceof Error ? error.message : error}` };
  }
}

if (import.meta.main) {
  const request = JSON.parse(Deno.args[0] ?? "null") as HostRequest | null;
  if (request === null) {
    throw new TypeError("host_fetch.ts takes one argument: the request as JSON");
  }
  console.log(JSON.stringify(await hostFetch(request)));
}

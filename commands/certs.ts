import { boolFlag, expectPositionals, listFlag, parseFlags, stringFlag } from "../lib/cli/flags.ts";
import { resolve } from "../lib/base/paths.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { parseHostAddress } from "../lib/wire/host_address.ts";
import { makeClusterCertificates } from "../lib/ops/cluster_certs.ts";

export const USAGE = "fts certs --ca DIR [--host ADDR]... [--json]";

export const EXAMPLE = [
  "fts certs --ca ./fts-ca --host 10.0.0.1 --host 10.0.0.2 --host files.example.org",
].join("\n");

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    ca: { type: "string" },
    host: { type: "string", multiple: true },
    json: { type: "boolean" },
  });
  expectPositionals(flags, 0, 0, USAGE);
  const caArg = stringFlag(flags, "ca");
  if (caArg === undefined || caArg === "") {
    throw new UsageError(`Missing --ca DIR; usage: ${USAGE}`);
  }
  const hosts = listFlag(flags, "host").map(parseHostAddress);
  const unique = [...new Map(hosts.map((host) => [host.text, host])).values()];
  const made = await makeClusterCertificates(resolve(caArg), unique);
  if (boolFlag(flags, "json")) {
    console.log(JSON.stringify({ ok: true, ...made }));
    return 0;
  }
  console.log(
    made.caCreated
      ? `created the cluster CA ${made.caCert} (its key ${made.caKey} signs new hosts: keep it private)`
      : `using the cluster CA ${made.caCert}`,
  );
  for (const host of made.hosts) {
    console.log(
      `${host.replaced ? "replaced" : "wrote"} ${host.address}: ${host.cert} and key ${host.key}`,
    );
  }
  for (const host of made.hosts) {
    const tls = `--tls-cert ${host.cert} --tls-key ${host.key}`;
    // Instance ids are ADDR:PORT, so instances take IPv4 addresses and names only.
    console.log(
      host.address.includes(":")
        ? `  on ${host.address}: fts gateway ... --host ${host.address} ${tls}`
        : `  on ${host.address}: fts cluster|gateway ... --host ${host.address} ${tls} ` +
          `--tls-ca ${made.caCert} (fts serve: all but --tls-ca)`,
    );
  }
  console.log(`  clients: --tls-ca ${made.caCert} (or FTS_TLS_CA=${made.caCert})`);
  return 0;
}

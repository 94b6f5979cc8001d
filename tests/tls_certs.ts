/**
 * Certificates for TLS tests: a throwaway CA, a server certificate it signs
 * for IP 127.0.0.1, and an unrelated CA, made with openssl in a directory.
 */
import { join } from "node:path";

export interface TestCertificates {
  ca: string;
  cert: string;
  key: string;
  /** A CA that signed nothing here: a client trusting only it must refuse the instances. */
  otherCa: string;
}

async function _openssl(args: string[], cwd: string): Promise<void> {
  const output = await new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (!output.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
}

/** A CA, a server certificate it signs for IP 127.0.0.1, and an unrelated CA. */
export async function makeTestCertificates(dir: string): Promise<TestCertificates> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  for (const name of ["ca", "other-ca"]) {
    await _openssl(
      ["req", "-x509", ...ec, "-keyout", `${name}.key`, "-out", `${name}.pem`, "-days", "2"]
        .concat(["-subj", `/CN=fts test ${name}`]),
      dir,
    );
  }
  await _openssl(
    ["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
    dir,
  );
  await Deno.writeTextFile(
    join(dir, "server.ext"),
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  await _openssl(
    ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"]
      .concat(["-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext"]),
    dir,
  );
  return {
    ca: join(dir, "ca.pem"),
    cert: join(dir, "server.pem"),
    key: join(dir, "server.key"),
    otherCa: join(dir, "other-ca.pem"),
  };
}

import { boolFlag, parseFlags, stringFlag } from "../lib/cli.ts";
import { requireConfig, resolveDataDir } from "../lib/config.ts";
import { clusterStatus, type StatusReport } from "../lib/status.ts";
import { formatBytes } from "../lib/units.ts";

export const USAGE = "fts status [--json] [--data DIR]";

export function formatStatus(report: StatusReport): string {
  const up = report.instances.filter((i) => i.up);
  const down = report.instances.filter((i) => !i.up);
  const lines = [
    `instances: ${up.length}/${report.instances.length} up` +
    (down.length > 0 ? `; down: ${down.map((i) => i.id).join(", ")}` : ""),
  ];
  const grid = report.instances.map((i) => (i.up ? "#" : ".")).join("");
  for (let i = 0; i < grid.length; i += 50) lines.push(`  ${grid.slice(i, i + 50)}`);
  if (report.files.length === 0) {
    lines.push("files: none");
  } else {
    lines.push(`files (R=${report.replicas}):`);
    const width = Math.max(...report.files.map((f) => f.name.length), 4);
    for (const f of report.files) {
      const health = f.lostParts > 0
        ? `LOST: ${f.lostParts} parts have no live replica`
        : f.minLiveReplicas < report.replicas
        ? `degraded: ${f.underReplicatedParts} parts under-replicated`
        : "healthy";
      lines.push(
        `  ${f.name.padEnd(width)}  ${formatBytes(f.size).padStart(10)}  ${
          String(f.parts).padStart(6)
        } parts  min live replicas ${f.minLiveReplicas}/${report.replicas}  ${health}`,
      );
    }
  }
  return lines.join("\n");
}

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, { data: { type: "string" }, json: { type: "boolean" } });
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const config = await requireConfig(dir);
  const report = await clusterStatus(dir, config);
  console.log(boolFlag(flags, "json") ? JSON.stringify(report, null, 2) : formatStatus(report));
  return 0;
}

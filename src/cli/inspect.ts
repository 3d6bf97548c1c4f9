/**
 * `wgsl-vlm inspect PATH`: what a safetensors file or model folder holds, read from the headers
 * alone (no tensor data is read). PATH is a .safetensors file, a model folder (single file or
 * sharded), or a model.safetensors.index.json.
 *
 * Prints each tensor's name, dtype, shape and bytes (and its shard, when sharded), then the
 * metadata and the totals. A malformed file ends the command with exit code 1 and one line
 * saying what is wrong and where.
 */
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { Checkpoint, CheckpointError } from "../weights/checkpoint.js";
import { SafetensorsError } from "../weights/safetensors.js";
import { UsageError, type Command } from "./command.js";

const command: Command = {
  summary: "list the tensors of a safetensors file or model folder",
  usage: `usage: wgsl-vlm inspect PATH [--json]
  PATH     a .safetensors file, a model folder, or a model.safetensors.index.json
  --json   print JSON instead of a table`,
  async run(argv) {
    const { values, positionals } = parseArgs({ args: argv, options: { json: { type: "boolean" } }, allowPositionals: true });
    if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? "PATH is missing" : `one PATH expected, got ${positionals.length}`);
    let checkpoint: Checkpoint;
    try {
      checkpoint = await Checkpoint.open(positionals[0]);
    } catch (error) {
      if (!(error instanceof SafetensorsError || error instanceof CheckpointError)) throw error;
      process.stderr.write(`wgsl-vlm inspect: ${error.message.replace(/\s*\n\s*/g, "; ")}\n`);
      return 1;
    }
    try {
      process.stdout.write(values.json ? `${JSON.stringify(report(checkpoint), null, 2)}\n` : table(checkpoint));
    } finally {
      await checkpoint.close();
    }
    return 0;
  },
};

/** Tensors by name, with numbers in order (layers.2 before layers.10). */
function sortedTensors(checkpoint: Checkpoint) {
  const collator = new Intl.Collator("en", { numeric: true });
  return [...checkpoint.tensors.values()].sort((a, b) => collator.compare(a.name, b.name));
}

function report(checkpoint: Checkpoint) {
  return {
    path: checkpoint.path,
    files: checkpoint.files.map((f) => f.path),
    tensors: sortedTensors(checkpoint).map((t) => ({
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      bytes: t.end - t.begin,
      ...(checkpoint.index ? { file: basename(t.file.path) } : {}),
    })),
    metadata: checkpoint.files.length === 1 ? checkpoint.files[0].metadata : Object.fromEntries(checkpoint.files.map((f) => [basename(f.path), f.metadata])),
    totalTensors: checkpoint.tensors.size,
    totalBytes: checkpoint.totalBytes,
  };
}

function table(checkpoint: Checkpoint): string {
  const { tensors, metadata, totalTensors, totalBytes, files } = report(checkpoint);
  const rows = [["name", "dtype", "shape", "bytes", ...(checkpoint.index ? ["file"] : [])]];
  for (const t of tensors) rows.push([t.name, t.dtype, `[${t.shape.join(", ")}]`, String(t.bytes), ...(t.file ? [t.file] : [])]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) =>
    r.map((cell, i) => (i === 3 ? cell.padStart(widths[i]) : i === r.length - 1 ? cell : cell.padEnd(widths[i]))).join("  "),
  );
  lines.push("", "metadata");
  const entries = Object.entries(metadata);
  if (entries.length === 0) lines.push("  (none)");
  for (const [key, value] of entries) lines.push(`  ${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`);
  lines.push(
    "",
    `total: ${totalTensors} tensor${totalTensors === 1 ? "" : "s"}, ${totalBytes} bytes (${humanBytes(totalBytes)})` +
      (files.length > 1 ? ` in ${files.length} files` : ""),
  );
  return `${lines.join("\n")}\n`;
}

function humanBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export default command;

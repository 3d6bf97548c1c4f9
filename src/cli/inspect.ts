/**
 * `wgsl-vlm inspect PATH`: what a safetensors file, a model folder or a GGUF file holds, read
 * from the headers alone (no tensor data is read). PATH is a .safetensors file, a model folder
 * (single file or sharded), a model.safetensors.index.json, or a GGUF file (llama.cpp's).
 *
 * Prints each tensor's name, dtype, shape and bytes (and its shard, when sharded), then the
 * metadata and the totals; for GGUF, its version and alignment first and each metadata value
 * with its type (long arrays shortened in the table, whole in --json). A malformed file ends
 * the command with exit code 1 and one line saying what is wrong and where.
 */
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { Checkpoint, CheckpointError } from "../weights/checkpoint.js";
import { GgufError, GgufFile, isGgufFile } from "../weights/gguf.js";
import type { GgufArray, GgufValue } from "../weights/gguf_types.js";
import { SafetensorsError } from "../weights/safetensors.js";
import { UsageError, type Command } from "./command.js";

const command: Command = {
  summary: "list the tensors of a safetensors file, model folder or GGUF file",
  usage: `usage: wgsl-vlm inspect PATH [--json]
  PATH     a .safetensors file, a model folder, a model.safetensors.index.json, or a .gguf file
  --json   print JSON instead of a table`,
  async run(argv) {
    const { values, positionals } = parseArgs({ args: argv, options: { json: { type: "boolean" } }, allowPositionals: true });
    if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? "PATH is missing" : `one PATH expected, got ${positionals.length}`);
    const fail = (error: Error) => {
      process.stderr.write(`wgsl-vlm inspect: ${error.message.replace(/\s*\n\s*/g, "; ")}\n`);
      return 1;
    };
    if (await isGgufFile(positionals[0])) {
      let gguf: GgufFile;
      try {
        gguf = await GgufFile.open(positionals[0]);
      } catch (error) {
        if (!(error instanceof GgufError)) throw error;
        return fail(error);
      }
      try {
        process.stdout.write(values.json ? `${JSON.stringify(ggufReport(gguf), jsonBigInts, 2)}\n` : ggufTable(gguf));
      } finally {
        await gguf.close();
      }
      return 0;
    }
    let checkpoint: Checkpoint;
    try {
      checkpoint = await Checkpoint.open(positionals[0]);
    } catch (error) {
      if (!(error instanceof SafetensorsError || error instanceof CheckpointError)) throw error;
      return fail(error);
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

/** Columns padded to their widest cell, the bytes (column 3) right-aligned. */
function columns(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((cell, i) => (i === 3 ? cell.padStart(widths[i]) : i === r.length - 1 ? cell : cell.padEnd(widths[i]))).join("  "));
}

function table(checkpoint: Checkpoint): string {
  const { tensors, metadata, totalTensors, totalBytes, files } = report(checkpoint);
  const rows = [["name", "dtype", "shape", "bytes", ...(checkpoint.index ? ["file"] : [])]];
  for (const t of tensors) rows.push([t.name, t.dtype, `[${t.shape.join(", ")}]`, String(t.bytes), ...(t.file ? [t.file] : [])]);
  const lines = columns(rows);
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

function ggufReport(gguf: GgufFile) {
  const collator = new Intl.Collator("en", { numeric: true });
  const tensors = [...gguf.tensors.values()].sort((a, b) => collator.compare(a.name, b.name));
  return {
    path: gguf.path,
    format: "gguf",
    version: gguf.version,
    alignment: gguf.alignment,
    metadata: Object.fromEntries([...gguf.metadata].map(([key, v]) => [key, v])),
    tensors: tensors.map((t) => ({ name: t.name, type: t.type.name, shape: t.shape, bytes: t.bytes, offset: t.begin - gguf.dataStart })),
    totalTensors: tensors.length,
    totalBytes: tensors.reduce((n, t) => n + t.bytes, 0),
  };
}

/** 64-bit integers as JSON numbers when exact, as strings beyond 2^53. */
function jsonBigInts(_key: string, value: unknown): unknown {
  if (typeof value !== "bigint") return value;
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
}

/** Items shown of an array in the table. */
const SHOWN_ITEMS = 8;

function describeGgufArray(array: GgufArray): string {
  const shown = array.values.slice(0, SHOWN_ITEMS).map((v) => (typeof v === "object" ? describeGgufArray(v) : JSON.stringify(v, jsonBigInts)));
  const more = array.values.length > SHOWN_ITEMS ? `, ... ${array.values.length - SHOWN_ITEMS} more` : "";
  return `[${array.itemType} x ${array.values.length}: ${shown.join(", ")}${more}]`;
}

function describeGgufValue(v: GgufValue): string {
  if (v.type === "ARRAY") return describeGgufArray(v.value);
  return `${v.type === "STRING" ? JSON.stringify(v.value) : String(v.value)} (${v.type})`;
}

function ggufTable(gguf: GgufFile): string {
  const { tensors, totalTensors, totalBytes } = ggufReport(gguf);
  const lines = [`GGUF version ${gguf.version}, tensor data aligned to ${gguf.alignment} bytes; shapes outermost first (ggml lists them the other way round)`, ""];
  const rows = [["name", "type", "shape", "bytes"]];
  for (const t of tensors) rows.push([t.name, t.type, `[${t.shape.join(", ")}]`, String(t.bytes)]);
  lines.push(...columns(rows), "", "metadata");
  if (gguf.metadata.size === 0) lines.push("  (none)");
  for (const [key, value] of gguf.metadata) lines.push(`  ${key}: ${describeGgufValue(value)}`);
  lines.push("", `total: ${totalTensors} tensor${totalTensors === 1 ? "" : "s"}, ${totalBytes} bytes (${humanBytes(totalBytes)})`);
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

/**
 * Turning measurements into something to read: the run's circumstances (device, date, commit,
 * how busy the machine was), markdown tables, and the JSON document written beside them.
 */
import { execFileSync } from "node:child_process";
import { loadavg } from "node:os";
import type { AdapterSummary } from "../tensor/adapter.js";
import type { Gpu } from "../tensor/gpu.js";
import { describeCheck } from "./check.js";
import type { E2EResult } from "./e2e.js";
import type { KernelResult } from "./kernels.js";
import type { DeviceLimits, LimitMeasurement } from "./limits.js";
import { describeWeightTypes } from "../models/load.js";

export interface Environment {
  date: string;
  /** `git describe`-like: the commit, with "+dirty" when the tree has changes (unknown outside a checkout). */
  commit: string;
  device: string;
  adapter: AdapterSummary;
  features: { f16: boolean; subgroups: boolean; timestamps: boolean };
  node: string;
  /** 1-minute load average when the run started: other work on the machine skews timings. */
  loadAverage: number;
}

function git(args: string[]): string | null {
  try {
    return execFileSync("git", args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

export function environment(gpu: Gpu): Environment {
  const commit = git(["rev-parse", "--short", "HEAD"]);
  const dirty = commit !== null && (git(["status", "--porcelain", "--untracked-files=no"]) ?? "") !== "";
  const a = gpu.adapter;
  return {
    date: new Date().toISOString(),
    commit: commit === null ? "unknown" : `${commit}${dirty ? "+dirty" : ""}`,
    device: a.description || a.device || a.vendor || "unknown adapter",
    adapter: a,
    features: { f16: gpu.hasF16, subgroups: gpu.hasSubgroups, timestamps: gpu.hasTimestamps },
    node: process.version,
    loadAverage: loadavg()[0],
  };
}

// ------------------------------------------------------------------ formatting

/** A number with about three significant digits. */
export function num(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs === 0) return "0";
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toPrecision(2);
}

export function ms(value: number): string {
  return value >= 1000 ? `${num(value / 1000)} s` : value >= 1 ? `${num(value)} ms` : `${num(value * 1000)} µs`;
}

export function bytes(value: number): string {
  if (value >= 1e9) return `${num(value / 1e9)} GB`;
  if (value >= 1e6) return `${num(value / 1e6)} MB`;
  if (value >= 1e3) return `${num(value / 1e3)} kB`;
  return `${value} B`;
}

function percent(fraction: number): string {
  return `${num(fraction * 100)}%`;
}

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.map((c) => c.replace(/\|/g, "\\|")).join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

export function environmentMarkdown(env: Environment): string {
  const f = env.features;
  const features = [f.f16 && "shader-f16", f.subgroups && "subgroups", f.timestamps && "timestamp-query"].filter(Boolean).join(", ") || "none";
  return `${env.device} (${env.adapter.isFallbackAdapter ? "software" : "hardware"}; ${features}), ${env.date.slice(0, 10)}, commit ${env.commit}, load average ${env.loadAverage.toFixed(2)}`;
}

// ------------------------------------------------------------------ limits

export function limitsMarkdown(limits: DeviceLimits): string {
  const row = (name: string, m: LimitMeasurement): string[] => [
    name,
    `${num(m.value)} ${m.unit}`,
    `${ms(m.time.median)} ±${percent(m.time.spread)} (n=${m.time.n}, ${m.method})`,
    m.what,
  ];
  const rows = [row("copy", limits.copy), row("read", limits.read), row("FMA f32", limits.fmaF32)];
  if (limits.fmaF16) rows.push(row("FMA f16", limits.fmaF16));
  return [
    table(["limit", "rate", "time per run", "how"], rows),
    "",
    `Ceilings used below: bandwidth ${num(limits.bandwidthGBps)} GB/s (the better of copy and read), ` +
      `compute ${num(limits.computeGFlops)} GFLOP/s (f32 FMA: the kernels compute in f32 whatever the storage dtype); ` +
      `ridge at ${num(limits.computeGFlops / limits.bandwidthGBps)} FLOP/byte.`,
  ].join("\n");
}

// ------------------------------------------------------------------ kernels

export function kernelsMarkdown(results: readonly KernelResult[]): string {
  // The fastest version of each case, and the one the runtime picks, to compare against.
  const caseKey = (r: KernelResult) => `${r.model}|${r.phase}|${r.op}|${r.what}|${r.shape}`;
  const fastest = new Map<string, number>();
  const picked = new Map<string, number>();
  for (const r of results) {
    if (!r.time) continue;
    const key = caseKey(r);
    fastest.set(key, Math.min(fastest.get(key) ?? Infinity, r.time.median));
    if (r.picked) picked.set(key, r.time.median);
  }
  const rows = results.map((r) => {
    const key = caseKey(r);
    const marks = `${r.picked ? " ★" : ""}${r.time && r.time.median === fastest.get(key) && (picked.has(key) || r.picked === false) ? " (fastest)" : ""}`;
    const name = [r.model, r.phase, r.op, r.what, r.shape, `${r.version}${marks}`, checkCell(r)];
    const runtimeNote = r.runtimeError ? `the runtime's own call failed: ${r.runtimeError}` : "";
    // A wrong version's check column says what was wrong.
    const why = r.status === "wrong" ? "" : `${r.status}: ${r.error}`;
    if (!r.time) return [...name, "-", "-", "-", "-", "-", "-", [why, runtimeNote].filter(Boolean).join("; ")];
    const vsPicked = picked.get(key);
    return [
      ...name,
      `${ms(r.time.median)} ±${percent(r.time.spread)}`,
      num(r.gflops),
      num(r.gbps),
      num(r.intensity),
      `${r.bound} ${percent(r.fraction)}`,
      vsPicked === undefined || r.picked ? "" : `${num(r.time.median / vsPicked)}×`,
      runtimeNote,
    ];
  });
  return [
    table(["model", "phase", "kernel", "part", "shape", "version", "check", "time", "GFLOP/s", "GB/s", "FLOP/B", "bound: % of ceiling", "time vs ★", "note"], rows),
    "",
    "★ the version the runtime's rule picks for this shape. Shapes of matmul are M×N×K (rows × outputs × inputs); " +
      "time is the median per run ± the median absolute deviation; FLOPs and bytes are what the kernel must do at least. " +
      "check: the first run's output against the kernel's float64 reference, at a seeded sample of its elements, within the tests' " +
      "error bound (the element nearest its bound is shown; ids must match); a WRONG version is not timed and never ★.",
  ].join("\n");
}

/**
 * The numbered versions side by side: one row per case, one column per version, GFLOP/s in
 * each cell (★ the runtime's pick, bold the fastest; WRONG where its output failed the check,
 * - where a version refuses the shape or fails).
 */
export function versionsMarkdown(results: readonly KernelResult[], op: string): string {
  const rows = results.filter((r) => r.op === op && r.picked !== null);
  if (rows.length === 0) return "";
  const versions = [...new Set(rows.map((r) => r.version))];
  const cases = new Map<string, KernelResult[]>();
  for (const r of rows) {
    const key = `${r.model}|${r.phase}|${r.what}|${r.shape}`;
    cases.set(key, [...(cases.get(key) ?? []), r]);
  }
  const body = [...cases.values()].map((group) => {
    const best = Math.min(...group.filter((r) => r.time).map((r) => r.time!.median));
    const cells = versions.map((v) => {
      const r = group.find((g) => g.version === v);
      if (!r || !r.time) return r?.status === "wrong" ? "WRONG" : "-";
      const value = `${num(r.gflops)}${r.picked ? " ★" : ""}`;
      return r.time.median === best ? `**${value}**` : value;
    });
    const { model, phase, what, shape } = group[0];
    return [model, phase, what, shape, ...cells];
  });
  return [
    `### ${op}: GFLOP/s of each version`,
    "",
    table(["model", "phase", "part", "shape", ...versions], body),
  ].join("\n");
}

/** The check column: "ok (err 3e-7 ≤ 1e-5)", "WRONG (err ... at ...)", or "-" for a version that did not run. */
function checkCell(r: KernelResult): string {
  if (!r.check) return "-";
  return `${r.check.passed ? "ok" : "WRONG"} (${describeCheck(r.check)})`;
}

// ------------------------------------------------------------------ end to end

export function e2eMarkdown(r: E2EResult): string {
  const estimated = (m: "measured" | "estimated") => (m === "estimated" ? " (estimated from 0- and 1-layer passes)" : "");
  const rows: string[][] = [
    ["model", `${r.model}: ${r.description}`],
    [
      "weights",
      `${bytes(r.weightBytes)} ${describeWeightTypes(r.weightTypes)}, ready in ${ms(r.buildMs)}${r.splitTensors.length ? `; split in row parts: ${r.splitTensors.join(", ")}` : ""}`,
    ],
  ];
  if (r.image) {
    const tiles = r.image.source ? `, ${r.image.tiles} tiles of a ${r.image.source.width}x${r.image.source.height} photo` : "";
    rows.push(["image encoding", `${ms(r.image.ms)}${estimated(r.image.method)}, ${r.image.features} features${tiles}${rate(r.rates.image)}`]);
  }
  rows.push(
    ["prefill", `${num(r.prefill.tokensPerSecond)} tokens/s: ${r.prefill.positions} positions in ${ms(r.prefill.ms)}${estimated(r.prefill.method)}${rate(r.rates.prefill)}`],
    [
      "time to first token",
      `${ms(r.timeToFirstTokenMs)} (image encoding + prefill + first token${r.image?.method === "estimated" || r.prefill.method === "estimated" ? ", estimated" : ""})`,
    ],
    [
      "time to first token, next chat turn",
      `${ms(r.nextTurn.ms)}${estimated(r.nextTurn.method)}: ${r.nextTurn.newPositions} new positions after the ${r.nextTurn.cachedPositions} the KV-cache holds (prompt caching)`,
    ],
    [
      "decode (pipelined, as generate() runs)",
      `${num(r.decode.tokensPerSecond)} tokens/s at context ${r.decode.context}: ${ms(r.decode.msPerToken.median)} ±${percent(r.decode.msPerToken.spread)} per token over ${r.decode.steps} tokens${rate(r.rates.decode)}`,
    ],
    [
      "decode, one token at a time",
      `${num(r.decode.unpipelined.tokensPerSecond)} tokens/s: ${ms(r.decode.unpipelined.msPerToken.median)} ±${percent(r.decode.unpipelined.msPerToken.spread)} per token`,
    ],
    ...r.batches.map((b) => [
      `decode, batch ${b.size}`,
      `${num(b.tokensPerSecond)} tokens/s in all (${num(b.tokensPerSecond / r.batches[0].tokensPerSecond)}× batch ${r.batches[0].size}): ${ms(b.msPerStep.median)} a step, ${num(b.dispatchesPerStep)} dispatches`,
    ]),
    ["peak GPU memory", bytes(r.peakMemoryBytes)],
    ["dispatches per decoded token", `${num(r.perToken.dispatches)} (${num(r.perToken.dispatchesPerLayer)} per decoder layer)`],
    ["submits per decoded token", num(r.perToken.submits)],
    ["bind groups made per decoded token", num(r.perToken.bindGroups)],
    ["weight bytes read per token / decoder weight bytes", `${r.perToken.weightReadRatio.toFixed(3)} (${bytes(r.perToken.weightBytesRead)} of ${bytes(r.decoderWeightBytes)})`],
    ["CPU time recording a token", `${ms(r.perToken.recordMs.median)} ±${percent(r.perToken.recordMs.spread)} (the first, which captures the step: ${ms(r.perToken.warmupRecordMs)})`],
    [
      "CPU time per dispatch",
      `${num(r.perToken.recordUsPerDispatch)} µs; Dawn's own, prebuilt, in passes as long: ${num(r.perToken.dawnFloorUsPerDispatch.median)} µs (${(r.perToken.recordUsPerDispatch / r.perToken.dawnFloorUsPerDispatch.median).toFixed(2)}×)`,
    ],
  );
  return table(["", r.model], rows);
}

function rate(r: { gflops?: number; gbps?: number; fraction: number; of: string } | null): string {
  if (!r) return "";
  const achieved = r.gflops !== undefined ? `${num(r.gflops)} GFLOP/s` : `${num(r.gbps ?? 0)} GB/s`;
  return `; ${achieved} = ${percent(r.fraction)} of ${r.of}`;
}

/**
 * What each benchmark case's output must be (check.ts says how it is compared): the kernel's
 * float64 reference at a sample of its outputs, within the tests' bound for that kernel.
 *
 *   matmul          MATMUL_ROWS rows × MATMUL_COLUMNS columns of C, Higham's dot-product bound
 *   quantized matvec  every row of A at MATMUL_COLUMNS outputs, the weights dequantized in float64
 *                   (kernels/quant/blocks.ts): (K + 8)·2^-24·Σ|a·w|, as in the tests
 *                   (a worst case growing with K: ~1% of a typical output at K = 4096, where it
 *                   catches misplaced, missing or scaled blocks but not one dropped term)
 *   gatedLinear     the same sample of silu(x·gateᵀ)·(x·upᵀ), that bound carried through
 *   qkvLinear       the same sample of each weight's columns, the matmul bound
 *   attention       every head of QUERIES query positions, the output dtype's tolerance
 *   row-wise ops    ROWS whole rows (norms, softmax, activations, add, rope, embedding): the
 *                   tests' tolerance (f16's for the norms when their weights are f16, RoPE's
 *                   angle bound), exact for the embedding lookup
 *   writeKV         ROWS appended rows in every kv head, exact after rounding to the cache dtype
 *   patchEmbed      every token at CHANNELS output channels, the f32 tolerance
 *   argmax, sample  the id itself (sampling: within float32 rounding of a boundary, see below)
 */
import { attentionReference, attentionTolerance } from "../kernels/attention/reference.js";
import { attentionProblem, type AttentionOptions } from "../kernels/attention/problem.js";
import { argmaxReference } from "../kernels/argmax.js";
import { writeKVReference } from "../kernels/kv_cache.js";
import { gatedErrorBounds, gatedReference } from "../kernels/matmul/gated_matvec.js";
import { matmulErrorBounds, matmulReference, type MatmulShape } from "../kernels/matmul/reference.js";
import { patchEmbedReference, type PatchEmbedWeights } from "../kernels/patch_embed.js";
import { dequantize, type QuantizedType } from "../kernels/quant/blocks.js";
import { quantizedRowBytes } from "../kernels/quant/matvec_common.js";
import { ropeReference, ropeTolerance } from "../kernels/rope.js";
import { drawReference, sampleProbabilitiesReference, sampleReference, uniform, type SampleOptions } from "../kernels/sample/index.js";
import { EXACT, TOLERANCE, toleranceBounds, type Tolerance } from "../kernels/tolerance.js";
import type { RowPart } from "../models/linear.js";
import { roundToF16, roundToF32 } from "../tensor/dtype.js";
import type { Tensor } from "../tensor/tensor.js";
import { compareId, compareOutput, compareRows, readAll, readRows, sampleIndices, type OutputCheck } from "./check.js";

const ROWS = 8;
const MATMUL_ROWS = 8;
const MATMUL_COLUMNS = 64;
const QUERIES = 4;
const CHANNELS = 16;

/** Rows of a matrix stored in row parts (a weight, an embedding table), by their row in the whole. */
async function readPartRows(parts: readonly RowPart<Tensor>[], rows: readonly number[]): Promise<Float64Array> {
  const cols = parts[0].weight.dim(1);
  const out = new Float64Array(rows.length * cols);
  for (const part of parts) {
    const inPart = rows.map((row, i) => ({ i, local: row - part.rowStart })).filter(({ local }) => local >= 0 && local < part.weight.dim(0));
    if (inPart.length === 0) continue;
    const values = await readRows(part.weight, inPart.map((r) => r.local));
    inPart.forEach(({ i }, j) => out.set(values.subarray(j * cols, (j + 1) * cols), i * cols));
  }
  return out;
}

/** The bias entries of a weight in row parts, at these rows of the whole (null without bias). */
async function readPartBias(parts: readonly RowPart<Tensor>[], rows: readonly number[]): Promise<Float64Array | null> {
  if (parts[0].bias === null) return null;
  const out = new Float64Array(rows.length);
  for (const part of parts) {
    const bias = await readAll(part.bias!);
    rows.forEach((row, i) => {
      if (row >= part.rowStart && row < part.rowStart + bias.length) out[i] = bias[row - part.rowStart];
    });
  }
  return out;
}

/** C = A·Bᵀ (+ bias) with B in row parts: sampled rows and columns of C. */
export async function checkMatmul(a: Tensor, parts: readonly RowPart<Tensor>[], out: Tensor): Promise<OutputCheck> {
  const [M, K] = [a.dim(0), a.dim(1)];
  const N = out.dim(1);
  const rows = sampleIndices(M, MATMUL_ROWS);
  const columns = sampleIndices(N, MATMUL_COLUMNS);
  const aRows = await readRows(a, rows);
  const bRows = await readPartRows(parts, columns);
  const bias = await readPartBias(parts, columns);
  const outRows = await readRows(out, rows);
  const actual = Float64Array.from({ length: rows.length * columns.length }, (_, i) => outRows[Math.floor(i / columns.length) * N + columns[i % columns.length]]);
  const shape: MatmulShape = { batch: 1, M: rows.length, N: columns.length, K, batchedB: false };
  const expected = matmulReference(aRows, bRows, bias, shape);
  const bounds = matmulErrorBounds(aRows, bRows, bias, shape, out.dtype);
  return compareOutput(actual, expected, bounds, (i) => `[${rows[Math.floor(i / columns.length)]}, ${columns[i % columns.length]}]`);
}

/** C = A·Wᵀ with W quantized (its bytes kept on the CPU, row after row): every row of C at sampled columns. */
export async function checkQuantizedMatvec(a: Tensor, type: QuantizedType, bytes: Uint8Array, out: Tensor): Promise<OutputCheck> {
  const [M, K] = [a.dim(0), a.dim(1)];
  const N = out.dim(1);
  const columns = sampleIndices(N, MATMUL_COLUMNS);
  const as = await readAll(a);
  const cs = await readAll(out);
  const rowBytes = quantizedRowBytes(type, K);
  const expected = new Float64Array(M * columns.length);
  const bounds = new Float64Array(M * columns.length);
  const actual = new Float64Array(M * columns.length);
  columns.forEach((n, j) => {
    const w = dequantize(type, bytes.subarray(n * rowBytes, (n + 1) * rowBytes), K);
    for (let m = 0; m < M; m++) {
      let sum = 0;
      let magnitude = 0;
      for (let k = 0; k < K; k++) {
        sum += as[m * K + k] * w[k];
        magnitude += Math.abs(as[m * K + k] * w[k]);
      }
      expected[m * columns.length + j] = sum;
      bounds[m * columns.length + j] = (K + 8) * 2 ** -24 * magnitude;
      actual[m * columns.length + j] = cs[m * N + n];
    }
  });
  return compareOutput(actual, expected, bounds, (i) => `[${Math.floor(i / columns.length)}, ${columns[i % columns.length]}]`);
}

/** Sampled rows and columns of out [M, N] as one array, with their names. */
async function sampledOutput(out: Tensor, rows: readonly number[], columns: readonly number[], firstColumn = 0) {
  const width = out.dim(1);
  const outRows = await readRows(out, rows);
  const actual = Float64Array.from({ length: rows.length * columns.length }, (_, i) => outRows[Math.floor(i / columns.length) * width + firstColumn + columns[i % columns.length]]);
  return { actual, at: (i: number) => `[${rows[Math.floor(i / columns.length)]}, ${firstColumn + columns[i % columns.length]}]` };
}

/** silu(x·gateᵀ)·(x·upᵀ): sampled rows and columns. */
export async function checkGated(x: Tensor, gate: Tensor, up: Tensor, out: Tensor): Promise<OutputCheck> {
  const K = x.dim(1);
  const rows = sampleIndices(x.dim(0), MATMUL_ROWS);
  const columns = sampleIndices(out.dim(1), MATMUL_COLUMNS);
  const [xs, g, u] = [await readRows(x, rows), await readRows(gate, columns), await readRows(up, columns)];
  const { actual, at } = await sampledOutput(out, rows, columns);
  const dims = { M: rows.length, N: columns.length, K };
  return compareOutput(actual, gatedReference(xs, g, u, null, null, dims, "silu"), gatedErrorBounds(xs, g, u, null, null, dims, "silu", out.dtype), at);
}

/** [x·w₀ᵀ | x·w₁ᵀ | ...]: sampled rows, and sampled columns of each weight's part. */
export async function checkQkv(x: Tensor, weights: readonly Tensor[], out: Tensor): Promise<OutputCheck> {
  const K = x.dim(1);
  const rows = sampleIndices(x.dim(0), MATMUL_ROWS);
  const xs = await readRows(x, rows);
  const parts: { actual: Float64Array; expected: Float64Array; bounds: Float64Array; at: (i: number) => string }[] = [];
  let first = 0;
  for (const w of weights) {
    const columns = sampleIndices(w.dim(0), Math.ceil(MATMUL_COLUMNS / weights.length));
    const ws = await readRows(w, columns);
    const shape: MatmulShape = { batch: 1, M: rows.length, N: columns.length, K, batchedB: false };
    parts.push({ ...(await sampledOutput(out, rows, columns, first)), expected: matmulReference(xs, ws, null, shape), bounds: matmulErrorBounds(xs, ws, null, shape, out.dtype) });
    first += w.dim(0);
  }
  const join = (key: "actual" | "expected" | "bounds") => Float64Array.from(parts.flatMap((p) => Array.from(p[key])));
  const offsets = parts.map((_, j) => parts.slice(0, j).reduce((n, p) => n + p.actual.length, 0));
  const at = (i: number) => {
    const j = offsets.findLastIndex((o) => o <= i);
    return parts[j].at(i - offsets[j]);
  };
  return compareOutput(join("actual"), join("expected"), join("bounds"), at);
}

/** Attention: every head of sampled query positions, each against the reference for that one query. */
export async function checkAttention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions, out: Tensor): Promise<OutputCheck> {
  const [S, H, D] = q.shape;
  const { queryOffset } = attentionProblem("bench check", q, k, v, options);
  const queries = sampleIndices(S, QUERIES);
  const [qRows, outRows] = [await readRows(q, queries), await readRows(out, queries)];
  const [kHost, vHost] = [{ values: await readAll(k), shape: k.shape }, { values: await readAll(v), shape: v.shape }];
  const rowSize = H * D;
  const expected = new Float64Array(queries.length * rowSize);
  queries.forEach((query, i) => {
    const qRow = { values: qRows.subarray(i * rowSize, (i + 1) * rowSize), shape: [1, H, D] };
    expected.set(attentionReference(qRow, kHost, vHost, { ...options, queryOffset: queryOffset + query }), i * rowSize);
  });
  const bounds = toleranceBounds(expected, attentionTolerance(out.dtype));
  return compareOutput(outRows, expected, bounds, (i) => `[${queries[Math.floor(i / rowSize)]}, ${Math.floor(i / D) % H}, ${i % D}]`);
}

/**
 * A kernel that maps each row of its inputs (along the first dimension) to the same row of its
 * output: sampled rows of `out` against `reference` of the same rows of `inputs`.
 */
export async function checkRows(
  out: Tensor,
  inputs: readonly Tensor[],
  reference: (inputRows: Float64Array[], rows: readonly number[]) => { expected: Float64Array; tolerance: Tolerance },
): Promise<OutputCheck> {
  const rows = sampleIndices(out.dim(0), ROWS);
  const inputRows: Float64Array[] = [];
  for (const input of inputs) inputRows.push(await readRows(input, rows));
  const { expected, tolerance } = reference(inputRows, rows);
  const actual = await readRows(out, rows);
  return compareRows(actual, expected, toleranceBounds(expected, tolerance), rows, out.size / out.dim(0));
}

/** RoPE: sampled tokens, each rotated at its own position; the tolerance grows with the angle (ropeTolerance). */
export async function checkRope(x: Tensor, out: Tensor, theta: number, position: number): Promise<OutputCheck> {
  const [, H, D] = x.shape;
  return checkRows(out, [x], ([xs], tokens) => {
    const expected = new Float64Array(xs.length);
    tokens.forEach((s, i) => expected.set(ropeReference(xs.subarray(i * H * D, (i + 1) * H * D), [1, H, D], theta, position + s), i * H * D));
    return { expected, tolerance: ropeTolerance(TOLERANCE.f32, xs, position + tokens[tokens.length - 1]) };
  });
}

/** writeKV: the rows it appended at `position`, read from the cache in every kv head, exact after rounding to the cache's dtype. */
export async function checkWriteKV(rows: Tensor, cache: Tensor, position: number): Promise<OutputCheck> {
  const [S, kvHeads, D] = rows.shape;
  const capacity = cache.dim(1);
  const sampled = sampleIndices(S, ROWS);
  const rowValues = await readRows(rows, sampled);
  // The sampled positions of each kv head, as rows of the cache seen as [H_kv · capacity, D].
  const cacheRows = Array.from({ length: kvHeads }, (_, h) => sampled.map((s) => h * capacity + position + s)).flat();
  const flat = cache.reshape([kvHeads * capacity, D]);
  const actual = await readRows(flat, cacheRows).finally(() => flat.dispose());
  const written = writeKVReference(new Float64Array(kvHeads * sampled.length * D), [kvHeads, sampled.length, D], rowValues, 0);
  const expected = cache.dtype === "f16" ? roundToF16(written) : roundToF32(written);
  const label = (i: number) => `[${Math.floor(i / (sampled.length * D))}, ${position + sampled[Math.floor(i / D) % sampled.length]}, ${i % D}]`;
  return compareOutput(actual, expected, toleranceBounds(expected, EXACT), label);
}

/** The embedding lookup: sampled output rows against the table rows their ids name (only those are read back). */
export async function checkEmbedding(ids: Tensor, parts: readonly RowPart<Tensor>[], out: Tensor): Promise<OutputCheck> {
  const idValues = await readAll(ids);
  const rows = sampleIndices(ids.size, ROWS);
  const expected = await readPartRows(parts, rows.map((t) => idValues[t]));
  const actual = await readRows(out, rows);
  return compareRows(actual, expected, toleranceBounds(expected, EXACT), rows, out.dim(1));
}

/** CLIP's patch embedding: every token at sampled output channels, the reference run on just those channels' weights. */
export async function checkPatchEmbed(pixels: Tensor, weights: PatchEmbedWeights, out: Tensor): Promise<OutputCheck> {
  const [hidden, , patch] = weights.patchWeight.shape;
  const tokens = out.dim(1);
  const channels = sampleIndices(hidden, CHANNELS);
  const pick = (values: Float64Array, rowsOf: number) =>
    Float64Array.from({ length: rowsOf * channels.length }, (_, i) => values[Math.floor(i / channels.length) * hidden + channels[i % channels.length]]);
  const kernel = weights.patchWeight.reshape([hidden, -1]);
  const weight = await readRows(kernel, channels).finally(() => kernel.dispose());
  const expected = patchEmbedReference({
    pixels: await readAll(pixels),
    shape: pixels.shape as [number, number, number, number],
    weight,
    patch,
    hidden: channels.length,
    bias: weights.patchBias ? pick(await readAll(weights.patchBias), 1) : undefined,
    classEmbedding: pick(await readAll(weights.classEmbedding), 1),
    positionEmbedding: pick(await readAll(weights.positionEmbedding), tokens),
  });
  const actual = pick(await readAll(out), out.size / hidden);
  const label = (i: number) => `[${Math.floor(i / (tokens * channels.length))}, ${Math.floor(i / channels.length) % tokens}, ${channels[i % channels.length]}]`;
  return compareOutput(actual, expected, toleranceBounds(expected, TOLERANCE.f32), label);
}

/** argmax of each row: exactly the reference's index (the same values, the same tie rule). */
export async function checkArgmax(x: Tensor, out: Tensor): Promise<OutputCheck> {
  const [values, [id]] = [await readAll(x), await out.read()];
  return compareId(id, [argmaxReference(values, 1, x.size)[0]]);
}

/**
 * Where u or top_p may sit from a cumulative boundary and still be too close to tell: both
 * sampler versions (kernels/sample/) promise float32 sums within ~1e-7 of the float64
 * reference's; 1e-6 is ten times that. A wrong draw misses by a token's whole probability
 * (~3e-5 on average at V = 32000, far more after top-k).
 */
const SAMPLE_NUDGE = 1e-6;

/**
 * sampleToken: the reference's id. With temperature > 0 the kernel may pick a neighbour when u
 * or top_p falls within float32 rounding of a cumulative boundary, so an id that differs is
 * wrong only if the reference also disagrees with u moved by ±SAMPLE_NUDGE and with top_p
 * scaled by 1 ± SAMPLE_NUDGE (greedy has no such margin: it must be the argmax).
 */
export async function checkSample(logits: Tensor, options: SampleOptions, out: Tensor): Promise<OutputCheck> {
  const [values, [id]] = [await readAll(logits), await out.read()];
  const expected = sampleReference(values, options);
  if (id === expected || options.temperature === 0) return compareId(id, [expected]);
  const u = uniform(options.seed, options.step);
  const probabilities = sampleProbabilitiesReference(values, options);
  const nudgedU = [u - SAMPLE_NUDGE, u + SAMPLE_NUDGE].map((nu) => drawReference(probabilities, Math.min(Math.max(nu, 0), 1 - 2 ** -24)));
  const topP = options.topP ?? 1;
  const nudgedTopP = topP < 1 ? [topP * (1 - SAMPLE_NUDGE), Math.min(topP * (1 + SAMPLE_NUDGE), 1)] : [];
  const nudgedP = nudgedTopP.map((p) => drawReference(sampleProbabilitiesReference(values, { ...options, topP: p }), u));
  return compareId(id, [expected, ...nudgedU, ...nudgedP]);
}

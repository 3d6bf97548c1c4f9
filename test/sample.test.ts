import { describe, expect, it } from "vitest";
import {
  drawReference,
  processLogitsReference,
  sampleProbabilitiesReference,
  sampleReference,
  sampleToken,
  uniform,
  type SampleOptions,
} from "../src/kernels/sample/index.js";
import { ShapeError } from "../src/tensor/errors.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { floatDtypes, randint, randn, rng, SEED, testGpu, upload } from "./helpers.js";

type Options = SampleOptions & { history?: number[] };

/**
 * Where the float32 kernel may legitimately choose differently from the float64 reference: u
 * within EPSILON of a cumulative boundary, top_p within a relative EPSILON of a token's
 * "mass above it", or two different scores so close that float32 may tie or swap them where
 * it matters (the top-k threshold, the greedy maximum). The kernel's cumulative probabilities
 * are float32 sums over chunks of ~125 elements plus a 256-way scan: over 4500 draws from flat
 * distributions at V = 32000 (tokens ~3e-5 wide) on lavapipe, the three that fell outside the
 * reference's interval missed it by at most 6.4e-8. 5e-7 leaves a sevenfold margin and still
 * flags few draws.
 */
const EPSILON = 5e-7;

/** The reference's token, and whether the float32 kernel may legitimately differ from it. */
function referenceDraw(values: ArrayLike<number>, options: Options): { id: number; ambiguous: boolean } {
  const probabilities = sampleProbabilitiesReference(values, options);
  const u = uniform(options.seed, options.step);
  const id = drawReference(probabilities, u);
  return { id, ambiguous: ambiguous(values, options, probabilities, u, id) };
}

function ambiguous(values: ArrayLike<number>, options: Options, probabilities: Float64Array, u: number, id: number): boolean {
  if (options.temperature === 0) {
    const scores = Array.from(processLogitsReference(values, options)).sort((a, b) => b - a);
    return scores.length > 1 && nearlyTied(scores[0], scores[1]);
  }
  for (const v of [u - EPSILON, u + EPSILON]) {
    if (drawReference(probabilities, Math.min(Math.max(v, 0), 1 - 2 ** -24)) !== id) return true;
  }
  const topP = options.topP ?? 1;
  if (topP < 1) {
    for (const p of [topP * (1 - EPSILON), Math.min(topP * (1 + EPSILON), 1)]) {
      if (drawReference(sampleProbabilitiesReference(values, { ...options, topP: p }), u) !== id) return true;
    }
  }
  const topK = options.topK ?? 0;
  if (topK > 0 && topK < values.length) {
    const scores = Array.from(processLogitsReference(values, { ...options, topK: 0, topP: 1 })).sort((a, b) => b - a);
    if (nearlyTied(scores[topK - 1], scores[topK])) return true;
  }
  return false;
}

/** Different, but within float32 rounding of each other (equal values tie the same way in both). */
function nearlyTied(a: number, b: number): boolean {
  return a !== b && Math.abs(a - b) <= 1e-6 * Math.max(Math.abs(a), Math.abs(b));
}

describe("sample", async () => {
  const gpu = await testGpu();
  const random = rng();
  const randomSeed = () => Math.floor(random() * 2 ** 32);

  /** Records one sampleToken per case (each with its own logits, history and out), then reads all ids in one go. */
  async function sampleOnGpu(cases: { logits: Tensor; options: Options }[]): Promise<number[]> {
    const outs = cases.map(({ logits, options }) => {
      const { history, ...rest } = options;
      if (!history?.length) return sampleToken(logits, rest);
      const ids = gpu.tensor([...history, 0], [history.length + 1], "u32");
      return sampleToken(logits, { ...rest, history: { ids, length: history.length } });
    });
    const ids = outs.length === 1 ? [await outs[0].read()] : await gpu.read(...outs);
    return ids.map((a) => a[0]);
  }

  /** Draws `count` tokens at steps 0.. of one seed, appending to a history (no penalty: it would change the distribution). */
  async function drawMany(logits: Tensor, options: Omit<Options, "step" | "history">, count: number): Promise<number[]> {
    const history = gpu.empty([count], "u32", { name: "draws" });
    for (let step = 0; step < count; step++) sampleToken(logits, { ...options, step, history: { ids: history, length: step } });
    return Array.from(await history.read());
  }

  it("the WGSL generator gives the same u as uniform(seed, step)", async () => {
    // 65536 equal logits: the drawn id is floor(u · 65536), exactly, so it shows u's top 16 bits.
    const vocab = 65536;
    const logits = gpu.tensor(new Float32Array(vocab), [vocab], "f32");
    const cases = Array.from({ length: 48 }, (_, i) => ({ logits, options: { temperature: 1, seed: randomSeed(), step: i * 977 } }));
    const ids = await sampleOnGpu(cases);
    const expected = cases.map(({ options }) => Math.floor(uniform(options.seed, options.step) * vocab));
    expect(ids, `seed ${SEED}`).toEqual(expected);
  });

  it("a u exactly on a cumulative boundary goes to the token above it", async () => {
    // 1024 equal tokens: token i covers [i/1024, (i+1)/1024), so u = j/1024 must give j, not
    // j - 1. Each thread walks 4 tokens: j a multiple of 4 is a boundary between two threads'
    // chunks, any other j one inside a chunk.
    const vocab = 1024;
    const logits = gpu.tensor(new Float32Array(vocab), [vocab], "f32");
    const seed = randomSeed();
    const betweenChunks: number[] = [];
    const insideChunks: number[] = [];
    for (let step = 0; betweenChunks.length < 4 || insideChunks.length < 4; step++) {
      const j = uniform(seed, step) * vocab;
      if (Number.isInteger(j)) (j % 4 === 0 ? betweenChunks : insideChunks).push(step);
    }
    const steps = [...betweenChunks.slice(0, 4), ...insideChunks.slice(0, 4)];
    const ids = await sampleOnGpu(steps.map((step) => ({ logits, options: { temperature: 1, seed, step } })));
    const expected = steps.map((step) => uniform(seed, step) * vocab);
    expect(ids, `seed ${SEED}`).toEqual(expected);
    expect(steps.map((step) => sampleReference(new Float32Array(vocab), { temperature: 1, seed, step }))).toEqual(expected);
  });

  it("uniform(seed, step) is the stream it has always been, in [0, 1) and even", () => {
    // The stream is part of the API: a seeded generation is reproducible only while it stays put.
    expect([uniform(0, 0), uniform(0, 1), uniform(1, 0), uniform(12345, 678)]).toEqual(PINNED_UNIFORMS);
    let sum = 0;
    const buckets = new Array<number>(10).fill(0);
    const n = 100_000;
    let outside = 0;
    for (let step = 0; step < n; step++) {
      const u = uniform(42, step);
      if (!(u >= 0 && u < 1)) outside++;
      sum += u;
      buckets[Math.floor(u * 10)]++;
    }
    expect(outside).toBe(0);
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.005);
    for (const b of buckets) expect(Math.abs(b - n / 10)).toBeLessThan(600); // ~6.3 standard deviations
  });

  describe("greedy (temperature 0) is the argmax after the penalty", () => {
    for (const dtype of floatDtypes(gpu)) {
      it(`${dtype}: random logits, with and without a penalty`, async () => {
        const cases: { logits: Tensor; values: Float64Array; options: Options }[] = [];
        for (const vocab of [1, 3, 17, 129, 32000]) {
          for (let c = 0; c < 6; c++) {
            const x = upload(gpu, randn(random, vocab, 3), [vocab], dtype);
            const history = c % 2 === 0 ? [] : Array.from(randint(random, 12, vocab));
            const options = { temperature: 0, repetitionPenalty: c % 2 === 0 ? 1 : 1.5, history, seed: randomSeed(), step: c };
            cases.push({ logits: x.t, values: x.values, options });
          }
        }
        const ids = await sampleOnGpu(cases);
        cases.forEach(({ values, options }, i) => {
          const { id, ambiguous } = referenceDraw(values, options);
          if (ambiguous) return;
          const scores = processLogitsReference(values, options);
          const argmax = scores.indexOf(Math.max(...scores));
          expect(ids[i], `case ${i} (seed ${SEED})`).toBe(argmax);
          expect(id).toBe(argmax);
        });
      });
    }

    it("ties go to the first index; the penalty can move the maximum, and applies once per id", async () => {
      const cases: [number[], Options, number][] = [
        [[1, 3, 0, 3, 3], { temperature: 0, seed: 0, step: 0 }, 1],
        [[2, 1.9, 0], { temperature: 0, repetitionPenalty: 1.2, history: [0], seed: 0, step: 0 }, 1], // 2/1.2 < 1.9
        [[-1, -1.1, -5], { temperature: 0, repetitionPenalty: 1.2, history: [0], seed: 0, step: 0 }, 1], // -1·1.2 < -1.1
        // Penalised three times, 2 would fall below 1.5; once, it stays above (2/1.2 = 1.67).
        [[2, 1.5, 0], { temperature: 0, repetitionPenalty: 1.2, history: [0, 0, 0], seed: 0, step: 0 }, 0],
        // A penalty below 1 rewards: -2·0.5 = -1 > -1.5.
        [[-1.5, -2], { temperature: 0, repetitionPenalty: 0.5, history: [1, 1], seed: 0, step: 0 }, 1],
      ];
      const ids = await sampleOnGpu(cases.map(([values, options]) => ({ logits: gpu.tensor(values, [values.length], "f32"), options })));
      cases.forEach(([values, options, expected], i) => {
        expect(sampleReference(values, options), `case ${i}`).toBe(expected);
        expect(ids[i], `case ${i}`).toBe(expected);
      });
    });
  });

  it("the repetition penalty multiplies negative logits, divides positive ones, once per id", () => {
    const scores = processLogitsReference([2, -2, 0.5, -0.5, 3], {
      temperature: 0,
      repetitionPenalty: 2,
      history: [0, 1, 1, 1, 0],
      seed: 0,
      step: 0,
    });
    expect(Array.from(scores)).toEqual([1, -4, 0.5, -0.5, 3]);
  });

  /** The GPU's draws at `count` steps equal the reference's, cover exactly `allowed`, and every allowed id shows up. */
  async function expectDrawsWithin(values: number[], options: Omit<Options, "step">, allowed: number[], count = 150) {
    const ids = await drawMany(gpu.tensor(values, [values.length], "f32"), options, count);
    ids.forEach((id, step) => expect(id, `step ${step} (seed ${SEED})`).toBe(sampleReference(values, { ...options, step })));
    expect([...new Set(ids)].sort((a, b) => a - b)).toEqual(allowed);
  }

  it("top-k keeps every score tied with the k-th", async () => {
    const values = [3, 1, 2, 2, 0, 2];
    const scores = processLogitsReference(values, { temperature: 1, topK: 2, seed: 0, step: 0 });
    expect(Array.from(scores)).toEqual([3, -Infinity, 2, 2, -Infinity, 2]);
    await expectDrawsWithin(values, { temperature: 1, topK: 2, seed: randomSeed() }, [0, 2, 3, 5]);
    await expectDrawsWithin(values, { temperature: 2, topK: 1, seed: randomSeed() }, [0]);
    await expectDrawsWithin(values, { temperature: 3, topK: 5, seed: randomSeed() }, [0, 1, 2, 3, 5]);
    await expectDrawsWithin(values, { temperature: 3, topK: 6, seed: randomSeed() }, [0, 1, 2, 3, 4, 5]);
    // -0 equals 0: it ties with it at the threshold.
    await expectDrawsWithin([1, -0, 0, -1], { temperature: 1, topK: 2, seed: randomSeed() }, [0, 1, 2]);
    await expectDrawsWithin([1, 0, -0, -1], { temperature: 1, topK: 2, seed: randomSeed() }, [0, 1, 2]);
  });

  describe("top-p", () => {
    it("mass exactly reaching top_p: the smallest top set reaching it, ties ordered by index", async () => {
      // Four equal tokens of probability 1/4 (every sum exact): 0.5 is reached by two of them,
      // the two highest indices (a stable ascending sort puts lower indices below).
      const values = [0, -Infinity, 0, 0, -Infinity, 0];
      const scores = processLogitsReference(values, { temperature: 1, topP: 0.5, seed: 0, step: 0 });
      expect(Array.from(scores)).toEqual([-Infinity, -Infinity, -Infinity, 0, -Infinity, 0]);
      await expectDrawsWithin(values, { temperature: 1, topP: 0.5, seed: randomSeed() }, [3, 5]);
      await expectDrawsWithin(values, { temperature: 1, topP: 0.500001, seed: randomSeed() }, [2, 3, 5]);
      await expectDrawsWithin(values, { temperature: 1, topP: 0.499999, seed: randomSeed() }, [3, 5]);
      await expectDrawsWithin(values, { temperature: 1, topP: 0.25, seed: randomSeed() }, [5]);
      await expectDrawsWithin(values, { temperature: 1, topP: 0.75, seed: randomSeed() }, [2, 3, 5]);
      await expectDrawsWithin(values, { temperature: 1, topP: 1, seed: randomSeed() }, [0, 2, 3, 5]);
    });

    it("just below and just above a cumulative boundary", async () => {
      const values = [Math.log(3), Math.log(6), Math.log(1)]; // probabilities 0.3, 0.6, 0.1
      await expectDrawsWithin(values, { temperature: 1, topP: 0.8999, seed: randomSeed() }, [0, 1]);
      await expectDrawsWithin(values, { temperature: 1, topP: 0.9001, seed: randomSeed() }, [0, 1, 2]);
      await expectDrawsWithin(values, { temperature: 1, topP: 0.5999, seed: randomSeed() }, [1]);
      await expectDrawsWithin(values, { temperature: 1, topP: 0.6001, seed: randomSeed() }, [0, 1]);
    });

    it("a dominant token is all that survives a top_p below its probability", async () => {
      const values = Array.from({ length: 129 }, (_, i) => (i === 77 ? 12 : Math.sin(i)));
      await expectDrawsWithin(values, { temperature: 1, topP: 0.9, seed: randomSeed() }, [77], 50);
      await expectDrawsWithin(values, { temperature: 1, topP: 1e-9, seed: randomSeed() }, [77], 50);
      // A hot temperature flattens it enough that others come back.
      const hot = { temperature: 50, topP: 0.9, seed: randomSeed() };
      const kept = sampleProbabilitiesReference(values, { ...hot, step: 0 }).filter((p) => p > 0).length;
      expect(kept).toBeGreaterThan(50);
    });

    it("applies after top-k, to the renormalised survivors", async () => {
      // Probabilities after top-k 3: 4/7, 2/7, 1/7; top_p 0.8 needs the first two (6/7).
      const values = [Math.log(1), Math.log(2), Math.log(4), Math.log(0.5), Math.log(0.25)];
      const options = { temperature: 1, topK: 3, topP: 0.8 };
      const probabilities = sampleProbabilitiesReference(values, { ...options, seed: 0, step: 0 });
      expect(Array.from(probabilities).map((p) => Math.round(p * 3))).toEqual([0, 1, 2, 0, 0]);
      await expectDrawsWithin(values, { ...options, seed: randomSeed() }, [1, 2]);
    });
  });

  describe("the GPU draws the reference's token", () => {
    for (const dtype of floatDtypes(gpu)) {
      for (const vocab of [1, 3, 17, 129, 32000]) {
        it(`${dtype} V=${vocab}: random logits and options, many seeds and steps`, async () => {
          const count = vocab === 32000 ? 20 : 60;
          const cases: { logits: Tensor; values: Float64Array; options: Options }[] = [];
          for (let c = 0; c < count; c++) {
            const x = upload(gpu, randn(random, vocab, [1, 3, 8][c % 3]), [vocab], dtype);
            cases.push({ logits: x.t, values: x.values, options: randomOptions(vocab, c) });
          }
          const ids = await sampleOnGpu(cases);
          let skipped = 0;
          cases.forEach(({ values, options }, i) => {
            const { id, ambiguous } = referenceDraw(values, options);
            if (ambiguous) {
              skipped++;
              return;
            }
            expect(ids[i], `case ${i}: ${JSON.stringify({ ...options, history: options.history?.length })} (seed ${SEED})`).toBe(id);
          });
          // A boundary within EPSILON of u or of top_p is rare; many skips would mean lost precision.
          expect(skipped, `skipped ${skipped} of ${count}`).toBeLessThanOrEqual(2);
        });
      }
    }

    it("V=152064 (a Qwen-sized vocabulary)", async () => {
      const vocab = 152064;
      const cases: { logits: Tensor; values: Float64Array; options: Options }[] = [];
      for (let c = 0; c < 3; c++) {
        const x = upload(gpu, randn(random, vocab, 4), [vocab], "f32");
        cases.push({ logits: x.t, values: x.values, options: randomOptions(vocab, c) });
      }
      const ids = await sampleOnGpu(cases);
      cases.forEach(({ values, options }, i) => {
        const { id, ambiguous } = referenceDraw(values, options);
        if (!ambiguous) expect(ids[i], `case ${i} (seed ${SEED})`).toBe(id);
      });
    });

    it("f16 logits of a whole vocabulary, full of exact ties", async () => {
      if (!gpu.hasF16) return;
      const vocab = 32000;
      const cases: { logits: Tensor; values: Float64Array; options: Options }[] = [];
      for (let c = 0; c < 9; c++) {
        // Scores on a coarse grid: thousands of tokens share each value, also at the top-k and top-p thresholds.
        const x = upload(gpu, Float64Array.from(randn(random, vocab, 2), (v) => Math.round(v * 8) / 8), [vocab], "f16");
        const options = { temperature: 0.5 + random(), topK: [0, 100, 2000][c % 3], topP: [0.9, 0.3, 1][Math.floor(c / 3)], seed: randomSeed(), step: c };
        cases.push({ logits: x.t, values: x.values, options });
      }
      const ids = await sampleOnGpu(cases);
      cases.forEach(({ values, options }, i) => {
        const { id, ambiguous } = referenceDraw(values, options);
        if (!ambiguous) expect(ids[i], `case ${i} (seed ${SEED})`).toBe(id);
      });
    });
  });

  /** Options that exercise every step: temperatures hot and cold, top-k and top-p on and off, a penalty with repeated ids. */
  function randomOptions(vocab: number, c: number): Options {
    const topKs = [0, 1, 5, 50, vocab, vocab + 3];
    const topPs = [1, 0.9, 0.5, 0.05, 0.999];
    const penalised = c % 4 !== 0;
    const historyLength = penalised ? Math.floor(random() * 40) : 0;
    const history = Array.from(randint(random, historyLength, vocab));
    if (historyLength > 2) history.push(history[0], history[1]); // repeated ids
    return {
      temperature: [0.3, 0.7, 1, 1.8][c % 4],
      topK: topKs[Math.floor(random() * topKs.length)],
      topP: topPs[Math.floor(random() * topPs.length)],
      repetitionPenalty: penalised ? [1.3, 0.8, 2][c % 3] : 1,
      history,
      seed: randomSeed(),
      step: Math.floor(random() * 100_000),
    };
  }

  it("a seeded run is reproducible, another seed gives another run, and the history grows", async () => {
    const { t: logits, values } = upload(gpu, randn(random, 500, 2), [500], "f32");
    const options = { temperature: 1.5, topK: 100, topP: 0.95, repetitionPenalty: 1.3 };
    // The decode loop: each step's id is appended and penalised at the next step.
    async function run(seed: number, prompt: number[]): Promise<number[]> {
      const steps = 30;
      const history = gpu.tensor([...prompt, ...new Array(steps).fill(0)], [prompt.length + steps], "u32");
      for (let step = 0; step < steps; step++) {
        sampleToken(logits, { ...options, seed, step, history: { ids: history, length: prompt.length + step } });
      }
      return Array.from(await history.read());
    }
    const prompt = [5, 17, 5, 499];
    const seed = randomSeed();
    const first = await run(seed, prompt);
    expect(await run(seed, prompt)).toEqual(first);
    expect(await run((seed ^ 1) >>> 0, prompt)).not.toEqual(first);
    expect(first.slice(0, prompt.length)).toEqual(prompt);

    // The reference, step by step, sees the same growing history.
    const history = [...prompt];
    for (let step = 0; step < 30; step++) {
      const stepOptions = { ...options, seed, step, history };
      const { id, ambiguous } = referenceDraw(values, stepOptions);
      if (ambiguous) break; // the rest of the run may differ
      expect(first[prompt.length + step], `step ${step} (seed ${SEED})`).toBe(id);
      history.push(id);
    }
  });

  it("the draws follow the reference distribution (chi-square)", async () => {
    const values = [1.2, -0.3, 2.0, 0.4, 1.9, -3, 0.8, 1.0];
    const options = { temperature: 0.8, topK: 6, topP: 0.95, seed: randomSeed() };
    const probabilities = sampleProbabilitiesReference(values, { ...options, step: 0 });
    const count = 1500;
    const draws = await drawMany(gpu.tensor(values, [values.length], "f32"), options, count);
    const f32Values = Float32Array.from(values);
    let skipped = 0;
    draws.forEach((id, step) => {
      const expected = referenceDraw(f32Values, { ...options, step });
      if (expected.ambiguous) skipped++;
      else expect(id, `step ${step} (seed ${SEED})`).toBe(expected.id);
    });
    expect(skipped).toBeLessThanOrEqual(2);
    const observed = new Array<number>(values.length).fill(0);
    for (const id of draws) observed[id]++;
    let chiSquare = 0;
    let categories = 0;
    probabilities.forEach((p, i) => {
      if (p === 0) {
        expect(observed[i], `token ${i} was removed but drawn`).toBe(0);
        return;
      }
      categories++;
      chiSquare += (observed[i] - count * p) ** 2 / (count * p);
    });
    expect(categories).toBe(5); // top-k 6, then top-p drops the least likely
    // 4 degrees of freedom: P(χ² > 33) ≈ 1e-6, so a fair sampler essentially never fails this.
    expect(chiSquare, `observed ${observed}, expected ${Array.from(probabilities, (p) => (p * count).toFixed(0))} (seed ${SEED})`).toBeLessThan(33);
  });

  it("writes into a given out tensor and appends at the history length", async () => {
    const logits = gpu.tensor([0, 0, 9, 0], [1, 4], "f32");
    const out = gpu.empty([1], "u32");
    const history = gpu.tensor([3, 3, 1, 1, 1], [5], "u32");
    const returned = sampleToken(logits, { temperature: 0.5, seed: 1, step: 2, out, history: { ids: history, length: 2 } });
    expect(returned).toBe(out);
    expect(Array.from(await out.read())).toEqual([2]);
    expect(Array.from(await history.read())).toEqual([3, 3, 2, 1, 1]);
  });

  it("samples a row of [R, V] logits into an element of a shared tokens tensor, as a batch does", async () => {
    // Three sequences' logits one row each; each row's argmax is at its own place.
    const [R, V] = [3, 129];
    const values = randn(random, R * V);
    for (let r = 0; r < R; r++) values[r * V + 17 * r + 5] = 10;
    const { t: logits, values: held } = upload(gpu, values, [R, V], "f32");
    const rowAlone = (r: number) => gpu.tensor(held.subarray(r * V, (r + 1) * V), [V], "f32");
    const start = [100, 101, 102, 103, 104, 105];
    const seeded = { temperature: 1.5, topK: 40, topP: 0.9, repetitionPenalty: 1.3, seed: randomSeed(), step: Math.floor(random() * 1000) };
    for (const options of [{ temperature: 0, seed: 0, step: 0 }, seeded]) {
      const what = `${options.temperature === 0 ? "greedy" : "seeded"} (seed ${SEED})`;
      const tokens = gpu.tensor(start, [6], "u32");
      // The history logic is the same whatever the row: both runs penalise and append alike.
      const prompt = [39, 22, 39];
      const [ids, aloneIds] = [0, 1].map(() => gpu.tensor([...prompt, 0, 0], [5], "u32"));
      expect(sampleToken(logits, { ...options, row: 2, out: tokens, outIndex: 4, history: { ids, length: 3 } })).toBe(tokens);
      const alone = sampleToken(rowAlone(2), { ...options, history: { ids: aloneIds, length: 3 } });
      const [got, expected] = await gpu.read(tokens, alone);
      expect(Array.from(got), what).toEqual([...start.slice(0, 4), expected[0], start[5]]);
      expect(Array.from(await ids.read()), what).toEqual(Array.from(await aloneIds.read()));
      if (options.temperature === 0) expect(got[4], what).toBe(39);
      // Every row, each into its own element (row 0 by default, into element 0 by default).
      const all = gpu.tensor(start, [6], "u32");
      sampleToken(logits, { ...options, out: all });
      for (const r of [1, 2]) sampleToken(logits, { ...options, row: r, out: all, outIndex: r + 2 });
      const each = await Promise.all([0, 1, 2].map(async (r) => (await sampleToken(rowAlone(r), options).read())[0]));
      expect(Array.from(await all.read()), what).toEqual([each[0], 101, 102, each[1], each[2], 105]);
      if (options.temperature === 0) expect(each).toEqual([5, 22, 39]);
    }
  });

  it("rejects bad options and tensors before any dispatch", () => {
    const logits = gpu.tensor(new Float32Array(10), [10], "f32");
    const ids = gpu.tensor(new Uint32Array(4), [4], "u32");
    const empty = gpu.empty([0], "f32");
    const base = { temperature: 1, seed: 0, step: 0 };
    const before = gpu.dispatchCount;
    const bad: [Partial<Parameters<typeof sampleToken>[1]>, typeof RangeError | typeof ShapeError, RegExp][] = [
      [{ temperature: -1 }, RangeError, /temperature/],
      [{ temperature: Number.NaN }, RangeError, /temperature/],
      [{ temperature: Infinity }, RangeError, /temperature/],
      [{ temperature: 1e-40 }, RangeError, /too small/],
      [{ topK: -1 }, RangeError, /topK/],
      [{ topK: 2.5 }, RangeError, /topK/],
      [{ topP: 0 }, RangeError, /topP/],
      [{ topP: 1.01 }, RangeError, /topP/],
      [{ topP: Number.NaN }, RangeError, /topP/],
      [{ repetitionPenalty: 0 }, RangeError, /repetitionPenalty/],
      [{ repetitionPenalty: -2 }, RangeError, /repetitionPenalty/],
      [{ seed: -1 }, RangeError, /seed/],
      [{ seed: 2 ** 32 }, RangeError, /seed/],
      [{ step: 0.5 }, RangeError, /step/],
      [{ history: { ids, length: 4 } }, RangeError, /history length 4/],
      [{ history: { ids, length: -1 } }, RangeError, /history length/],
      [{ history: { ids: gpu.tensor(new Float32Array(4), [4], "f32"), length: 0 } }, ShapeError, /history ids/],
      [{ history: { ids: gpu.tensor(new Uint32Array(4), [2, 2], "u32"), length: 0 } }, ShapeError, /history ids/],
      [{ out: gpu.tensor(new Float32Array(1), [1], "f32") }, ShapeError, /out/],
      [{ out: gpu.tensor(new Uint32Array(2), [2, 1], "u32") }, ShapeError, /out u32\[2x1\] must be u32 \[n\]/],
      [{ out: gpu.tensor(new Uint32Array(6), [6], "u32"), outIndex: 6 }, ShapeError, /outIndex 6 must be an integer in \[0, 6\), an element of out u32\[6\]/],
      [{ out: gpu.tensor(new Uint32Array(6), [6], "u32"), outIndex: -1 }, ShapeError, /outIndex -1 must be an integer/],
      [{ out: gpu.tensor(new Uint32Array(6), [6], "u32"), outIndex: 1.5 }, ShapeError, /outIndex 1.5 must be an integer/],
      [{ outIndex: 1 }, ShapeError, /outIndex 1 needs an out tensor/],
      [{ row: 1 }, ShapeError, /row 1 must be an integer in \[0, 1\), a row of logits f32\[10\]/],
      [{ out: ids.slice(0, 1), history: { ids, length: 0 } }, ShapeError, /shares a buffer/],
    ];
    for (const [options, error, message] of bad) {
      expect(() => sampleToken(logits, { ...base, ...options }), JSON.stringify(options)).toThrow(error);
      expect(() => sampleToken(logits, { ...base, ...options })).toThrow(message);
    }
    expect(() => sampleToken(gpu.tensor(new Float32Array(6), [1, 2, 3], "f32"), base)).toThrow(/must be \[V\] or \[R, V\]/);
    const rows = gpu.tensor(new Float32Array(6), [3, 2], "f32");
    for (const row of [3, -1, 0.5]) {
      expect(() => sampleToken(rows, { ...base, row })).toThrow(ShapeError);
      expect(() => sampleToken(rows, { ...base, row })).toThrow(new RegExp(`sampleToken: row ${row} must be an integer in \\[0, 3\\), a row of logits f32\\[3x2\\]`));
    }
    expect(() => sampleToken(gpu.empty([3, 0], "f32"), base)).toThrow(/empty/);
    expect(() => sampleToken(gpu.tensor(new Int32Array(6), [6], "i32"), base)).toThrow(/f32 or f16/);
    expect(() => sampleToken(empty, base)).toThrow(/empty/);
    expect(gpu.dispatchCount).toBe(before);
    expect(() => sampleReference([1, 2], { ...base, history: [2] })).toThrow(RangeError);
    expect(() => sampleReference([1, 2], { ...base, topP: 0 })).toThrow(RangeError);
  });
});

/** uniform(0, 0), uniform(0, 1), uniform(1, 0), uniform(12345, 678) as first defined. */
const PINNED_UNIFORMS = [0.19039934873580933, 0.9108019471168518, 0.3686981797218323, 0.905382513999939];

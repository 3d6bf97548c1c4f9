/**
 * Every version of the sampler (kernels/sample/index.ts) against the float64 reference and
 * against each other: vocabularies around v2's block size, every option alone and together,
 * exact ties across blocks, removed and non-finite scores, run-time step and history length,
 * rows of a batch, and a step captured once and replayed. (test/sample.test.ts tests the
 * runtime's own sampleToken, and the reference, in depth.)
 */
import { describe, expect, it } from "vitest";
import {
  chooseSampleVersion,
  processLogitsReference,
  SAMPLE_BLOCK,
  SAMPLE_VERSIONS,
  sampleToken,
  sampleProbabilitiesReference,
  drawReference,
  uniform,
  type SampleOptions,
  type SampleTokenOptions,
  type SampleVersionName,
} from "../src/kernels/sample/index.js";
import type { StepValue } from "../src/kernels/step_value.js";
import { ShapeError } from "../src/tensor/errors.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { randint, randn, rng, SEED, testGpu, upload } from "./helpers.js";
import { launchesOf } from "./launches.js";

const VERSIONS = Object.keys(SAMPLE_VERSIONS) as SampleVersionName[];

type Options = SampleOptions & { history?: number[] };

/** Within this of a cumulative boundary (u, or top_p relative) the float32 draw may go either way (see sample.test.ts). */
const EPSILON = 5e-7;

/** The reference's token, and whether the float32 kernels may legitimately choose another. */
function referenceDraw(values: ArrayLike<number>, options: Options): { id: number; ambiguous: boolean } {
  const u = uniform(options.seed, options.step);
  const probabilities = sampleProbabilitiesReference(values, options);
  const id = drawReference(probabilities, u);
  if (options.temperature === 0) {
    const scores = Array.from(processLogitsReference(values, options)).sort((a, b) => b - a);
    return { id, ambiguous: scores.length > 1 && scores[0] !== scores[1] && scores[0] - scores[1] <= 1e-6 * Math.abs(scores[0]) };
  }
  const nudged = [u - EPSILON, u + EPSILON].map((v) => drawReference(probabilities, Math.min(Math.max(v, 0), 1 - 2 ** -24)));
  const topP = options.topP ?? 1;
  for (const p of topP < 1 ? [topP * (1 - EPSILON), Math.min(topP * (1 + EPSILON), 1)] : []) {
    nudged.push(drawReference(sampleProbabilitiesReference(values, { ...options, topP: p }), u));
  }
  return { id, ambiguous: nudged.some((other) => other !== id) };
}

describe("sampler versions", async () => {
  const gpu = await testGpu();
  const random = rng();
  const randomSeed = () => Math.floor(random() * 2 ** 32);

  /** Records `version` once per case (each with its own history), then reads every id in one go. */
  async function run(version: SampleVersionName, cases: { logits: Tensor; options: Options }[]): Promise<number[]> {
    const outs = cases.map(({ logits, options }) => {
      const { history = [], ...rest } = options;
      if (history.length === 0) return SAMPLE_VERSIONS[version](logits, rest);
      const ids = gpu.tensor([...history, 0], [history.length + 1], "u32");
      return SAMPLE_VERSIONS[version](logits, { ...rest, history: { ids, length: history.length } });
    });
    const ids = outs.length === 1 ? [await outs[0].read()] : await gpu.read(...outs);
    return ids.map((a) => a[0]);
  }

  /** Every version's ids for the cases equal the reference's (where not ambiguous) and each other's. */
  async function expectReference(cases: { logits: Tensor; values: ArrayLike<number>; options: Options }[], maxAmbiguous = 2) {
    const ids = await Promise.all(VERSIONS.map((version) => run(version, cases)));
    let skipped = 0;
    cases.forEach(({ values, options }, i) => {
      const what = `case ${i}: V=${values.length} ${JSON.stringify({ ...options, history: options.history?.length })} (seed ${SEED})`;
      const { id, ambiguous } = referenceDraw(values, options);
      if (ambiguous) {
        skipped++;
        return;
      }
      VERSIONS.forEach((version, v) => expect(ids[v][i], `${version} ${what}`).toBe(id));
    });
    expect(skipped, `ambiguous ${skipped} of ${cases.length}`).toBeLessThanOrEqual(maxAmbiguous);
  }

  /** Each option alone, then all together (the penalty with repeated ids, top-k and top-p cutting deep). */
  function optionSets(vocab: number): Options[] {
    const history = Array.from(randint(random, 30, vocab));
    history.push(history[0], history[1]);
    const seeded = () => ({ seed: randomSeed(), step: Math.floor(random() * 100_000) });
    return [
      { temperature: 0, ...seeded() },
      { temperature: 0, repetitionPenalty: 1.5, history, ...seeded() },
      { temperature: 0.8, ...seeded() },
      { temperature: 1, topK: Math.min(40, vocab), ...seeded() },
      { temperature: 1.2, topP: 0.9, ...seeded() },
      { temperature: 1, repetitionPenalty: 0.7, history, ...seeded() },
      { temperature: 0.7, topK: Math.max(1, Math.floor(vocab / 3)), topP: 0.5, repetitionPenalty: 1.3, history, ...seeded() },
    ];
  }

  const VOCABS = [1, 3, SAMPLE_BLOCK - 1, SAMPLE_BLOCK, SAMPLE_BLOCK + 1, 32000];
  it(`draw the reference's token at V = ${VOCABS.join(", ")}, greedy, temperature, top-k, top-p, penalty and all of them`, async () => {
    const cases = VOCABS.flatMap((vocab) =>
      optionSets(vocab).map((options) => {
        const { t, values } = upload(gpu, randn(random, vocab, 3), [vocab], "f32");
        return { logits: t, values, options };
      }),
    );
    await expectReference(cases);
  });

  it("at V = 152064 (a Qwen-sized vocabulary)", async () => {
    const vocab = 152064;
    const { t, values } = upload(gpu, randn(random, vocab, 4), [vocab], "f32");
    const [greedy, , , , , , all] = optionSets(vocab);
    await expectReference([greedy, all].map((options) => ({ logits: t, values, options })));
  });

  it("ties in vocabulary order: equal scores across blocks, top-p cutting through them", async () => {
    // Scores on a coarse grid over 5 blocks: thousands share each value, also at the thresholds,
    // and the κ-ties top-p removes (the lowest indices) lie in several blocks.
    // (f16 logits where the adapter has them: the kernels read either.)
    const vocab = 5 * SAMPLE_BLOCK - 7;
    const grid = upload(gpu, Float64Array.from(randn(random, vocab, 1), (v) => Math.round(v * 2) / 2), [vocab], gpu.hasF16 ? "f16" : "f32");
    const flat = new Float64Array(vocab); // one tie of V: top-p keeps its highest indices
    const flatLogits = gpu.tensor(flat, [vocab], "f32");
    const cases = [grid, grid, grid, null, null].map((x, c) => {
      const options = { temperature: 1, topK: [0, 300, 2000, 0, 0][c], topP: [0.5, 0.9, 0.3, 0.5, 0.02][c], seed: randomSeed(), step: c };
      return x ? { logits: x.t, values: x.values, options } : { logits: flatLogits, values: flat, options };
    });
    await expectReference(cases);
    // Over many steps of the flat row with top_p 0.5, every draw lies in the upper half.
    const steps = Array.from({ length: 24 }, (_, step) => ({ logits: flatLogits, values: flat, options: { ...cases[3].options, step } }));
    await expectReference(steps);
    for (const version of VERSIONS) expect(Math.min(...(await run(version, steps))), version).toBeGreaterThanOrEqual(Math.floor(vocab / 2));
  });

  it("never draws a removed (-Infinity) token; a row of nothing but -Infinity gives id 0; NaN and +Infinity give a valid id", async () => {
    const vocab = 3 * SAMPLE_BLOCK + 5;
    const sparse = new Float64Array(vocab).fill(-Infinity);
    const kept = [5, SAMPLE_BLOCK + 1, 3 * SAMPLE_BLOCK + 4];
    for (const i of kept) sparse[i] = random();
    const removed = new Float64Array(vocab).fill(-Infinity);
    const cases = [sparse, sparse, sparse, removed, removed].map((x, c) => {
      const options = { temperature: [1, 1, 0.5, 1, 0][c], topK: [0, 2, 0, 3, 0][c], topP: [1, 1, 0.9, 0.8, 1][c], seed: randomSeed(), step: c };
      return { logits: gpu.tensor(x, [vocab], "f32"), values: x, options };
    });
    await expectReference(cases, 0);
    for (const version of VERSIONS) {
      const steps = Array.from({ length: 16 }, (_, step) => ({ logits: cases[0].logits, options: { ...cases[0].options, step } }));
      for (const id of await run(version, steps)) expect(kept, version).toContain(id);
    }
    // transformers raises on these; the kernels must still give an id in the vocabulary.
    const nan = Float32Array.from({ length: vocab }, (_, i) => (i === 2 * SAMPLE_BLOCK + 9 ? Number.NaN : Math.sin(i)));
    const infinite = Float32Array.from({ length: vocab }, (_, i) => (i === SAMPLE_BLOCK + 3 ? Infinity : Math.sin(i)));
    for (const x of [nan, infinite]) {
      const logits = gpu.tensor(x, [vocab], "f32");
      const options = [{ temperature: 0 }, { temperature: 1 }, { temperature: 1, topK: 10, topP: 0.5 }].map((o) => ({ ...o, seed: randomSeed(), step: 0 }));
      const ids = await Promise.all(VERSIONS.map((version) => run(version, options.map((o) => ({ logits, options: o })))));
      for (const [v, versionIds] of ids.entries()) {
        for (const id of versionIds) expect(id, VERSIONS[v]).toBeLessThan(vocab);
        expect(versionIds[0], `${VERSIONS[v]} greedy: the first NaN, else the first maximum`).toBe(x === nan ? 2 * SAMPLE_BLOCK + 9 : SAMPLE_BLOCK + 3);
      }
    }
  });

  it("records only the launches the options need: v1 one, v2 two greedy, four sampling, eight more each for top-k and top-p", () => {
    const logits = gpu.tensor(new Float32Array(4 * SAMPLE_BLOCK), [4 * SAMPLE_BLOCK], "f32");
    const base = { seed: 0, step: 0 };
    const counts = (version: SampleVersionName, options: Omit<SampleTokenOptions, "seed" | "step">) =>
      launchesOf(gpu, () => SAMPLE_VERSIONS[version](logits, { ...base, ...options }).dispose()).kernels.length;
    const optionSets = [{ temperature: 0 }, { temperature: 1 }, { temperature: 1, topK: 5 }, { temperature: 1, topP: 0.9 }, { temperature: 1, topK: 5, topP: 0.9 }];
    expect(optionSets.map((o) => counts("v1_one_workgroup", o))).toEqual([1, 1, 1, 1, 1]);
    expect(optionSets.map((o) => counts("v2_split_vocabulary", o))).toEqual([2, 4, 12, 12, 20]);
    // top-k ≥ V and a top_p that rounds to 1 in float32 are off.
    expect(counts("v2_split_vocabulary", { temperature: 1, topK: 4 * SAMPLE_BLOCK, topP: 1 - 2 ** -30 })).toBe(4);
  });

  it("a row of [R, V] into an element of a shared out, appending at a run-time history length, captured once and replayed", async () => {
    const [R, V] = [3, 2 * SAMPLE_BLOCK + 77];
    const { t: logits, values } = upload(gpu, randn(random, R * V, 2), [R, V], "f32");
    const prompt = Array.from(randint(random, 6, V));
    const draws = 4;
    const options = { temperature: 0.9, topK: 60, topP: 0.8, repetitionPenalty: 1.4, seed: randomSeed() };
    for (const version of VERSIONS) {
      // The decode loop's state: one element, read as the step and (plus the prompt) as the history length.
      const state = gpu.tensor([0, 0xdeadbeef], [2], "u32");
      const draw: StepValue = { tensor: state, index: 0, plus: -2, max: draws - 1 };
      const ids = gpu.tensor([...prompt, ...new Array<number>(draws).fill(7)], [prompt.length + draws], "u32");
      const out = gpu.tensor([9, 9, 9, 9], [4], "u32");
      const program = gpu.capture(`${version} step`, () => {
        SAMPLE_VERSIONS[version](logits, {
          ...options,
          step: draw,
          history: { ids, length: { ...draw, plus: draw.plus + prompt.length, max: draw.max + prompt.length } },
          out,
          outIndex: 2,
          row: 1,
        });
      });
      const history = [...prompt];
      for (let d = 0; d < draws; d++) {
        gpu.write(state, Uint32Array.of(d + 2)); // the StepValue reads d
        gpu.replay(program);
        const [got, appended] = await gpu.read(out, ids);
        const row = values.subarray(V, 2 * V);
        const { id: expected, ambiguous } = referenceDraw(row, { ...options, step: d, history });
        if (ambiguous) break; // the rest of the run may differ
        expect(Array.from(got), `${version} draw ${d} (seed ${SEED})`).toEqual([9, 9, expected, 9]);
        expect(appended[prompt.length + d]).toBe(expected);
        history.push(expected);
      }
      expect(Array.from(await ids.read()).slice(0, prompt.length)).toEqual(prompt);
      program.dispose();
    }
  });

  it("check their arguments alike, before any dispatch", () => {
    const logits = gpu.tensor(new Float32Array(10), [10], "f32");
    const ids = gpu.tensor(new Uint32Array(4), [4], "u32");
    const base = { temperature: 1, seed: 0, step: 0 };
    const before = gpu.dispatchCount;
    const bad: [Partial<SampleTokenOptions>, RegExp][] = [
      [{ topP: 0 }, /sampleToken: topP must be in \(0, 1\]/],
      [{ history: { ids, length: 4 } }, /sampleToken: history length 4 must be an integer in \[0, 4\)/],
      [{ outIndex: 1 }, /sampleToken: outIndex 1 needs an out tensor/],
      [{ row: 1 }, /sampleToken: row 1 must be an integer in \[0, 1\)/],
      [{ out: ids.slice(0, 1), history: { ids, length: 0 } }, /sampleToken: out .* shares a buffer/],
    ];
    for (const version of VERSIONS) {
      for (const [options, message] of bad) expect(() => SAMPLE_VERSIONS[version](logits, { ...base, ...options }), version).toThrow(message);
      expect(() => SAMPLE_VERSIONS[version](gpu.tensor(new Float32Array(8), [2, 2, 2], "f32"), base)).toThrow(ShapeError);
    }
    expect(gpu.dispatchCount).toBe(before);
  });

  it("sampleToken runs the rule's version: v1 on a CPU adapter, v2 on a GPU from 8 blocks on", () => {
    for (const vocab of [3, 8 * SAMPLE_BLOCK - 1, 8 * SAMPLE_BLOCK, 32000]) {
      const version = chooseSampleVersion(gpu, vocab);
      expect(version, `V=${vocab}`).toBe(gpu.adapter.isFallbackAdapter || vocab < 8 * SAMPLE_BLOCK ? "v1_one_workgroup" : "v2_split_vocabulary");
      const logits = gpu.tensor(new Float32Array(vocab), [vocab], "f32");
      const options = { temperature: 1, topK: 2, seed: 0, step: 0 };
      const kernels = (fn: typeof sampleToken) => launchesOf(gpu, () => fn(logits, options).dispose()).kernels;
      expect(kernels(sampleToken), `V=${vocab}`).toEqual(kernels(SAMPLE_VERSIONS[version]));
    }
  });
});

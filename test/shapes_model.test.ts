/**
 * The bundled shapes model through the runtime, against the PyTorch model it was trained as
 * (test/fixtures/shapes/teacher_forced.safetensors, made by weights/train/evaluate.py --fixture):
 * for a few dozen evaluation examples, the logits at every answer position, teacher-forced on
 * the right answer, must be PyTorch's; then the model must answer the demo's five questions and
 * fresh examples far above chance, which no wrong kernel would let it do.
 *
 * Tolerances are those of src/tools/verify.ts against transformers, relative to the row's largest |logit|:
 * f32 1e-4 (the arithmetic is the same up to the order of summation); f16 1e-2
 * (weights rounded to 11 significant bits). The argmax must agree wherever PyTorch's top two
 * logits are further apart than twice the tolerance.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { preprocessRgb } from "../src/image/preprocess.js";
import { loadModel, type VisionLanguageModel } from "../src/generate/model.js";
import { evaluate } from "../src/shapes/eval.js";
import type { DemoExample } from "../src/shapes/training_data.js";
import { takeRows } from "../src/tensor/copy.js";
import type { DType } from "../src/tensor/dtype.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { testGpu } from "./helpers.js";

const MODEL = join(import.meta.dirname, "..", "weights", "shapes-llava");
const FIXTURE = join(import.meta.dirname, "fixtures", "shapes", "teacher_forced.safetensors");
const TOLERANCE: Record<string, number> = { f32: 1e-4, f16: 1e-2 };

interface Fixture {
  rgb: Uint8Array;
  /** Width and height of each image. */
  size: number;
  ids: number[];
  offsets: number[];
  promptLengths: number[];
  topValues: Float32Array;
  topIndices: number[];
  k: number;
}

async function readFixture(): Promise<Fixture> {
  const file = await SafetensorsFile.open(FIXTURE);
  try {
    const top = await file.readFloat32("top_values");
    return {
      rgb: await file.readBytes("rgb"),
      size: file.entry("rgb").shape[1],
      ids: (await file.readIntegers("ids")).data,
      offsets: (await file.readIntegers("offsets")).data,
      promptLengths: (await file.readIntegers("prompt_lengths")).data,
      topValues: top.data,
      topIndices: (await file.readIntegers("top_indices")).data,
      k: top.shape[1],
    };
  } finally {
    await file.close();
  }
}

/** Logits [answer positions, vocab] of one example, teacher-forced: prompt + answer (without its last token) in one pass. */
async function answerLogits(model: VisionLanguageModel, rgb: Uint8Array, size: number, ids: number[], promptLength: number): Promise<Float32Array> {
  const { llava, gpu } = model;
  const pixels = preprocessRgb({ width: size, height: size, data: rgb }, model.preprocessor!);
  const logits = gpu.scope(() => {
    const features = llava.encodeImage(gpu.tensor(pixels.data, pixels.shape, "f32"));
    llava.cache.length = 0;
    const input = ids.slice(0, -1);
    const hidden = llava.decoder.forward(llava.embedPrompt(input, [features]), llava.cache);
    // The image token became featuresPerImage positions; the answer is predicted from the prompt's last one on.
    const first = promptLength - 1 + llava.featureCount() - 1;
    return llava.decoder.logits(takeRows(hidden, first, hidden.dim(0) - first));
  });
  const data = (await logits.read()) as Float32Array;
  logits.dispose();
  return data;
}

describe("shapes model", async () => {
  const gpu = await testGpu();
  const fixture = await readFixture();
  const models: VisionLanguageModel[] = [];
  afterAll(() => models.forEach((m) => m.dispose()));
  const dtypes: DType[] = gpu.hasF16 ? ["f32", "f16"] : ["f32"];

  for (const dtype of dtypes) {
    it(`reproduces PyTorch's logits at every answer position (${dtype})`, async () => {
      const model = await loadModel(MODEL, { gpu, dtype });
      models.push(model);
      const vocab = model.llava.textConfig.vocabSize;
      const tolerance = TOLERANCE[dtype];
      const { k } = fixture;
      let row = 0;
      let worst = 0;
      let compared = 0;
      for (let e = 0; e + 1 < fixture.offsets.length; e++) {
        const ids = fixture.ids.slice(fixture.offsets[e], fixture.offsets[e + 1]);
        const pixelsPerImage = fixture.size * fixture.size * 3;
        const rgb = fixture.rgb.subarray(e * pixelsPerImage, (e + 1) * pixelsPerImage);
        const logits = await answerLogits(model, rgb, fixture.size, ids, fixture.promptLengths[e]);
        const answerRows = ids.length - fixture.promptLengths[e];
        expect(logits.length).toBe(answerRows * vocab);
        for (let r = 0; r < answerRows; r++, row++) {
          const ours = logits.subarray(r * vocab, (r + 1) * vocab);
          const values = fixture.topValues.subarray(row * k, (row + 1) * k);
          const indices = fixture.topIndices.slice(row * k, (row + 1) * k);
          const scale = Math.max(...values.map(Math.abs));
          for (let j = 0; j < k; j++) worst = Math.max(worst, Math.abs(ours[indices[j]] - values[j]) / scale);
          let best = 0;
          for (let i = 1; i < vocab; i++) if (ours[i] > ours[best]) best = i;
          if (values[0] - values[1] > 2 * tolerance * scale) {
            expect(best, `example ${e}, answer token ${r}`).toBe(indices[0]);
            compared++;
          }
        }
      }
      expect(row).toBe(fixture.topValues.length / k);
      expect(worst).toBeLessThan(tolerance);
      expect(compared).toBeGreaterThan(0.9 * row);
    });
  }

  it("answers the demo's five questions about its example image, word for word", async () => {
    const model = models[0] ?? (await loadModel(MODEL, { gpu, dtype: "f32" }));
    const example = JSON.parse(await readFile(join(MODEL, "example.json"), "utf8")) as DemoExample;
    expect(example.questions.map((q) => q.type).sort()).toEqual(["colour", "count", "description", "position", "presence"]);
    for (const { question, answer } of example.questions) {
      const result = await model.complete({ messages: [{ role: "user", content: question, images: [join(MODEL, example.image)] }], maxNewTokens: 40 });
      expect(result.text.trim(), question).toBe(answer);
      expect(result.finishReason).toBe("stop");
    }
  });

  it("answers fresh examples of every question type", async () => {
    const model = models[0] ?? (await loadModel(MODEL, { gpu, dtype: "f32" }));
    const report = await evaluate(model, { n: 20, seed: 4242 });
    expect(report.n).toBe(20);
    for (const score of Object.values(report.perType)) expect(score.total).toBe(4);
    // The bundled model answers all 20 of these exactly (as PyTorch does); guessing would get
    // about 20% (1 in 6 colours, 1 in 9 positions, 1 in 2 for presence, ~0 descriptions). The
    // threshold leaves one answer of slack for a change of kernel version.
    expect(report.accuracy).toBeGreaterThanOrEqual(0.95);
  });
});

/**
 * Exact-match evaluation of a model on fresh examples of the shapes world, through the whole
 * runtime: each image is rendered, encoded as PNG, and handed to generate() with its question
 * in the chat template, exactly as a user's image and question would be; the reply is decoded
 * greedily and compared with the one right answer (surrounding whitespace ignored, nothing else).
 */
import { performance } from "node:perf_hooks";
import type { VisionLanguageModel } from "../generate/model.js";
import { evalExample } from "./examples.js";
import { QUESTION_TYPES, type QuestionType } from "./questions.js";
import { renderScenePng } from "./world.js";

/** Enough for the longest answer (a three-shape description) and then some. */
export const EVAL_MAX_NEW_TOKENS = 40;

export interface EvalRecord {
  index: number;
  type: QuestionType;
  question: string;
  expected: string;
  answer: string;
  correct: boolean;
  /** The generated ids (without the end-of-sequence token). */
  tokens: number[];
}

export interface TypeScore {
  correct: number;
  total: number;
  accuracy: number;
}

export interface EvalReport {
  n: number;
  seed: number;
  correct: number;
  accuracy: number;
  perType: Record<QuestionType, TypeScore>;
  /** Time spent in the model (preprocessing, vision, prefill, decoding), not in drawing the images. */
  seconds: number;
  imagesPerSecond: number;
  records: EvalRecord[];
}

export interface EvalOptions {
  n: number;
  seed: number;
  /** Called after each example. */
  onRecord?: (record: EvalRecord) => void;
}

export async function evaluate(model: VisionLanguageModel, options: EvalOptions): Promise<EvalReport> {
  const { n, seed } = options;
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`eval: n must be a positive integer, not ${n}`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`eval: seed must be a non-negative integer, not ${seed}`);
  const examples = await Promise.all(
    Array.from({ length: n }, async (_, index) => {
      const example = evalExample(seed, index);
      return { index, example, png: await renderScenePng(example.scene) };
    }),
  );
  const records: EvalRecord[] = [];
  const started = performance.now();
  for (const { index, example, png } of examples) {
    const result = await model.complete({
      messages: [{ role: "user", content: example.question, images: [png] }],
      maxNewTokens: EVAL_MAX_NEW_TOKENS,
      temperature: 0,
    });
    const answer = result.text.trim();
    const record = { index, type: example.type, question: example.question, expected: example.answer, answer, correct: answer === example.answer, tokens: result.tokens };
    records.push(record);
    options.onRecord?.(record);
  }
  const seconds = (performance.now() - started) / 1000;
  const perType = Object.fromEntries(
    QUESTION_TYPES.map((type) => {
      const ofType = records.filter((r) => r.type === type);
      const correct = ofType.filter((r) => r.correct).length;
      return [type, { correct, total: ofType.length, accuracy: ofType.length ? correct / ofType.length : 0 }];
    }),
  ) as Record<QuestionType, TypeScore>;
  const correct = records.filter((r) => r.correct).length;
  return { n, seed, correct, accuracy: correct / n, perType, seconds, imagesPerSecond: n / seconds, records };
}

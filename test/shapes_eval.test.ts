/** `wgsl-vlm eval`: run() called directly on the bundled shapes model, its output captured. */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import evalCommand from "../src/cli/eval.js";
import { UsageError } from "../src/cli/command.js";
import { QUESTION_TYPES } from "../src/shapes/questions.js";
import { evalExample } from "../src/shapes/examples.js";
import { runCommand } from "./helpers.js";

const MODEL = join(import.meta.dirname, "..", "weights", "shapes-llava");

const run = (argv: string[]) => runCommand(evalCommand, argv);

describe("wgsl-vlm eval", () => {
  it("prints per-type and overall exact match and images per second", async () => {
    const { code, stdout } = await run(["--model", MODEL, "--n", "5", "--seed", "3", "--quiet"]);
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^5 fresh examples \(seed 3\), greedy, exact match, f32 weights on .+$/);
    expect(lines.slice(1, 6).map((l) => l.trim().split(/\s+/)[0])).toEqual([...QUESTION_TYPES]);
    for (const line of lines.slice(1, 6)) expect(line).toMatch(/^ {2}\w+ +[01]\/1 +(100|0)\.0%$/);
    expect(lines[6]).toMatch(/^ {2}overall +[0-5]\/5 +\d+\.\d%$/);
    expect(lines[7]).toMatch(/^ {2}\d+\.\d\d images\/s \(\d+\.\d s in the model\)$/);
    expect(lines).toHaveLength(8);
  });

  it("prints the whole report as JSON, every example with its question, answer and tokens", async () => {
    const { code, stdout, stderr } = await run(["--model", MODEL, "--n", "6", "--seed", "12", "--json", "--show-wrong"]);
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    expect(Object.keys(report).sort()).toEqual(["accuracy", "correct", "imagesPerSecond", "n", "perType", "records", "seconds", "seed"]);
    expect([report.n, report.seed]).toEqual([6, 12]);
    expect(Object.keys(report.perType)).toEqual([...QUESTION_TYPES]);
    expect(report.perType.colour.total).toBe(2);
    expect(report.records).toHaveLength(6);
    report.records.forEach((r: Record<string, unknown>, i: number) => {
      const example = evalExample(12, i);
      expect(r).toMatchObject({ index: i, type: example.type, question: example.question, expected: example.answer });
      expect(r.correct).toBe(r.answer === r.expected);
      expect(Array.isArray(r.tokens)).toBe(true);
    });
    expect(report.correct).toBe(report.records.filter((r: { correct: boolean }) => r.correct).length);
    expect(report.accuracy).toBeCloseTo(report.correct / 6, 12);
    expect(report.imagesPerSecond).toBeGreaterThan(0);
    // --show-wrong lists exactly the wrong answers on stderr.
    const wrong = report.records.filter((r: { correct: boolean }) => !r.correct).length;
    expect(stderr.split("\n").filter((l) => l.startsWith("  #"))).toHaveLength(wrong);
  });

  it("rejects a bad command line", async () => {
    await expect(run(["--n", "5"])).rejects.toThrow(UsageError);
    await expect(run(["--model", MODEL, "--n", "0"])).rejects.toThrow(/--n: '0' is not a valid value/);
    await expect(run(["--model", MODEL, "--seed", "-1"])).rejects.toThrow(/--seed/);
  });

  // The bar: q8_0 within 0.5 points of f32, q4_0 within 3, on the same fresh examples
  // (a fixed seed: the same 100 images and questions for every type, so the run is repeatable).
  it("answers as well with its decoder quantized to q8_0 and q4_0 while loading", async () => {
    const accuracy: Record<string, number> = {};
    for (const dtype of ["f32", "q8_0", "q4_0"]) {
      const { code, stdout } = await run(["--model", MODEL, "--n", "100", "--seed", "5", "--json", "--quiet", "--dtype", dtype]);
      expect(code).toBe(0);
      accuracy[dtype] = JSON.parse(stdout).accuracy * 100;
    }
    expect(accuracy.f32).toBeGreaterThan(90);
    expect(Math.abs(accuracy.q8_0 - accuracy.f32), JSON.stringify(accuracy)).toBeLessThanOrEqual(0.5);
    expect(Math.abs(accuracy.q4_0 - accuracy.f32), JSON.stringify(accuracy)).toBeLessThanOrEqual(3);
  }, 120_000);
});

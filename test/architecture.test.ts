/**
 * The folders of src/ are layers, and nothing imports upward: files → tensor → kernels → models →
 * generation and embedding (CLIP) →
 * tools and serving → the benchmarks (which drive a server too). A folder may
 * import its own files and folders of lower rank only, so there can be no cycle between folders. Inside kernels/, the numbered-version
 * folders (matmul/, attention/, sample/) share code only through kernels/ itself and
 * kernels/wgsl/, never through each other.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = resolve(import.meta.dirname, "../src");

/** Rank of each top-level folder of src/ (and of src/index.ts, the library's entry, above all). */
const RANK: Record<string, number> = {
  files: 0,
  tensor: 1,
  image: 1,
  tokenizer: 1,
  kernels: 2,
  weights: 2,
  models: 3,
  generate: 4,
  embed: 4,
  tools: 5,
  shapes: 5,
  serve: 5,
  bench: 6,
  cli: 7,
  "index.ts": 8,
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** Every relative import of a file (static, re-exports and dynamic), as paths relative to src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const specifiers = [...text.matchAll(/(?:from\s+|import\s*\(\s*)["'](\.{1,2}\/[^"']+)["']/g)].map((m) => m[1]);
  return specifiers.map((s) => relative(SRC, resolve(dirname(file), s)));
}

const top = (path: string) => path.split("/")[0];

/** kernels/<folder>/... → that folder; kernels/<file>.ts and kernels/wgsl/ → null (shared). */
function kernelFolder(path: string): string | null {
  const parts = path.split("/");
  if (parts[0] !== "kernels" || parts.length < 3 || parts[1] === "wgsl") return null;
  return parts[1];
}

describe("architecture", () => {
  const files = sourceFiles(SRC).map((f) => ({ path: relative(SRC, f), imports: importsOf(f) }));

  it("knows every folder of src/", () => {
    for (const { path } of files) expect(RANK, `add ${top(path)}/ to RANK with its layer`).toHaveProperty([top(path)]);
  });

  it("imports only within a folder or from a lower layer", () => {
    const upward: string[] = [];
    for (const { path, imports } of files) {
      for (const target of imports) {
        if (target.startsWith("..")) {
          upward.push(`${path} imports ${target}, outside src/`);
          continue;
        }
        const [from, to] = [top(path), top(target)];
        if (from !== to && !(RANK[to] < RANK[from])) upward.push(`${path} (layer ${RANK[from]}) imports ${target} (layer ${RANK[to]})`);
      }
    }
    expect(upward).toEqual([]);
  });

  it("keeps the kernel folders apart: shared pieces live in kernels/ and kernels/wgsl/", () => {
    const crossings: string[] = [];
    for (const { path, imports } of files) {
      for (const target of imports) {
        const [from, to] = [kernelFolder(path), kernelFolder(target)];
        if (to !== null && to !== from && path.startsWith("kernels/")) crossings.push(`${path} imports ${target}`);
        if (path.startsWith("kernels/wgsl/") && target.startsWith("kernels/") && !target.startsWith("kernels/wgsl/")) {
          crossings.push(`${path} imports ${target}: the WGSL building blocks depend on nothing but the runtime`);
        }
      }
    }
    expect(crossings).toEqual([]);
  });

  it("would notice an upward import (the checks above can fail)", () => {
    expect(importsOf(join(SRC, "models/llava.ts"))).toContain("tensor/gpu.js");
    expect(RANK[top("generate/model.ts")] < RANK[top("bench/e2e.ts")]).toBe(true);
  });
});

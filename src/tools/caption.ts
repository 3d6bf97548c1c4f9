/**
 * `wgsl-vlm caption`'s run loop: every image of the inputs (caption_inputs.ts) answered with a
 * prompt, one JSON line per image appended to the output as it finishes:
 *
 *   {"id", "image", "prompt", "text", "tokens", "finish_reason", "ms"}   or, when the image could
 *   not be read or decoded, {"id", "image", "prompt", "error"} (and the run goes on).
 *
 * `batch` generations are kept in flight; the model decodes concurrent complete() calls together
 * (up to its maxBatch). While they run, the next `batch` images' bytes are already being read
 * (files on libuv's threads; a shard's samples as the tar stream delivers them). Decoding happens
 * inside complete(), on libvips' threads (sharp), and resampling to the vision tower's size on
 * the main thread between GPU steps; there is no worker pool.
 *
 * Each line is written and fdatasync'ed as its image finishes (so lines follow completion, not
 * input order). Resuming: on start the output, if there is one, is read; a torn last line (a crash
 * mid-write) is dropped, and so are the error rows: their images are tried again. Every id with a
 * caption row is skipped. So rerunning the same command after a crash or Ctrl-C loses at most the
 * images in flight, and the finished file holds every id once.
 *
 * Prompts: one prompt for every image, or several taken in turn (round-robin: image i of the
 * inputs, in their order, counting those skipped, gets prompts[i % count], so a rerun gives each
 * image the prompt it had); a JSONL row's own prompt wins.
 */
import { open, readFile, rename, stat } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import type { GenerateRequest, GenerateResult } from "../generate/request.js";
import type { CaptionInputs, CaptionItem } from "./caption_inputs.js";

/** What the run needs of a model (VisionLanguageModel has it). */
export interface CaptionModel {
  complete(request: GenerateRequest): Promise<GenerateResult>;
}

export interface CaptionOptions {
  /** The JSONL output: created, or resumed. */
  out: string;
  /** The prompts, taken in turn; may be empty only when every image brings its own. */
  prompts: readonly string[];
  /** Default 256 (the model's own default). */
  maxNewTokens?: number;
  /** Generations in flight at once (default 4): give the model a maxBatch this large. */
  batch?: number;
  /** When aborted, no new image is started; those in flight finish and are written. */
  signal?: AbortSignal;
  /** When aborted, the generations in flight are stopped too; their rows are not written (the next run does them). */
  abortInFlight?: AbortSignal;
  /** Start at most this many new images, then stop as if interrupted (tests). */
  limit?: number;
  /** Called after each image is written and once at the start. */
  onProgress?: (progress: CaptionProgress) => void;
}

export interface CaptionProgress {
  /** Images finished in this run (captioned or failed). */
  done: number;
  /** Images to do in this run, as far as known (a shard's are counted as they are read). */
  total: number;
  failed: number;
}

export interface CaptionReport {
  /** Images captioned in this run. */
  captioned: number;
  /** Images that could not be read or decoded (an error row each). */
  failed: number;
  /** Images skipped: the output already held their caption (a shard's counted as far as it was read). */
  skipped: number;
  /** Error rows of an earlier run dropped, their images tried again. */
  retried: number;
  /** Generations stopped by abortInFlight (no row; the next run does them). */
  abandoned: number;
  /** Whether the output's last line was torn (and was dropped). */
  tornLine: boolean;
  /** Whether the run stopped before the end of the inputs (signal or limit). */
  stoppedEarly: boolean;
}

interface Previous {
  /** Ids with a caption row. */
  done: Set<string>;
  /** The rows to keep, as lines. */
  kept: string[];
  errors: number;
  torn: boolean;
}

/** Reads an earlier run's output: its caption rows are kept, its error rows and a torn last line dropped. */
export async function readPreviousOutput(out: string): Promise<Previous> {
  const text = await readFile(out, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return "";
    throw error;
  });
  const lines = text.split("\n");
  const tail = lines.pop() ?? ""; // "" when the file ends with a newline
  const previous: Previous = { done: new Set(), kept: [], errors: 0, torn: tail.trim() !== "" };
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === "") continue;
    let row: unknown;
    try {
      row = JSON.parse(lines[i]);
    } catch {
      row = undefined;
    }
    const { id, text: caption, error } = (typeof row === "object" && row !== null ? row : {}) as Record<string, unknown>;
    if (typeof id !== "string" || (typeof caption !== "string" && typeof error !== "string")) {
      throw new Error(`${out}:${i + 1}: not a caption row (is this the output of wgsl-vlm caption?)`);
    }
    if (typeof caption === "string") {
      previous.done.add(id);
      previous.kept.push(lines[i]);
    } else previous.errors++;
  }
  return previous;
}

/** Rewrites the output with only the rows kept (a temporary file renamed over it, so a crash now loses nothing). */
async function rewrite(out: string, lines: readonly string[]): Promise<void> {
  const temporary = `${out}.${process.pid}.tmp`;
  const handle = await open(temporary, "w");
  try {
    await handle.write(lines.map((l) => `${l}\n`).join(""));
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(temporary, out);
}

type Bytes = { ok: true; bytes: Uint8Array } | { ok: false; error: string };

interface Job {
  item: CaptionItem;
  prompt: string;
}

function message(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, " ");
}

export async function captionImages(model: CaptionModel, inputs: CaptionInputs, options: CaptionOptions): Promise<CaptionReport> {
  const batch = options.batch ?? 4;
  if (!(Number.isInteger(batch) && batch >= 1)) throw new RangeError(`captionImages: batch ${batch} must be an integer >= 1`);
  const prompts = options.prompts;
  if (prompts.length === 0 && !inputs.allPrompted) throw new RangeError("captionImages: no prompt, and not every image has its own");

  const previous = await readPreviousOutput(options.out);
  if (previous.torn || previous.errors > 0) await rewrite(options.out, previous.kept);
  const report: CaptionReport = { captioned: 0, failed: 0, skipped: 0, retried: previous.errors, abandoned: 0, tornLine: previous.torn, stoppedEarly: false };

  // The images to do: the known ones are counted now, a shard's as they come.
  let total = inputs.known.filter((item) => !previous.done.has(item.id)).length;
  report.skipped = inputs.known.length - total;
  const knownIds = new Set(inputs.known.map((item) => item.id));
  const progress = () => options.onProgress?.({ done: report.captioned + report.failed, total, failed: report.failed });
  const seen = new Set<string>();
  async function* jobs(): AsyncGenerator<Job> {
    let index = 0;
    for await (const item of inputs.items()) {
      const prompt = item.prompt ?? prompts[index % prompts.length];
      index++;
      if (seen.has(item.id)) throw new Error(`id '${item.id}' (${item.image}) comes twice in the inputs`);
      seen.add(item.id);
      const done = previous.done.has(item.id);
      if (!knownIds.has(item.id)) {
        // A shard's image: counted now.
        if (done) report.skipped++;
        else {
          total++;
          progress();
        }
      }
      if (!done) yield { item, prompt };
    }
  }

  // Read ahead: up to `batch` images beyond those in flight have their bytes on the way.
  const source = jobs();
  const ahead: Promise<IteratorResult<Job & { bytes: Promise<Bytes> }>>[] = [];
  const pull = () => {
    const next = source.next().then((r) =>
      r.done
        ? r
        : {
            done: false as const,
            value: {
              ...r.value,
              bytes: r.value.item.read().then(
                (bytes): Bytes => ({ ok: true, bytes }),
                (error): Bytes => ({ ok: false, error: message(error) }),
              ),
            },
          },
    );
    next.catch(() => {}); // awaited in turn below; this only keeps it from counting as unhandled meanwhile
    ahead.push(next);
  };

  const file = await open(options.out, "a");
  let writing: Promise<void> = Promise.resolve();
  let fatal: unknown;
  const write = (row: object): Promise<void> => {
    writing = writing.then(async () => {
      await file.write(`${JSON.stringify(row)}\n`);
      await file.datasync();
    });
    return writing;
  };

  const caption = async (job: Job & { bytes: Promise<Bytes> }): Promise<void> => {
    const { id, image } = job.item;
    const prompt = job.prompt;
    const got = await job.bytes;
    const started = performance.now();
    let row: object | undefined;
    if (!got.ok) row = { id, image, prompt, error: got.error };
    else {
      try {
        const result = await model.complete({
          messages: [{ role: "user", content: prompt, images: [got.bytes] }],
          maxNewTokens: options.maxNewTokens,
          temperature: 0,
          signal: options.abortInFlight,
        });
        if (result.finishReason === "abort") {
          report.abandoned++;
          return;
        }
        row = { id, image, prompt, text: result.text, tokens: result.tokens, finish_reason: result.finishReason, ms: Math.round(performance.now() - started) };
      } catch (error) {
        row = { id, image, prompt, error: message(error) };
      }
    }
    try {
      await write(row);
      if ("error" in row) report.failed++;
      else report.captioned++;
      progress();
    } catch (error) {
      fatal ??= error;
    }
  };

  const inFlight = new Set<Promise<void>>();
  let started = 0;
  const stopping = () => options.signal?.aborted === true || fatal !== undefined || (options.limit !== undefined && started >= options.limit);
  progress();
  try {
    for (;;) {
      while (inFlight.size >= batch && !stopping()) await Promise.race(inFlight);
      if (stopping()) {
        report.stoppedEarly = fatal === undefined;
        break;
      }
      while (ahead.length < batch) pull();
      const next = await ahead.shift()!;
      if (next.done) break;
      started++;
      const task: Promise<void> = caption(next.value).finally(() => inFlight.delete(task));
      inFlight.add(task);
    }
  } finally {
    await Promise.allSettled(inFlight);
    await writing.catch(() => {});
    await file.close();
    // Let the source close its shard; the reads queued ahead are dropped.
    await Promise.allSettled(ahead);
    await source.return(undefined).catch(() => {});
  }
  if (fatal !== undefined) throw fatal;
  return report;
}

/** Whether two paths name the same file (by device and inode when both exist). */
export async function sameFile(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([stat(a).catch(() => undefined), stat(b).catch(() => undefined)]);
  return x !== undefined && y !== undefined && x.dev === y.dev && x.ino === y.ino;
}

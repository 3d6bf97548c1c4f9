/** `wgsl-vlm caption`: every image of folders, lists, JSONL files or WebDataset shards answered with a prompt, into a resumable JSONL file. */
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { SingleBar } from "cli-progress";
import { captionImages, sameFile, type CaptionReport } from "../tools/caption.js";
import { InputError, openInputs, type CaptionInputs } from "../tools/caption_inputs.js";
import { UsageError, type Command } from "./command.js";
import { loadModelFrom, MODEL_OPTIONS, MODEL_USAGE } from "./model_options.js";
import { numberOption } from "./options.js";

const command: Command = {
  summary: "caption every image of a folder, list, JSONL file or WebDataset shards into JSONL, resumably",
  usage: `usage: wgsl-vlm caption --model DIR --input INPUT... (--prompt TEXT | --prompts FILE) --out RESULTS.jsonl [options]
  --input INPUT    (repeatable; more INPUTs may follow as arguments) one of:
                     a folder: its images and its subfolders' (JPEG, PNG, WebP, GIF, TIFF by their
                       first bytes); id = the path within the folder
                     FILE.jsonl: rows {"id", "image", "prompt"?}, image relative to the file's folder
                     SHARD.tar: a WebDataset shard (img2dataset's KEY.jpg/png/webp [+ KEY.txt/json]),
                       read streaming; id = SHARD/KEY
                     any other file: image paths, one a line, relative to its folder; id = the path
  --prompt TEXT    the question asked of every image
  --prompts FILE   prompts, one a line, taken in turn: image i (in input order) gets prompt
                   i mod count. A JSONL row's own "prompt" wins over both; with JSONL inputs whose
                   rows all have one, neither is needed
  --out FILE       the results, one JSON line per image as it finishes:
                   {id, image, prompt, text, tokens, finish_reason, ms}, or {id, image, prompt,
                   error} for an image that could not be read. Rerunning the same command resumes:
                   images with a caption are skipped, error rows dropped and tried again, a torn
                   last line dropped
  --max-new-tokens N  at most N tokens a caption (default 256); greedy decoding
  --batch N        generations decoded together (default 4); the next images are read meanwhile
${MODEL_USAGE}
Ctrl-C (or SIGTERM) stops starting images and lets those in flight finish; a second one
abandons them (the next run does them). Exit status 0 when every image was captioned, 1 when
some could not be (the count on stderr), 130 when interrupted.`,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        ...MODEL_OPTIONS,
        input: { type: "string", multiple: true },
        prompt: { type: "string" },
        prompts: { type: "string" },
        out: { type: "string" },
        "max-new-tokens": { type: "string" },
        batch: { type: "string" },
      },
    });
    if (!values.model) throw new UsageError("--model DIR is required");
    const inputPaths = [...(values.input ?? []), ...positionals];
    if (inputPaths.length === 0) throw new UsageError("--input (a folder, LIST.txt, FILE.jsonl or SHARD.tar) is required");
    if (!values.out) throw new UsageError("--out RESULTS.jsonl is required");
    if (values.prompt !== undefined && values.prompts !== undefined) throw new UsageError("give --prompt or --prompts, not both");
    const maxNewTokens = numberOption(values["max-new-tokens"], "max-new-tokens", 256, (n) => Number.isInteger(n) && n >= 1);
    const batch = numberOption(values.batch, "batch", 4, (n) => Number.isInteger(n) && n >= 1 && n <= 256);
    for (const input of inputPaths) {
      if (resolve(input) === resolve(values.out) || (await sameFile(input, values.out))) throw new UsageError(`--out ${values.out} is one of the inputs`);
    }
    let prompts: string[] = [];
    if (values.prompt !== undefined) {
      if (values.prompt.trim() === "") throw new UsageError("--prompt is empty");
      prompts = [values.prompt];
    } else if (values.prompts !== undefined) {
      const text = await readFile(values.prompts, "utf8").catch((e: Error) => {
        throw new UsageError(`--prompts: ${e.message}`);
      });
      prompts = text.split("\n").map((l) => l.replace(/\r$/, "")).filter((l) => l.trim() !== "");
      if (prompts.length === 0) throw new UsageError(`--prompts ${values.prompts} holds no prompt`);
    }
    let inputs: CaptionInputs;
    try {
      inputs = await openInputs(inputPaths);
    } catch (error) {
      if (error instanceof InputError) throw new UsageError(`--input ${error.message}`);
      throw error;
    }
    if (prompts.length === 0 && !inputs.allPrompted) throw new UsageError("--prompt TEXT or --prompts FILE is required (only JSONL rows can bring their own)");

    const model = await loadModelFrom(values, { maxBatch: batch });
    // First Ctrl-C: no new image; a second: the ones in flight are abandoned too.
    const stop = new AbortController();
    const abandon = new AbortController();
    const onSignal = () => {
      if (stop.signal.aborted) abandon.abort();
      else {
        stop.abort();
        process.stderr.write("\nstopping: finishing the images in flight (again to abandon them)\n");
      }
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    // On a terminal a bar redrawn in place; otherwise (a log, CI) a plain line every few seconds.
    const bar = values.quiet
      ? null
      : new SingleBar({ stream: process.stderr, format: "captioning {bar} {value}/{total} images | {rate} images/s | {eta_formatted} left", noTTYOutput: true, notTTYSchedule: 5000, hideCursor: false });
    const started = performance.now();
    let running = false;
    let report: CaptionReport;
    try {
      report = await captionImages(model, inputs, {
        out: values.out,
        prompts,
        maxNewTokens,
        batch,
        signal: stop.signal,
        abortInFlight: abandon.signal,
        onProgress: ({ done, total }) => {
          const rate = (done / Math.max((performance.now() - started) / 1000, 1e-3)).toFixed(2);
          if (!running) bar?.start(total, done, { rate });
          running = true;
          bar?.setTotal(total);
          bar?.update(done, { rate });
        },
      });
    } finally {
      if (running) bar?.stop();
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      model.dispose();
    }
    const seconds = (performance.now() - started) / 1000;
    process.stderr.write(
      `${values.out}: ${report.captioned} captioned in ${seconds.toFixed(1)} s, ${report.skipped} already there` +
        `${report.retried ? `, ${report.retried} earlier errors tried again` : ""}${report.tornLine ? ", a torn last line dropped" : ""}` +
        `${report.failed ? `, ${report.failed} failed (error rows; a rerun tries them again)` : ""}` +
        `${report.abandoned ? `, ${report.abandoned} abandoned` : ""}${stop.signal.aborted ? "; interrupted: rerun to finish" : ""}\n`,
    );
    if (stop.signal.aborted) return 130;
    return report.failed > 0 ? 1 : 0;
  },
};

export default command;

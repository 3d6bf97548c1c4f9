/** `wgsl-vlm convert`: a Hugging Face LLaVA or LLaMA folder → llama.cpp's GGUF text model (and mmproj), quantized as asked. */
import { parseArgs } from "node:util";
import { SingleBar } from "cli-progress";
import { CONVERT_DTYPES, convertToGguf, type ConvertDType } from "../tools/convert.js";
import { UsageError, type Command } from "./command.js";
import { mb } from "./model_options.js";

const command: Command = {
  summary: "convert a Hugging Face LLaVA or LLaMA folder to GGUF files llama.cpp (and this runtime) load",
  usage: `usage: wgsl-vlm convert --model DIR --dtype TYPE --out MODEL.gguf [--mmproj-out MMPROJ.gguf [--vision-dtype TYPE]] [--force]
  --model DIR        a Hugging Face LLaVA or LLaMA folder (config.json, *.safetensors, tokenizer.model)
  --dtype TYPE       the text model's matrices: ${CONVERT_DTYPES.join(", ")} (ggml's reference
                     quantizers, bit-exact; vectors stay F32, the mmproj F16, or F32 with f32)
  --out FILE         the text model's GGUF (its vocabulary from tokenizer.model, when present)
  --mmproj-out FILE  the vision tower and projector's GGUF (required for a LLaVA folder)
  --vision-dtype TYPE  the mmproj's matrices, one of the same types (default f16, f32 with
                     --dtype f32); q8_0 halves the file, moving image features by 1-2%
  --force            replace files that exist (never the model's own)
  --quiet            no progress on stderr`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        model: { type: "string" },
        dtype: { type: "string" },
        out: { type: "string" },
        "mmproj-out": { type: "string" },
        "vision-dtype": { type: "string" },
        force: { type: "boolean" },
        quiet: { type: "boolean" },
      },
    });
    if (!values.model) throw new UsageError("--model DIR is required");
    if (!values.out) throw new UsageError("--out FILE is required");
    const dtype = values.dtype ?? "";
    if (!(CONVERT_DTYPES as readonly string[]).includes(dtype)) throw new UsageError(`--dtype must be one of ${CONVERT_DTYPES.join(", ")}, not '${dtype}'`);
    const visionDtype = values["vision-dtype"];
    if (visionDtype !== undefined && !(CONVERT_DTYPES as readonly string[]).includes(visionDtype)) {
      throw new UsageError(`--vision-dtype must be one of ${CONVERT_DTYPES.join(", ")}, not '${visionDtype}'`);
    }
    // On a terminal a bar redrawn in place; otherwise (a log, CI) a plain line a second.
    const bar = values.quiet
      ? null
      : new SingleBar({ stream: process.stderr, format: "converting {bar} {value}/{total} tensors | {tensor} | {eta_formatted} left", noTTYOutput: true, notTTYSchedule: 1000, hideCursor: false });
    let started = false;
    const progress = (done: number, total: number, tensor: string) => {
      if (!started) bar?.start(total, 0, { tensor });
      started = true;
      bar?.update(done, { tensor });
    };
    let report;
    try {
      report = await convertToGguf(values.model, {
        dtype: dtype as ConvertDType,
        out: values.out,
        mmprojOut: values["mmproj-out"],
        visionDtype: visionDtype as ConvertDType | undefined,
        force: values.force ?? false,
        onProgress: progress,
      });
    } finally {
      if (started) bar?.stop();
    }
    for (const note of report.notes) process.stderr.write(`note: ${note}\n`);
    for (const file of report.files) process.stdout.write(`wrote ${file.path}: ${file.tensors} tensors, ${mb(file.bytes)}\n`);
    return 0;
  },
};

export default command;

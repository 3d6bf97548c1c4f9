/** `wgsl-vlm generate`: one answer, streamed to stdout. */
import { parseArgs } from "node:util";
import type { GenerateResult } from "../generate/request.js";
import { checkImage } from "../image/decode.js";
import { UsageError, type Command } from "./command.js";
import { loadModelFrom, MODEL_OPTIONS, MODEL_USAGE, SAMPLING_OPTIONS, SAMPLING_USAGE, samplingFrom } from "./model_options.js";

export function statistics(r: GenerateResult): string {
  const t = r.timings;
  return (
    `${r.usage.promptTokens} prompt positions, ${r.usage.completionTokens} tokens (${r.finishReason}); ` +
    `vision ${t.visionMs.toFixed(0)} ms, prefill ${t.prefillMs.toFixed(0)} ms ` +
    `(${((r.usage.promptTokens / t.prefillMs) * 1000).toFixed(1)} tokens/s), decode ${t.decodeTokensPerSecond.toFixed(2)} tokens/s`
  );
}

const command: Command = {
  summary: "answer a prompt about zero or more images, streaming the text",
  usage: `usage: wgsl-vlm generate --model DIR [--image PATH]... --prompt TEXT [options]
  --prompt TEXT    the user's message (put in the checkpoint's chat template, or its family's)
  --image PATH     an image shown with the message (repeat for several)
  --system TEXT    a system message before it
  --raw            use TEXT as the whole prompt, with <image> tags where the images go
  --stop TEXT      stop when TEXT is generated (repeatable)
  --json           print the result object (text, tokens, finishReason, usage, timings) instead
${SAMPLING_USAGE}
${MODEL_USAGE}`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        ...MODEL_OPTIONS,
        ...SAMPLING_OPTIONS,
        prompt: { type: "string" },
        image: { type: "string", multiple: true },
        system: { type: "string" },
        raw: { type: "boolean" },
        stop: { type: "string", multiple: true },
        json: { type: "boolean" },
      },
    });
    if (values.prompt === undefined) throw new UsageError("--prompt TEXT is required");
    if (values.raw && values.system !== undefined) throw new UsageError("--system has no place in a --raw prompt");
    const sampling = samplingFrom(values);
    const images = values.image ?? [];
    // A bad image is found before the model is loaded, which can take far longer than this.
    for (const image of images) await checkImage(image);
    const model = await loadModelFrom(values);
    try {
      const request = values.raw
        ? { prompt: values.prompt, images }
        : {
            messages: [
              ...(values.system !== undefined ? [{ role: "system" as const, content: values.system }] : []),
              { role: "user" as const, content: values.prompt, images },
            ],
          };
      const result = await model.complete({ ...request, ...sampling, stop: values.stop }, (chunk) => {
        if (!values.json) process.stdout.write(chunk.text);
      });
      if (values.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      else {
        process.stdout.write("\n");
        if (!values.quiet) process.stderr.write(`${statistics(result)}\n`);
      }
      return 0;
    } finally {
      model.dispose();
    }
  },
};

export default command;

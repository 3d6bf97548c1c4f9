/** `wgsl-vlm tokenize`: the token ids of a text, as the model will see them. */
import { stat } from "node:fs/promises";
import { parseArgs } from "node:util";
import { loadTokenizer } from "../tokenizer/load.js";
import { UsageError, type Command } from "./command.js";

const command: Command = {
  summary: "print the token ids of a text (LLaMA tokenizer)",
  usage: `usage: wgsl-vlm tokenize --tokenizer PATH [--no-bos] [--json] TEXT
  --tokenizer PATH  a tokenizer.model, a tokenizer.json, or a model folder holding one
                    (with its tokenizer_config.json)
  --no-bos          do not put the BOS token first
  --json            print {"ids": [...]} instead of the ids separated by spaces`,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { tokenizer: { type: "string" }, "no-bos": { type: "boolean" }, json: { type: "boolean" } },
      allowPositionals: true,
    });
    if (values.tokenizer === undefined) throw new UsageError("--tokenizer PATH is required");
    if (positionals.length !== 1) {
      throw new UsageError(positionals.length === 0 ? "TEXT is missing" : `expected one TEXT, got ${positionals.length} (quote the text)`);
    }
    if (!(await stat(values.tokenizer).catch(() => undefined))) throw new UsageError(`--tokenizer: no such file or folder: ${values.tokenizer}`);
    const tokenizer = await loadTokenizer(values.tokenizer);
    const ids = tokenizer.encode(positionals[0], { addBos: values["no-bos"] ? false : undefined });
    process.stdout.write(values.json ? `${JSON.stringify({ ids })}\n` : `${ids.join(" ")}\n`);
    return 0;
  },
};

export default command;

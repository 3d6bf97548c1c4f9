/** `wgsl-vlm tokenize`: the token ids of a text, as the model will see them. */
import { stat } from "node:fs/promises";
import { parseArgs } from "node:util";
import { CLIP_CLEANERS, type ClipClean } from "../tokenizer/clip_clean.js";
import { isClipTokenizerFolder, loadClipTokenizer } from "../tokenizer/clip_load.js";
import { loadTokenizer } from "../tokenizer/load.js";
import { UsageError, type Command } from "./command.js";

const command: Command = {
  summary: "print the token ids of a text (LLaMA or CLIP tokenizer)",
  usage: `usage: wgsl-vlm tokenize --tokenizer PATH [--no-bos] [--clean ftfy|basic] [--json] TEXT
  --tokenizer PATH  a tokenizer.model, a tokenizer.json, or a model folder holding one
                    (with its tokenizer_config.json); or a CLIP tokenizer folder (vocab.json
                    and merges.txt, or a tokenizer_config.json naming CLIPTokenizer)
  --no-bos          do not put the BOS token first (CLIP: leave out both
                    <|startoftext|> and <|endoftext|>)
  --clean MODE      CLIP only: how the text is cleaned, ftfy (default: what CLIP was
                    trained on) or basic (transformers without the ftfy package)
  --json            print {"ids": [...]} instead of the ids separated by spaces`,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { tokenizer: { type: "string" }, "no-bos": { type: "boolean" }, clean: { type: "string" }, json: { type: "boolean" } },
      allowPositionals: true,
    });
    if (values.tokenizer === undefined) throw new UsageError("--tokenizer PATH is required");
    if (positionals.length !== 1) {
      throw new UsageError(positionals.length === 0 ? "TEXT is missing" : `expected one TEXT, got ${positionals.length} (quote the text)`);
    }
    const clean = values.clean;
    if (clean !== undefined && !CLIP_CLEANERS.includes(clean as ClipClean)) throw new UsageError(`--clean: expected ftfy or basic, got ${JSON.stringify(clean)}`);
    if (!(await stat(values.tokenizer).catch(() => undefined))) throw new UsageError(`--tokenizer: no such file or folder: ${values.tokenizer}`);
    let ids: number[];
    if (await isClipTokenizerFolder(values.tokenizer)) {
      const tokenizer = await loadClipTokenizer(values.tokenizer, { clean: clean as ClipClean | undefined });
      ids = tokenizer.encode(positionals[0], { addSpecial: !values["no-bos"] });
    } else {
      if (clean !== undefined) throw new UsageError(`--clean is for CLIP tokenizers only, and ${values.tokenizer} is not one`);
      const tokenizer = await loadTokenizer(values.tokenizer);
      ids = tokenizer.encode(positionals[0], { addBos: values["no-bos"] ? false : undefined });
    }
    process.stdout.write(values.json ? `${JSON.stringify({ ids })}\n` : `${ids.join(" ")}\n`);
    return 0;
  },
};

export default command;

/** `wgsl-vlm search`: the images of an index nearest a text or an image. */
import { parseArgs } from "node:util";
import { LoadedIndex, readManifest } from "../embed/image_index.js";
import { UsageError, type Command } from "./command.js";
import { CLIP_LOAD_USAGE, CLIP_OPTIONS, loadClipFrom } from "./clip_options.js";
import { numberOption } from "./options.js";

const command: Command = {
  summary: "search an index (wgsl-vlm index) by a text or an image",
  usage: `usage: wgsl-vlm search --index INDEX (--text TEXT | --image FILE) [--top K] [--json]
  --index INDEX    an index made by wgsl-vlm index
  --text TEXT      find the images this text describes best
  --image FILE     find the images most like this one
  --top K          how many (default 10)
  --json           print [{"path", "score"}]
  --model DIR      the CLIP model (default: the one the index was made with, by its path)
${CLIP_LOAD_USAGE}
Scores are cosines between unit vectors; the search compares the query with every image (exact).`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: { ...CLIP_OPTIONS, index: { type: "string" }, text: { type: "string" }, image: { type: "string" }, top: { type: "string" }, json: { type: "boolean" } },
    });
    if (!values.index) throw new UsageError("--index INDEX is required");
    if ((values.text === undefined) === (values.image === undefined)) throw new UsageError("give --text TEXT or --image FILE (one of them)");
    const top = numberOption(values.top, "top", 10, (n) => Number.isInteger(n) && n >= 1);
    const manifest = await readManifest(values.index);
    const { clip, folder } = await loadClipFrom(values, manifest.model.path);
    let index: LoadedIndex | undefined;
    try {
      index = await LoadedIndex.open(clip, folder, values.index);
      const [query] = values.text !== undefined ? await clip.embedTexts([values.text]) : await clip.embedImages([values.image!]);
      const hits = await index.search(query, top);
      if (values.json) process.stdout.write(`${JSON.stringify(hits.map((h) => ({ path: h.path, score: h.score })))}\n`);
      else for (const h of hits) process.stdout.write(`${h.score.toFixed(4)}  ${h.path}\n`);
      return 0;
    } finally {
      index?.dispose();
      clip.dispose();
    }
  },
};

export default command;

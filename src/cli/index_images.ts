/** `wgsl-vlm index`: every image of a folder embedded with CLIP, into a resumable index for `search`. */
import { parseArgs } from "node:util";
import { SingleBar } from "cli-progress";
import { buildIndex } from "../embed/image_index.js";
import { UsageError, type Command } from "./command.js";
import { CLIP_OPTIONS, CLIP_USAGE, loadClipFrom } from "./clip_options.js";

const command: Command = {
  summary: "embed every image of a folder into a search index (CLIP), resumably",
  usage: `usage: wgsl-vlm index --model DIR --images FOLDER --out INDEX
  --images FOLDER  the images: every file in it and its subfolders that is a JPEG, PNG, WebP,
                   GIF or TIFF by its first bytes
  --out INDEX      the index folder (made if absent). Rerunning brings it up to date: only new
                   and changed images are embedded, removed ones are dropped; a run killed
                   midway loses at most the batch in flight
${CLIP_USAGE}
Exit status 0 when every image was embedded, 1 when some could not be read (listed on stderr;
the next run tries them again).`,
  async run(argv) {
    const { values } = parseArgs({ args: argv, options: { ...CLIP_OPTIONS, images: { type: "string" }, out: { type: "string" } } });
    if (!values.images) throw new UsageError("--images FOLDER is required");
    if (!values.out) throw new UsageError("--out INDEX is required");
    const { clip, folder } = await loadClipFrom(values);
    // On a terminal a bar redrawn in place; otherwise (a log, CI) a plain line every few seconds.
    const bar = values.quiet
      ? null
      : new SingleBar({ stream: process.stderr, format: "embedding {bar} {value}/{total} images | {rate} images/s | {eta_formatted} left", noTTYOutput: true, notTTYSchedule: 5000, hideCursor: false });
    const started = performance.now();
    let running = false;
    try {
      const report = await buildIndex(clip, folder, values.images, values.out, {
        onProgress: ({ done, todo }) => {
          const rate = (done / Math.max((performance.now() - started) / 1000, 1e-3)).toFixed(1);
          if (!running) bar?.start(todo, done, { rate });
          running = true;
          bar?.update(done, { rate });
        },
      });
      if (running) bar?.stop();
      for (const f of report.failed) process.stderr.write(`could not embed ${f.path}: ${f.error}\n`);
      process.stdout.write(
        `${values.out}: ${report.images} images (${report.embedded} embedded now, ${report.reused} kept, ${report.dropped} dropped` +
          `${report.failed.length ? `, ${report.failed.length} failed` : ""})\n`,
      );
      return report.failed.length > 0 ? 1 : 0;
    } finally {
      if (running) bar?.stop();
      clip.dispose();
    }
  },
};

export default command;

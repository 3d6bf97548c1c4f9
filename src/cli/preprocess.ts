/**
 * `wgsl-vlm preprocess`: images → the `pixel_values` tensor CLIPImageProcessor would make, as
 * safetensors; with a LlavaNextImageProcessor config, the anyres tiles and `image_sizes`.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { checkOutputPath } from "../files/write.js";
import { CONFIG_FILE_NAME, loadPreprocessorConfig, defaultPreprocessorConfig } from "../image/config.js";
import { DEFAULT_MAX_PIXELS } from "../image/decode.js";
import { preprocessAnyresImages } from "../image/anyres.js";
import { preprocessImages } from "../image/preprocess.js";
import { writeSafetensors } from "../weights/safetensors_writer.js";
import { UsageError, type Command } from "./command.js";
import { numberOption } from "./options.js";

const command: Command = {
  summary: "preprocess images into pixel_values (CLIPImageProcessor, LlavaNextImageProcessor) and write them as safetensors",
  usage: `usage: wgsl-vlm preprocess --image PATH [--image PATH ...] --out FILE.safetensors [--model DIR] [--pad-to-square] [--force]
  --image PATH       an image (JPEG, PNG, WebP, GIF first frame, TIFF); repeat for a batch
  --out FILE         where to write pixel_values, float32 [images, 3, height, width]; never
                     one of the inputs. With a LlavaNextImageProcessor config (LLaVA-NeXT):
                     pixel_values [images, tiles, 3, S, S] (per image the base tile, then the
                     grid row by row; fewer tiles padded with zero tiles, as do_pad does) and
                     image_sizes, int64 [images, 2], each image's (height, width)
  --force            replace FILE if it exists
  --model DIR        model folder whose preprocessor_config.json to follow (or the JSON file
                     itself); without one, CLIPImageProcessor's defaults (224 pixels)
  --pad-to-square    pad each image to a square of the mean colour first (LLaVA's "pad";
                     not with LlavaNextImageProcessor, which tiles instead)
  --max-pixels N     refuse images with more pixels than N (default ${DEFAULT_MAX_PIXELS})`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        image: { type: "string", multiple: true },
        out: { type: "string" },
        model: { type: "string" },
        "pad-to-square": { type: "boolean" },
        "max-pixels": { type: "string" },
        force: { type: "boolean" },
      },
    });
    const images = values.image ?? [];
    if (images.length === 0) throw new UsageError("give at least one --image");
    if (!values.out) throw new UsageError("--out is required");
    const maxPixels = numberOption(values["max-pixels"], "max-pixels", DEFAULT_MAX_PIXELS, (n) => Number.isSafeInteger(n) && n >= 1);

    const inputs = [...images, ...(values.model ? [values.model, join(values.model, CONFIG_FILE_NAME)] : [])];
    const write = { force: values.force ?? false, inputs };
    await checkOutputPath(values.out, write); // before the work, and again as it is written
    const config = values.model ? await loadPreprocessorConfig(values.model) : defaultPreprocessorConfig();
    const padToSquare = values["pad-to-square"] ?? false;
    if (config.anyres) {
      if (padToSquare) throw new UsageError(`--pad-to-square does not apply to ${config.source}: LlavaNextImageProcessor tiles the image instead`);
      const batch = await preprocessAnyresImages(images, config, { maxPixels });
      await writeSafetensors(
        values.out,
        {
          pixel_values: { dtype: "F32", shape: batch.shape, data: batch.data },
          image_sizes: { dtype: "I64", shape: [images.length, 2], data: batch.imageSizes },
        },
        { preprocessor_config: config.source, images: JSON.stringify(images) },
        write,
      );
      process.stdout.write(
        `wrote pixel_values [${batch.shape.join(", ")}] and image_sizes [${images.length}, 2] to ${values.out} (preprocessing: ${config.source})\n`,
      );
      return 0;
    }
    const pixelValues = await preprocessImages(images, config, { padToSquare, maxPixels });
    await writeSafetensors(
      values.out,
      { pixel_values: { dtype: "F32", shape: pixelValues.shape, data: pixelValues.data } },
      { preprocessor_config: config.source, images: JSON.stringify(images), pad_to_square: String(padToSquare) },
      write,
    );
    process.stdout.write(`wrote pixel_values [${pixelValues.shape.join(", ")}] to ${values.out} (preprocessing: ${config.source})\n`);
    return 0;
  },
};

export default command;

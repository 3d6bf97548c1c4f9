// Packs make_fixtures' output (the folder given) into test/fixtures/ggml-quants.safetensors:
// `input` F32 [rows, 512], and for each type `<type>.blocks` U8 [bytes] and `<type>.dequant` F32 [rows, 512].
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeSafetensors, type TensorToWrite } from "../../src/weights/safetensors_writer.js";

const [from, to, commit = "?"] = process.argv.slice(2);
const COLS = 512;
const floats = async (name: string) => new Float32Array((await readFile(join(from, name))).buffer.slice(0));
const input = await floats("input");
const rows = input.length / COLS;
const tensors: Record<string, TensorToWrite> = { input: { dtype: "F32", shape: [rows, COLS], data: input } };
for (const type of ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_K", "q5_K", "q6_K"]) {
  const blocks = new Uint8Array(await readFile(join(from, `${type}.blocks`)));
  tensors[`${type.toUpperCase()}.blocks`] = { dtype: "U8", shape: [blocks.byteLength], data: blocks };
  tensors[`${type.toUpperCase()}.dequant`] = { dtype: "F32", shape: [rows, COLS], data: await floats(`${type}.dequant`) };
}
await writeSafetensors(to, tensors, { source: `ggml ${commit}: quantize_row_*_ref and dequantize_row_* (scripts/ggml-quant-fixtures)` }, { force: true });

/**
 * What `--model` names, resolved to files: a Hugging Face folder (config.json and safetensors),
 * llama.cpp's GGUF text model (with its mmproj file for LLaVA: given, or the one GGUF file
 * beside it whose general.architecture is "clip"; without one, the text model alone), a
 * folder holding such a pair, or an Ollama model (`ollama:llava`, or a manifest's path), whose
 * blobs are that same pair.
 *
 * In a folder of GGUF files the text model is the one whose general.architecture is not
 * "clip" and the mmproj the one whose is; a folder holding several of either (say Q4_K_M and
 * Q8_0 of the same model) is refused with the list, since picking one would be a guess.
 */
import { readdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { CheckpointError } from "./checkpoint.js";
import { MODEL_CONFIG_FILE } from "./config.js";
import { GgufFile, isGgufFile } from "./gguf.js";
import { isOllamaManifest, isOllamaRef, resolveOllamaModel } from "./ollama.js";

export type ModelFiles =
  | { format: "huggingface"; folder: string }
  | {
      format: "gguf";
      text: string;
      mmproj?: string;
      /** For an Ollama model: its name, and the chat template it ships (a Go template, not Jinja). */
      ollama?: { name: string; template?: string };
    };

const isGgufName = (name: string) => name.toLowerCase().endsWith(".gguf");

async function kind(path: string): Promise<"file" | "folder" | "other" | "missing"> {
  const s = await stat(path).catch(() => undefined);
  return s === undefined ? "missing" : s.isFile() ? "file" : s.isDirectory() ? "folder" : "other";
}

/** Whether a GGUF file is an mmproj (a CLIP tower): read from its header only. */
async function isMmproj(path: string): Promise<boolean> {
  const file = await GgufFile.open(path);
  try {
    const arch = file.metadata.get("general.architecture");
    return arch?.type === "STRING" && arch.value === "clip";
  } finally {
    await file.close();
  }
}

/** The one mmproj GGUF in the folder of text model `text`, if there is one; several are refused with the list. */
async function mmprojBeside(text: string): Promise<string | undefined> {
  const folder = dirname(text);
  const names = (await readdir(folder)).filter((n) => isGgufName(n) && join(folder, n) !== text).sort();
  const found: string[] = [];
  for (const name of names) if ((await kind(join(folder, name))) === "file" && (await isMmproj(join(folder, name)))) found.push(name);
  if (found.length > 1) throw new CheckpointError(`${text}: ${folder} holds ${found.length} mmproj files (${found.join(", ")}): pass one with --mmproj`);
  return found[0] && join(folder, found[0]);
}

/** The files behind `model` (and `mmproj`, an explicit mmproj GGUF). */
export async function resolveModelFiles(model: string, mmproj?: string): Promise<ModelFiles> {
  if (mmproj !== undefined && (await kind(mmproj)) !== "file") throw new CheckpointError(`${mmproj}: no such file (the mmproj GGUF)`);
  if (isOllamaRef(model) || ((await kind(model)) === "file" && !isGgufName(model) && (await isOllamaManifest(model)))) {
    const resolved = await resolveOllamaModel(model);
    return { format: "gguf", text: resolved.model, mmproj: mmproj ?? resolved.projector, ollama: { name: resolved.name, template: resolved.template } };
  }
  const what = await kind(model);
  // (A missing path, or anything else that is no GGUF, is the Hugging Face loader's to refuse, with its hints.)
  if (what === "missing") return { format: "huggingface", folder: model };
  if (what === "file") {
    if (!isGgufName(model) && !(await isGgufFile(model))) {
      return { format: "huggingface", folder: model }; // refused by the Hugging Face loader with its own hint
    }
    return { format: "gguf", text: model, mmproj: mmproj ?? (await mmprojBeside(model)) };
  }
  if (what !== "folder") return { format: "huggingface", folder: model };
  if ((await kind(join(model, MODEL_CONFIG_FILE))) === "file") {
    if (mmproj !== undefined) throw new CheckpointError(`${model}: --mmproj goes with a GGUF text model, not a Hugging Face folder`);
    return { format: "huggingface", folder: model };
  }
  const ggufs = (await readdir(model)).filter(isGgufName).sort();
  if (ggufs.length === 0) return { format: "huggingface", folder: model };
  const texts: string[] = [];
  const projectors: string[] = [];
  for (const name of ggufs) ((await isMmproj(join(model, name))) ? projectors : texts).push(name);
  if (texts.length !== 1) {
    throw new CheckpointError(
      texts.length === 0
        ? `${model}: its GGUF files (${ggufs.join(", ")}) are all mmproj files; the text model is missing`
        : `${model}: holds ${texts.length} GGUF text models (${texts.join(", ")}): pass the one to load`,
    );
  }
  if (mmproj === undefined && projectors.length > 1) throw new CheckpointError(`${model}: holds ${projectors.length} mmproj files (${projectors.join(", ")}): pass one with --mmproj`);
  return { format: "gguf", text: join(model, texts[0]), mmproj: mmproj ?? (projectors[0] && join(model, projectors[0])) };
}

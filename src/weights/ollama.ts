/**
 * Models pulled with Ollama (`ollama pull llava`), found on disk without the Ollama server.
 *
 * Ollama keeps its models under $OLLAMA_MODELS (by default ~/.ollama/models; the variable is
 * read with surrounding spaces and quotes trimmed, as Ollama's envconfig does) in two folders:
 *
 *   manifests/<host>/<namespace>/<model>/<tag>   one JSON manifest per pulled name
 *   blobs/sha256-<hex>                           the content, one file per digest
 *
 * (blobs were once named `sha256:<hex>`; Ollama renames them at start-up, but a copy made by
 * hand or an old install may still have them, so both names are tried.) A manifest is a
 * Docker image manifest v2: `schemaVersion` 2, a `mediaType`, a `config` layer (the model's
 * JSON description) and `layers`, each `{mediaType, digest: "sha256:<hex>", size}`. The media
 * types read here:
 *
 *   application/vnd.ollama.image.model      the language model, a GGUF
 *   application/vnd.ollama.image.projector  for LLaVA, the mmproj GGUF (vision tower + projector)
 *   application/vnd.ollama.image.template   the prompt template (Go text/template syntax);
 *   application/vnd.ollama.image.prompt     its older name
 *   application/vnd.ollama.image.system     the default system message (text)
 *   application/vnd.ollama.image.params     default options (JSON: stop, temperature, ...)
 *
 * and refused: `...adapter` (a LoRA adapter to apply to the model), `...tensor` (a model
 * stored as loose safetensors tensors rather than a GGUF), and more than one model layer
 * (a GGUF split into shards). Other layers (license, messages, config) are not read.
 *
 * A name is `[host/][namespace/]model[:tag]`, filled with Ollama's defaults
 * (registry.ollama.ai, library, latest) and held to its rules for each part's characters, so
 * that a name can only ever point at one file below manifests/ (no "..", no absolute path, no
 * backslash). Here it is written `ollama:<name>`, which is how a caller tells it from a path.
 *
 * Nothing in a manifest is trusted: it is read within a size limit and parsed strictly
 * (json.ts), every field used is type-checked, a digest must be `sha256:` and 64 hex digits
 * before it becomes a file name, and each blob used must be a regular file of exactly the size
 * the layer gives. Its sha256 is checked only on request (`verifyDigest`): the model blob of a
 * 7B model is 4 GB.
 */
import { createHash } from "node:crypto";
import { readdir, stat, type FileHandle } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import type { FileKind } from "../files/limits.js";
import { openRegularFile, readTextFileWithin } from "../files/read.js";
import { JsonError, parseJson } from "./json.js";

export class OllamaError extends Error {
  override name = "OllamaError";
}

/** What a reference starts with: `ollama:llava`, `ollama:llava:13b`. */
export const OLLAMA_PREFIX = "ollama:";

export const DEFAULT_OLLAMA_HOST = "registry.ollama.ai";
export const DEFAULT_OLLAMA_NAMESPACE = "library";
export const DEFAULT_OLLAMA_TAG = "latest";

export const OLLAMA_MEDIA_TYPES = {
  model: "application/vnd.ollama.image.model",
  projector: "application/vnd.ollama.image.projector",
  template: "application/vnd.ollama.image.template",
  prompt: "application/vnd.ollama.image.prompt",
  system: "application/vnd.ollama.image.system",
  params: "application/vnd.ollama.image.params",
  license: "application/vnd.ollama.image.license",
  adapter: "application/vnd.ollama.image.adapter",
  tensor: "application/vnd.ollama.image.tensor",
  messages: "application/vnd.ollama.image.messages",
} as const;

const OLLAMA_MEDIA_TYPE_PREFIX = "application/vnd.ollama.image.";

/** A manifest: about 1 KB for a GGUF model; one listing thousands of tensor layers is a few MB. */
export const OLLAMA_MANIFEST_FILE: FileKind = { what: "Ollama manifest", maxBytes: 16 * 2 ** 20 };
/** A template, system message or params layer: a few KB in real models. */
export const OLLAMA_TEXT_LAYER: FileKind = { what: "Ollama template, system or params layer", maxBytes: 4 * 2 ** 20 };
/** isOllamaManifest reads no file bigger than this: it is meant to be cheap. */
const MANIFEST_SNIFF_MAX_BYTES = 1 * 2 ** 20;

// ---------------------------------------------------------------------------------------------
// Names

export interface OllamaName {
  host: string;
  namespace: string;
  model: string;
  tag: string;
}

/**
 * Ollama's rules for each part (types/model/name.go): the first character a letter, a digit or
 * "_", the rest those or "-", "."; a namespace has no "."; a host may also have ":" (a port).
 * Lengths 1..80, a host's 1..350. These rules are what keeps a name inside manifests/.
 */
const PART_RULES: Record<keyof OllamaName, { pattern: RegExp; max: number }> = {
  host: { pattern: /^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/, max: 350 },
  namespace: { pattern: /^[A-Za-z0-9_][A-Za-z0-9_-]*$/, max: 80 },
  model: { pattern: /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, max: 80 },
  tag: { pattern: /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, max: 80 },
};

/** Ollama's name "kinds": `namespace/skill/name` is a skill, not a model. */
const NON_MODEL_KINDS = new Set(["skill", "agent", "mcp"]);

/** Whether `ref` is written as an Ollama reference (`ollama:...`) rather than a path. */
export function isOllamaRef(ref: string): boolean {
  return ref.startsWith(OLLAMA_PREFIX);
}

/**
 * Parses `ollama:[host/][namespace/]model[:tag]` (as Ollama's ParseName does, an `http://` or
 * `https://` before the host dropped) and fills in the defaults.
 */
export function parseOllamaName(ref: string): OllamaName {
  if (!isOllamaRef(ref)) throw new OllamaError(`${JSON.stringify(ref)}: not an Ollama reference (expected ${OLLAMA_PREFIX}<model>[:tag], e.g. ${OLLAMA_PREFIX}llava:13b)`);
  const bad = (why: string): never => {
    throw new OllamaError(`${JSON.stringify(ref)}: not a valid Ollama model name: ${why}`);
  };
  let s = ref.slice(OLLAMA_PREFIX.length);
  if (s === "") bad("the name is empty (expected e.g. ollama:llava)");
  if (s.includes("\\")) bad("it contains a backslash");
  if (/[\u0000-\u0020\u007f]/.test(s)) bad("it contains whitespace or a control character");
  if (s.startsWith("/") || isAbsolute(s)) bad("it is an absolute path (give a name such as llava:13b, or the manifest's path without the ollama: prefix)");
  for (const scheme of ["http://", "https://"]) {
    if (s.startsWith(scheme)) {
      s = s.slice(scheme.length);
      break;
    }
  }

  // ":" may appear in a host (a port) but never in a tag, so the tag is after the last ":" only
  // if no "/" follows it.
  let tag = "";
  const colon = s.lastIndexOf(":");
  if (colon > s.lastIndexOf("/")) {
    tag = s.slice(colon + 1);
    s = s.slice(0, colon);
    if (tag === "") bad('the tag after ":" is empty');
  }
  const parts = s.split("/");
  for (const part of parts) {
    if (part === "." || part === "..") bad(`"${part}" is not a name part (names cannot step out of the models folder)`);
  }
  if (parts.length > 3) {
    if (NON_MODEL_KINDS.has(parts[parts.length - 2])) bad(`it names an Ollama ${parts[parts.length - 2]}, not a model`);
    bad(`${parts.length} parts separated by "/"; at most 3 (host/namespace/model)`);
  }
  if (parts.length === 3 && NON_MODEL_KINDS.has(parts[1])) bad(`it names an Ollama ${parts[1]}, not a model`);
  const [host, namespace, model] =
    parts.length === 3 ? parts : parts.length === 2 ? [DEFAULT_OLLAMA_HOST, parts[0], parts[1]] : [DEFAULT_OLLAMA_HOST, DEFAULT_OLLAMA_NAMESPACE, parts[0]];
  const name: OllamaName = { host, namespace, model, tag: tag || DEFAULT_OLLAMA_TAG };

  for (const key of ["host", "namespace", "model", "tag"] as const) {
    const value = name[key];
    const rule = PART_RULES[key];
    if (value === "") bad(`the ${key} is empty`);
    if (value.length > rule.max) bad(`the ${key} is ${value.length} characters, over ${rule.max}`);
    if (!rule.pattern.test(value)) {
      const allowed = key === "host" ? 'letters, digits, "_", "-", "." and ":"' : key === "namespace" ? 'letters, digits, "_" and "-"' : 'letters, digits, "_", "-" and "."';
      bad(`the ${key} ${JSON.stringify(value)} may only have ${allowed}, and must start with a letter, digit or "_"`);
    }
  }
  return name;
}

/** host/namespace/model:tag, in full. */
export function formatOllamaName(name: OllamaName): string {
  return `${name.host}/${name.namespace}/${name.model}:${name.tag}`;
}

/** The name as Ollama shows it (`ollama list`): the default host, and then namespace, left out. */
export function displayOllamaName(name: OllamaName): string {
  if (name.host.toLowerCase() !== DEFAULT_OLLAMA_HOST) return formatOllamaName(name);
  if (name.namespace.toLowerCase() !== DEFAULT_OLLAMA_NAMESPACE) return `${name.namespace}/${name.model}:${name.tag}`;
  return `${name.model}:${name.tag}`;
}

// ---------------------------------------------------------------------------------------------
// Where things are

export interface OllamaDirOptions {
  /** The models folder (the one holding manifests/ and blobs/); overrides the environment. */
  modelsDir?: string;
  /** The environment to read OLLAMA_MODELS (and HOME) from; process.env by default. */
  env?: Record<string, string | undefined>;
}

/** $OLLAMA_MODELS (spaces and quotes around it trimmed, as Ollama does), else ~/.ollama/models. */
export function ollamaModelsDir(options: OllamaDirOptions = {}): string {
  if (options.modelsDir !== undefined) return resolve(options.modelsDir);
  const env = options.env ?? process.env;
  const fromEnv = (env.OLLAMA_MODELS ?? "").trim().replace(/^["']+|["']+$/g, "");
  if (fromEnv !== "") return resolve(fromEnv);
  const home = (process.platform === "win32" ? env.USERPROFILE : env.HOME) || homedir();
  return join(home, ".ollama", "models");
}

/** The path of a name's manifest below `modelsDir`. */
export function ollamaManifestPath(modelsDir: string, name: OllamaName): string {
  return join(modelsDir, "manifests", name.host, name.namespace, name.model, name.tag);
}

/** The tags pulled for a name's model (the files in its manifests folder), sorted; [] if none. */
export async function listOllamaTags(modelsDir: string, name: OllamaName): Promise<string[]> {
  const folder = dirname(ollamaManifestPath(modelsDir, name));
  try {
    const entries = await readdir(folder, { withFileTypes: true });
    return entries
      .filter((e) => e.isFile() || e.isSymbolicLink())
      .map((e) => e.name)
      .filter((tag) => PART_RULES.tag.pattern.test(tag))
      .sort();
  } catch {
    return [];
  }
}

const DIGEST = /^sha256[:-]([0-9a-fA-F]{64})$/;

/** The two names a blob may have: `sha256-<hex>` (now) and `sha256:<hex>` (older Ollama). */
function blobCandidates(modelsDir: string, hex: string): string[] {
  return [join(modelsDir, "blobs", `sha256-${hex}`), join(modelsDir, "blobs", `sha256:${hex}`)];
}

// ---------------------------------------------------------------------------------------------
// Manifests

export interface OllamaLayer {
  mediaType: string;
  digest: string;
  size: number;
  /** Where this layer came from, for a model built on another (`FROM` in a Modelfile). */
  from?: string;
}

export interface OllamaManifest {
  schemaVersion: number;
  mediaType?: string;
  config?: OllamaLayer;
  layers: OllamaLayer[];
}

/** Checks the parsed JSON of a manifest; `file` names it in errors. */
export function parseOllamaManifest(json: unknown, file: string): OllamaManifest {
  const fail = (why: string): never => {
    throw new OllamaError(`${file}: not an Ollama manifest: ${why}`);
  };
  if (!isObject(json)) fail(`the JSON is ${describe(json)}, not an object`);
  const root = json as Record<string, unknown>;
  if (root.schemaVersion !== 2) fail(`"schemaVersion" is ${describe(root.schemaVersion)}, not 2`);
  if (root.mediaType !== undefined && typeof root.mediaType !== "string") fail(`"mediaType" is ${describe(root.mediaType)}, not a string`);
  if (!Array.isArray(root.layers)) fail(`"layers" is ${describe(root.layers)}, not an array`);
  const layer = (value: unknown, where: string): OllamaLayer => {
    if (!isObject(value)) fail(`${where} is ${describe(value)}, not an object`);
    const l = value as Record<string, unknown>;
    if (typeof l.mediaType !== "string") fail(`${where}: "mediaType" is ${describe(l.mediaType)}, not a string`);
    if (typeof l.digest !== "string") fail(`${where}: "digest" is ${describe(l.digest)}, not a string`);
    if (typeof l.size !== "number" || !Number.isSafeInteger(l.size) || l.size < 0) fail(`${where}: "size" is ${describe(l.size)}, not a byte count`);
    if (l.from !== undefined && typeof l.from !== "string") fail(`${where}: "from" is ${describe(l.from)}, not a string`);
    return { mediaType: l.mediaType as string, digest: l.digest as string, size: l.size as number, ...(typeof l.from === "string" ? { from: l.from } : {}) };
  };
  const layers = (root.layers as unknown[]).map((l, i) => layer(l, `layer ${i}`));
  const manifest: OllamaManifest = { schemaVersion: 2, layers };
  if (typeof root.mediaType === "string") manifest.mediaType = root.mediaType;
  if (root.config !== undefined && root.config !== null) manifest.config = layer(root.config, `"config"`);
  return manifest;
}

/**
 * Whether `path` looks like an Ollama manifest: a regular file of at most 1 MiB holding a JSON
 * object with schemaVersion 2 and at least one layer of an Ollama media type. Never throws, and
 * reads no more than a few bytes of anything that does not start like JSON (a GGUF, a folder).
 */
export async function isOllamaManifest(path: string): Promise<boolean> {
  let opened: Awaited<ReturnType<typeof openRegularFile>>;
  try {
    opened = await openRegularFile(path);
  } catch {
    return false;
  }
  const { handle, size } = opened;
  try {
    if (size === 0 || size > MANIFEST_SNIFF_MAX_BYTES) return false;
    const head = Buffer.alloc(Math.min(size, 64));
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    if (head.subarray(0, bytesRead).toString("latin1").trimStart()[0] !== "{") return false;
    const bytes = Buffer.alloc(size);
    let filled = 0;
    while (filled < size) {
      const r = await handle.read(bytes, filled, size - filled, filled);
      if (r.bytesRead === 0) break;
      filled += r.bytesRead;
    }
    const json = parseJson(bytes.subarray(0, filled).toString("utf8"));
    if (!isObject(json)) return false;
    const { schemaVersion, layers } = json as Record<string, unknown>;
    return (
      schemaVersion === 2 &&
      Array.isArray(layers) &&
      layers.some((l) => isObject(l) && typeof (l as Record<string, unknown>).mediaType === "string" && ((l as Record<string, unknown>).mediaType as string).startsWith(OLLAMA_MEDIA_TYPE_PREFIX))
    );
  } catch {
    return false;
  } finally {
    await handle.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Resolving a model

export interface ResolveOllamaOptions extends OllamaDirOptions {
  /** Hash every blob used and compare with its digest (reads the whole model: off by default). */
  verifyDigest?: boolean;
}

export interface OllamaModel {
  /** The manifest file read. */
  manifest: string;
  /** The models folder the blobs were looked for in. */
  modelsDir: string;
  /** The name as Ollama shows it (llava:latest), or for a manifest outside a models folder its path. */
  name: string;
  /** The model GGUF blob. */
  model: string;
  modelDigest: string;
  /** The mmproj GGUF blob (vision tower and projector), for a multimodal model. */
  projector?: string;
  projectorDigest?: string;
  /** The prompt template's text (Go text/template syntax). */
  template?: string;
  /** The default system message. */
  system?: string;
  /** The default options (stop, temperature, num_ctx, ...). */
  params?: Record<string, unknown>;
  /** Every layer of the manifest, as it gives them. */
  layers: OllamaLayer[];
}

/**
 * Finds the files of an Ollama model: `ref` is either `ollama:<name>` (looked up in
 * options.modelsDir, $OLLAMA_MODELS or ~/.ollama/models) or the path of a manifest file (whose
 * blobs are looked for in the models folder it sits in, unless options.modelsDir says where).
 */
export async function resolveOllamaModel(ref: string, options: ResolveOllamaOptions = {}): Promise<OllamaModel> {
  let manifestPath: string;
  let modelsDir: string;
  let display: string;
  let pulled = true; // whether `display` is a name `ollama pull` takes
  if (isOllamaRef(ref)) {
    const name = parseOllamaName(ref);
    modelsDir = ollamaModelsDir(options);
    manifestPath = ollamaManifestPath(modelsDir, name);
    display = displayOllamaName(name);
    await explainMissingManifest(ref, name, modelsDir, manifestPath);
  } else {
    manifestPath = resolve(ref);
    const found = modelsDirOf(manifestPath);
    modelsDir = options.modelsDir !== undefined ? resolve(options.modelsDir) : (found?.modelsDir ?? ollamaModelsDir(options));
    display = found?.name !== undefined ? displayOllamaName(found.name) : manifestPath;
    pulled = found?.name !== undefined;
  }

  const text = await readTextFileWithin(manifestPath, OLLAMA_MANIFEST_FILE, { as: OllamaError });
  let json: unknown;
  try {
    json = parseJson(text);
  } catch (error) {
    if (!(error instanceof JsonError)) throw error;
    throw new OllamaError(`${manifestPath}: not a readable Ollama manifest: not valid JSON (${error.message})`);
  }
  const manifest = parseOllamaManifest(json, manifestPath);
  const pullHint = pulled
    ? `the model may be partly pulled or its blobs removed: run \`ollama pull ${display}\``
    : `the model may be partly pulled or its blobs removed (blobs are looked for in ${join(modelsDir, "blobs")}; give modelsDir if they are elsewhere)`;

  const describeLayer = (i: number) => `layer ${i} (${manifest.layers[i].mediaType}, ${manifest.layers[i].digest})`;
  const indicesOf = (...types: string[]) => manifest.layers.flatMap((l, i) => (types.includes(baseMediaType(l.mediaType)) ? [i] : []));

  const adapters = indicesOf(OLLAMA_MEDIA_TYPES.adapter);
  if (adapters.length > 0) {
    throw new OllamaError(
      `${manifestPath}: ${describeLayer(adapters[0])} is a LoRA adapter: models with adapter layers are not supported (use the base model it was built from${manifest.layers[adapters[0]].from ? `, ${manifest.layers[adapters[0]].from}` : ""}, or merge the adapter into the weights first)`,
    );
  }
  const models = indicesOf(OLLAMA_MEDIA_TYPES.model);
  if (models.length === 0) {
    const tensors = indicesOf(OLLAMA_MEDIA_TYPES.tensor).length;
    throw new OllamaError(
      tensors > 0
        ? `${manifestPath}: no model layer (${OLLAMA_MEDIA_TYPES.model}): the model is stored as ${tensors} tensor layers (Ollama's safetensors format), not as a GGUF; only GGUF models are supported`
        : `${manifestPath}: no model layer (${OLLAMA_MEDIA_TYPES.model}) among its ${manifest.layers.length} layers: it does not hold a GGUF model`,
    );
  }
  if (models.length > 1) {
    throw new OllamaError(`${manifestPath}: ${models.length} model layers (${models.map(describeLayer).join("; ")}): a GGUF split into shards is not supported`);
  }
  const projectors = indicesOf(OLLAMA_MEDIA_TYPES.projector);
  if (projectors.length > 1) {
    throw new OllamaError(`${manifestPath}: ${projectors.length} projector layers (${projectors.map(describeLayer).join("; ")}): at most one is supported`);
  }

  const blob = async (i: number): Promise<string> => {
    const layer = manifest.layers[i];
    const where = `${manifestPath}: ${describeLayer(i)}`;
    const match = DIGEST.exec(layer.digest);
    if (!match) throw new OllamaError(`${where}: the digest is not "sha256:" and 64 hex digits`);
    const hex = match[1];
    let path: string | undefined;
    for (const candidate of blobCandidates(modelsDir, hex)) {
      try {
        await stat(candidate);
        path = candidate;
        break;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== "ENOENT" && code !== "ENOTDIR") throw new OllamaError(`${where}: cannot stat blob ${candidate} (${code ?? String(error)})`);
      }
    }
    if (path === undefined) throw new OllamaError(`${where}: blob ${blobCandidates(modelsDir, hex)[0]} is missing; ${pullHint}`);
    let opened: Awaited<ReturnType<typeof openRegularFile>>;
    try {
      opened = await openRegularFile(path, { as: OllamaError });
    } catch (error) {
      throw new OllamaError(`${where}: ${(error as Error).message}`);
    }
    const { handle, size } = opened;
    try {
      if (size !== layer.size) {
        throw new OllamaError(`${where}: blob ${path} is ${size} bytes, but the manifest gives ${layer.size}; ${size < layer.size ? pullHint : "the blob or the manifest is damaged"}`);
      }
      if (options.verifyDigest) {
        const actual = await sha256Of(handle, size, `${where}: blob ${path}`);
        if (actual !== hex.toLowerCase()) {
          throw new OllamaError(`${where}: blob ${path} has sha256 ${actual}, not the digest the manifest gives: the blob is damaged${pulled ? `; remove it and run \`ollama pull ${display}\`` : ""}`);
        }
      }
    } finally {
      await handle.close();
    }
    return path;
  };
  const readText = async (i: number): Promise<string> => {
    const path = await blob(i);
    try {
      return await readTextFileWithin(path, OLLAMA_TEXT_LAYER, { as: OllamaError });
    } catch (error) {
      throw new OllamaError(`${manifestPath}: ${describeLayer(i)}: ${(error as Error).message}`);
    }
  };

  const result: OllamaModel = {
    manifest: manifestPath,
    modelsDir,
    name: display,
    model: await blob(models[0]),
    modelDigest: manifest.layers[models[0]].digest,
    layers: manifest.layers,
  };
  if (projectors.length === 1) {
    result.projector = await blob(projectors[0]);
    result.projectorDigest = manifest.layers[projectors[0]].digest;
  }
  // As Ollama does, a later template, system or params layer replaces an earlier one.
  const templates = indicesOf(OLLAMA_MEDIA_TYPES.template, OLLAMA_MEDIA_TYPES.prompt);
  if (templates.length > 0) result.template = await readText(templates[templates.length - 1]);
  const systems = indicesOf(OLLAMA_MEDIA_TYPES.system);
  if (systems.length > 0) result.system = await readText(systems[systems.length - 1]);
  const params = indicesOf(OLLAMA_MEDIA_TYPES.params);
  if (params.length > 0) {
    const i = params[params.length - 1];
    const text = await readText(i);
    let value: unknown;
    try {
      value = parseJson(text);
    } catch (error) {
      if (!(error instanceof JsonError)) throw error;
      throw new OllamaError(`${manifestPath}: ${describeLayer(i)}: the params are not valid JSON (${error.message})`);
    }
    if (!isObject(value)) throw new OllamaError(`${manifestPath}: ${describeLayer(i)}: the params are ${describe(value)}, not a JSON object`);
    result.params = value as Record<string, unknown>;
  }
  return result;
}

/** Throws, saying what there is instead, if a reference's manifest does not exist. */
async function explainMissingManifest(ref: string, name: OllamaName, modelsDir: string, manifestPath: string): Promise<void> {
  try {
    await stat(manifestPath);
    return; // exists: any other problem is the read's to report
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") return;
  }
  const shown = displayOllamaName(name);
  if (!(await isDirectory(join(modelsDir, "manifests")))) {
    throw new OllamaError(`${ref}: no Ollama models folder at ${modelsDir} (no manifests/ in it); set OLLAMA_MODELS to where \`ollama pull\` puts models, or pull it: \`ollama pull ${shown}\``);
  }
  const tags = await listOllamaTags(modelsDir, name);
  if (tags.length > 0) {
    const others = tags.map((tag) => `${OLLAMA_PREFIX}${displayOllamaName({ ...name, tag })}`).join(", ");
    throw new OllamaError(`${ref}: tag "${name.tag}" is not pulled (no ${manifestPath}); pulled tags of ${name.model}: ${others}; or run \`ollama pull ${shown}\``);
  }
  // Names are kept as typed, but Ollama matches them regardless of case (and macOS and Windows
  // folders do too): on Linux, say if the model is there under another case.
  const namespaceDir = dirname(dirname(manifestPath));
  const similar = (await readdir(namespaceDir).catch(() => [] as string[])).filter((m) => m.toLowerCase() === name.model.toLowerCase() && m !== name.model);
  const hint = similar.length > 0 ? ` (there is ${similar.map((m) => join(namespaceDir, m)).join(", ")}: names are case-sensitive here)` : "";
  throw new OllamaError(`${ref}: not pulled: no ${manifestPath}${hint}; run \`ollama pull ${shown}\``);
}

/** For a manifest at <models>/manifests/<host>/<ns>/<model>/<tag>: the models folder and the name. */
function modelsDirOf(manifestPath: string): { modelsDir: string; name?: OllamaName } | undefined {
  for (let dir = dirname(manifestPath); dirname(dir) !== dir; dir = dirname(dir)) {
    if (basename(dir) !== "manifests") continue;
    const parts = relative(dir, manifestPath).split(sep);
    const name = parts.length === 4 ? { host: parts[0], namespace: parts[1], model: parts[2], tag: parts[3] } : undefined;
    return { modelsDir: dirname(dir), ...(name ? { name } : {}) };
  }
  return undefined;
}

/** A media type without its parameters (`application/vnd.ollama.image.template; name=x`). */
function baseMediaType(mediaType: string): string {
  return mediaType.split(";")[0].trim();
}

const HASH_CHUNK_BYTES = 8 * 2 ** 20;

async function sha256Of(handle: FileHandle, size: number, what: string): Promise<string> {
  const hash = createHash("sha256");
  const buffer = Buffer.allocUnsafe(Math.min(HASH_CHUNK_BYTES, Math.max(size, 1)));
  let position = 0;
  for (;;) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(buffer, 0, buffer.length, position));
    } catch (error) {
      throw new OllamaError(`${what}: read failed at byte ${position} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
    }
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
  if (position !== size) throw new OllamaError(`${what}: changed while it was read (${position} bytes read, ${size} expected)`);
  return hash.digest("hex");
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === undefined) return "missing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  return `${typeof value} ${String(value)}`;
}

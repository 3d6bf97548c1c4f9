/**
 * Ollama models on disk (src/weights/ollama.ts): names parsed and filled with Ollama's defaults
 * (and refused when they could step out of the models folder), models resolved by reference
 * (through OLLAMA_MODELS, ~/.ollama/models or modelsDir) and by manifest path, against a fake
 * models folder whose blobs have their real sha256 as names; then each way a model can be
 * broken, each an OllamaError naming the manifest and the layer.
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rename, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  displayOllamaName,
  isOllamaManifest,
  listOllamaTags,
  OLLAMA_MEDIA_TYPES,
  OllamaError,
  ollamaModelsDir,
  parseOllamaName,
  resolveOllamaModel,
  type OllamaName,
} from "../src/weights/ollama.js";
import { encodeGguf } from "../src/weights/gguf_writer.js";

const root = await mkdtemp(join(tmpdir(), "wgsl-vlm-ollama-"));
afterAll(() => rm(root, { recursive: true, force: true }));

const sha256 = (bytes: string | Uint8Array) => createHash("sha256").update(bytes).digest("hex");

interface BlobSpec {
  mediaType: string;
  content: string | Uint8Array;
}

/** Writes blobs (named `sha256-<hex>`, or `sha256:<hex>` with oldNames) and a manifest. */
async function pull(
  modelsDir: string,
  name: OllamaName,
  blobs: BlobSpec[],
  options: { oldNames?: boolean; edit?: (manifest: { layers: Record<string, unknown>[] } & Record<string, unknown>) => void } = {},
): Promise<{ manifestPath: string; paths: string[]; digests: string[] }> {
  await mkdir(join(modelsDir, "blobs"), { recursive: true });
  const paths: string[] = [];
  const digests: string[] = [];
  for (const blob of blobs) {
    const hex = sha256(blob.content);
    const path = join(modelsDir, "blobs", `sha256${options.oldNames ? ":" : "-"}${hex}`);
    await writeFile(path, blob.content);
    paths.push(path);
    digests.push(`sha256:${hex}`);
  }
  const config = JSON.stringify({ model_format: "gguf", model_family: "llama" });
  const configHex = sha256(config);
  await writeFile(join(modelsDir, "blobs", `sha256-${configHex}`), config);
  const manifest = {
    schemaVersion: 2,
    mediaType: "application/vnd.docker.distribution.manifest.v2+json",
    config: { mediaType: "application/vnd.docker.container.image.v1+json", digest: `sha256:${configHex}`, size: config.length },
    layers: blobs.map((b, i) => ({ mediaType: b.mediaType, digest: digests[i], size: Buffer.byteLength(b.content) }) as Record<string, unknown>),
  };
  options.edit?.(manifest);
  const manifestPath = join(modelsDir, "manifests", name.host, name.namespace, name.model, name.tag);
  await mkdir(join(manifestPath, ".."), { recursive: true });
  await writeFile(manifestPath, JSON.stringify(manifest));
  return { manifestPath, paths, digests };
}

const lib = (model: string, tag = "latest"): OllamaName => ({ host: "registry.ollama.ai", namespace: "library", model, tag });

const MODEL = encodeGguf({ metadata: { "general.architecture": { type: "STRING", value: "llama" } }, tensors: {} });
const PROJECTOR = encodeGguf({ metadata: { "general.architecture": { type: "STRING", value: "clip" } }, tensors: {} });
const TEMPLATE = "{{ .System }}\nUSER: {{ .Prompt }}\nASSISTANT: ";
const PARAMS = JSON.stringify({ stop: ["USER:", "ASSISTANT:"], temperature: 0.2 });
const SYSTEM = "You are a helpful assistant.";
const LLAVA: BlobSpec[] = [
  { mediaType: OLLAMA_MEDIA_TYPES.model, content: MODEL },
  { mediaType: OLLAMA_MEDIA_TYPES.projector, content: PROJECTOR },
  { mediaType: OLLAMA_MEDIA_TYPES.license, content: "LLAMA 2 COMMUNITY LICENSE" },
  { mediaType: OLLAMA_MEDIA_TYPES.template, content: TEMPLATE },
  { mediaType: OLLAMA_MEDIA_TYPES.system, content: SYSTEM },
  { mediaType: OLLAMA_MEDIA_TYPES.params, content: PARAMS },
];

/** The OllamaError `promise` rejects with. */
async function failure(promise: Promise<unknown>): Promise<OllamaError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OllamaError);
  return error as OllamaError;
}

describe("parseOllamaName", () => {
  it("fills Ollama's defaults: host registry.ollama.ai, namespace library, tag latest", () => {
    expect(parseOllamaName("ollama:llava")).toEqual(lib("llava"));
    expect(parseOllamaName("ollama:llava:13b")).toEqual(lib("llava", "13b"));
    expect(parseOllamaName("ollama:llava:7b-v1.6-mistral-q4_0")).toEqual(lib("llava", "7b-v1.6-mistral-q4_0"));
    expect(parseOllamaName("ollama:user/model:tag")).toEqual({ host: "registry.ollama.ai", namespace: "user", model: "model", tag: "tag" });
    expect(parseOllamaName("ollama:user/model")).toEqual({ host: "registry.ollama.ai", namespace: "user", model: "model", tag: "latest" });
    expect(parseOllamaName("ollama:example.com/ns/model:tag")).toEqual({ host: "example.com", namespace: "ns", model: "model", tag: "tag" });
    expect(parseOllamaName("ollama:hf.co/bartowski/llava-v1.5-7b-GGUF:Q4_K_M")).toEqual({ host: "hf.co", namespace: "bartowski", model: "llava-v1.5-7b-GGUF", tag: "Q4_K_M" });
  });

  it("takes a host with a port, and drops an http(s):// scheme, as Ollama does", () => {
    expect(parseOllamaName("ollama:localhost:5000/ns/model")).toEqual({ host: "localhost:5000", namespace: "ns", model: "model", tag: "latest" });
    expect(parseOllamaName("ollama:localhost:5000/ns/model:v2")).toEqual({ host: "localhost:5000", namespace: "ns", model: "model", tag: "v2" });
    expect(parseOllamaName("ollama:https://example.com/ns/model:t")).toEqual({ host: "example.com", namespace: "ns", model: "model", tag: "t" });
  });

  it("shows names as `ollama list` does", () => {
    expect(displayOllamaName(parseOllamaName("ollama:llava"))).toBe("llava:latest");
    expect(displayOllamaName(parseOllamaName("ollama:user/m:t"))).toBe("user/m:t");
    expect(displayOllamaName(parseOllamaName("ollama:h.io/ns/m:t"))).toBe("h.io/ns/m:t");
  });

  it.each([
    ["llava", /not an Ollama reference/],
    ["ollama:", /empty/],
    ["ollama:llava:", /tag after ":" is empty/],
    ["ollama::13b", /model is empty/],
    ["ollama:user/", /model is empty/],
    ["ollama:a//b", /namespace is empty/],
    ["ollama:/etc/passwd", /absolute path/],
    ["ollama:..", /"\.\." is not a name part/],
    ["ollama:../../etc/passwd", /"\.\." is not a name part/],
    ["ollama:library/..:latest", /"\.\." is not a name part/],
    ["ollama:llava:..", /tag "\.\." may only have/],
    ["ollama:.hidden", /model ".hidden" may only have/],
    ["ollama:..\\..\\x", /backslash/],
    ["ollama:lla va", /whitespace/],
    ["ollama:llava\n", /whitespace or a control character/],
    ["ollama:my.ns/model", /namespace "my.ns" may only have/],
    ["ollama:a/b/c/d", /4 parts/],
    ["ollama:user/skill/thing", /an Ollama skill, not a model/],
    ["ollama:llava:13b/x", /namespace "llava:13b" may only have/], // a ":" before the last "/" is not a tag
    [`ollama:${"m".repeat(81)}`, /81 characters, over 80/],
  ])("refuses %j", (ref, message) => {
    let error: unknown;
    try {
      parseOllamaName(ref);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(OllamaError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).toContain(JSON.stringify(ref));
  });
});

describe("ollamaModelsDir", () => {
  it("reads OLLAMA_MODELS (trimmed of spaces and quotes), else ~/.ollama/models; modelsDir wins", () => {
    expect(ollamaModelsDir({ env: { OLLAMA_MODELS: "/srv/ollama" } })).toBe("/srv/ollama");
    expect(ollamaModelsDir({ env: { OLLAMA_MODELS: ` "/srv/ollama" ` } })).toBe("/srv/ollama");
    expect(ollamaModelsDir({ env: { HOME: "/home/u", USERPROFILE: "C:\\Users\\u" } })).toBe(process.platform === "win32" ? join("C:\\Users\\u", ".ollama", "models") : "/home/u/.ollama/models");
    expect(ollamaModelsDir({ env: { HOME: "/home/u", OLLAMA_MODELS: "" } })).toBe("/home/u/.ollama/models");
    expect(ollamaModelsDir({ modelsDir: "/x", env: { OLLAMA_MODELS: "/srv/ollama" } })).toBe("/x");
  });
});

describe("resolveOllamaModel", () => {
  const models = join(root, "models");
  let llava: Awaited<ReturnType<typeof pull>>;

  it("resolves a reference through OLLAMA_MODELS", async () => {
    llava = await pull(models, lib("llava"), LLAVA);
    const m = await resolveOllamaModel("ollama:llava", { env: { OLLAMA_MODELS: models } });
    expect(m.manifest).toBe(llava.manifestPath);
    expect(m.modelsDir).toBe(models);
    expect(m.name).toBe("llava:latest");
    expect(m.model).toBe(llava.paths[0]);
    expect(m.modelDigest).toBe(llava.digests[0]);
    expect(m.projector).toBe(llava.paths[1]);
    expect(m.projectorDigest).toBe(llava.digests[1]);
    expect(m.template).toBe(TEMPLATE);
    expect(m.system).toBe(SYSTEM);
    expect(m.params).toEqual({ stop: ["USER:", "ASSISTANT:"], temperature: 0.2 });
    expect(m.layers).toHaveLength(LLAVA.length);
    // verifyDigest: every blob used hashes to its digest
    await expect(resolveOllamaModel("ollama:llava:latest", { env: { OLLAMA_MODELS: models }, verifyDigest: true })).resolves.toMatchObject({ model: llava.paths[0] });
  });

  it("resolves a reference through ~/.ollama/models, and through modelsDir", async () => {
    const home = join(root, "home");
    const homeModels = join(home, ".ollama", "models");
    const pulled = await pull(homeModels, lib("llava", "7b"), LLAVA);
    await expect(resolveOllamaModel("ollama:llava:7b", { env: { HOME: home, USERPROFILE: home } })).resolves.toMatchObject({ manifest: pulled.manifestPath, model: pulled.paths[0] });
    // modelsDir overrides OLLAMA_MODELS
    await expect(resolveOllamaModel("ollama:llava:7b", { modelsDir: homeModels, env: { OLLAMA_MODELS: join(root, "nowhere") } })).resolves.toMatchObject({ model: pulled.paths[0] });
  });

  it("resolves a user's model and a model from another host", async () => {
    const user = await pull(models, { host: "registry.ollama.ai", namespace: "someone", model: "llava-phi", tag: "q4" }, LLAVA.slice(0, 2));
    await expect(resolveOllamaModel("ollama:someone/llava-phi:q4", { modelsDir: models })).resolves.toMatchObject({ name: "someone/llava-phi:q4", model: user.paths[0] });
    const hf = await pull(models, { host: "hf.co", namespace: "org", model: "m", tag: "Q8_0" }, LLAVA.slice(0, 1));
    const m = await resolveOllamaModel("ollama:hf.co/org/m:Q8_0", { modelsDir: models });
    expect(m).toMatchObject({ name: "hf.co/org/m:Q8_0", model: hf.paths[0] });
    expect(m.projector).toBeUndefined();
    expect(m.template).toBeUndefined();
    expect(m.params).toBeUndefined();
  });

  it("resolves a manifest path, finding the models folder it sits in", async () => {
    const m = await resolveOllamaModel(llava.manifestPath);
    expect(m).toMatchObject({ manifest: llava.manifestPath, modelsDir: models, name: "llava:latest", model: llava.paths[0], projector: llava.paths[1], template: TEMPLATE });
  });

  it("resolves a manifest copied out of its models folder when modelsDir says where the blobs are", async () => {
    const copy = join(root, "loose-manifest.json");
    const { readFile } = await import("node:fs/promises");
    await writeFile(copy, await readFile(llava.manifestPath));
    await expect(resolveOllamaModel(copy, { modelsDir: models })).resolves.toMatchObject({ manifest: copy, name: copy, model: llava.paths[0] });
    // without modelsDir: OLLAMA_MODELS, then ~/.ollama/models
    await expect(resolveOllamaModel(copy, { env: { OLLAMA_MODELS: models } })).resolves.toMatchObject({ model: llava.paths[0] });
    const error = await failure(resolveOllamaModel(copy, { env: { OLLAMA_MODELS: join(root, "empty") } }));
    expect(error.message).toContain(copy);
    expect(error.message).toContain("give modelsDir");
  });

  it("finds blobs under their older name, sha256:<hex>", async () => {
    const dir = join(root, "old-names");
    const pulled = await pull(dir, lib("llava"), LLAVA, { oldNames: true });
    expect(pulled.paths[0]).toContain("sha256:");
    const m = await resolveOllamaModel("ollama:llava", { modelsDir: dir, verifyDigest: true });
    expect(m.model).toBe(pulled.paths[0]);
    expect(m.projector).toBe(pulled.paths[1]);
    expect(m.template).toBe(TEMPLATE);
  });

  it("takes the older template media type, application/vnd.ollama.image.prompt", async () => {
    const dir = join(root, "prompt");
    await pull(dir, lib("old"), [LLAVA[0], { mediaType: OLLAMA_MEDIA_TYPES.prompt, content: "[INST] {{ .Prompt }} [/INST]" }]);
    await expect(resolveOllamaModel("ollama:old", { modelsDir: dir })).resolves.toMatchObject({ template: "[INST] {{ .Prompt }} [/INST]" });
  });

  it("says a missing blob may be partly pulled, naming the manifest, the layer and `ollama pull`", async () => {
    const dir = join(root, "missing");
    const pulled = await pull(dir, lib("llava", "13b"), LLAVA);
    await rm(pulled.paths[1]);
    const error = await failure(resolveOllamaModel("ollama:llava:13b", { modelsDir: dir }));
    expect(error.message).toContain(pulled.manifestPath);
    expect(error.message).toContain(`layer 1 (${OLLAMA_MEDIA_TYPES.projector}, ${pulled.digests[1]})`);
    expect(error.message).toContain(pulled.paths[1]);
    expect(error.message).toMatch(/partly pulled/);
    expect(error.message).toContain("`ollama pull llava:13b`");
  });

  it("refuses a blob whose size is not the layer's", async () => {
    const dir = join(root, "size");
    const pulled = await pull(dir, lib("llava"), LLAVA);
    await truncate(pulled.paths[0], 50);
    const error = await failure(resolveOllamaModel("ollama:llava", { modelsDir: dir }));
    expect(error.message).toContain(pulled.manifestPath);
    expect(error.message).toContain(`layer 0 (${OLLAMA_MEDIA_TYPES.model}`);
    expect(error.message).toContain(`is 50 bytes, but the manifest gives ${MODEL.byteLength}`);
    expect(error.message).toContain("ollama pull llava:latest");
    // a blob longer than the layer: damaged
    await writeFile(pulled.paths[0], Buffer.concat([MODEL, Buffer.from("x")]));
    expect((await failure(resolveOllamaModel("ollama:llava", { modelsDir: dir }))).message).toMatch(/damaged/);
  });

  it("refuses a blob whose bytes are not its digest, with verifyDigest only", async () => {
    const dir = join(root, "digest");
    const pulled = await pull(dir, lib("llava"), LLAVA);
    const damaged = Buffer.from(PROJECTOR);
    damaged[damaged.length - 1] ^= 1;
    await writeFile(pulled.paths[1], damaged);
    await expect(resolveOllamaModel("ollama:llava", { modelsDir: dir })).resolves.toMatchObject({ projector: pulled.paths[1] });
    const error = await failure(resolveOllamaModel("ollama:llava", { modelsDir: dir, verifyDigest: true }));
    expect(error.message).toContain(pulled.manifestPath);
    expect(error.message).toContain(`layer 1 (${OLLAMA_MEDIA_TYPES.projector}, ${pulled.digests[1]})`);
    expect(error.message).toContain(`has sha256 ${sha256(damaged)}`);
  });

  it("refuses a manifest without a model layer", async () => {
    const dir = join(root, "no-model");
    const pulled = await pull(dir, lib("x"), LLAVA.slice(1));
    const error = await failure(resolveOllamaModel("ollama:x", { modelsDir: dir }));
    expect(error.message).toContain(pulled.manifestPath);
    expect(error.message).toContain(`no model layer (${OLLAMA_MEDIA_TYPES.model})`);
    // a model stored as tensor layers (Ollama's safetensors format)
    await pull(dir, lib("st"), [{ mediaType: OLLAMA_MEDIA_TYPES.tensor, content: "t0" }, { mediaType: OLLAMA_MEDIA_TYPES.tensor, content: "t1" }]);
    expect((await failure(resolveOllamaModel("ollama:st", { modelsDir: dir }))).message).toMatch(/2 tensor layers .*not as a GGUF/);
  });

  it("refuses a LoRA adapter layer, two model layers or two projectors", async () => {
    const dir = join(root, "adapter");
    const pulled = await pull(dir, lib("tuned"), [...LLAVA, { mediaType: OLLAMA_MEDIA_TYPES.adapter, content: "lora" }]);
    const error = await failure(resolveOllamaModel("ollama:tuned", { modelsDir: dir }));
    expect(error.message).toContain(pulled.manifestPath);
    expect(error.message).toContain(`layer ${LLAVA.length} (${OLLAMA_MEDIA_TYPES.adapter}`);
    expect(error.message).toMatch(/LoRA adapter.*not supported/);

    await pull(dir, lib("split"), [LLAVA[0], { mediaType: OLLAMA_MEDIA_TYPES.model, content: "shard 2" }]);
    expect((await failure(resolveOllamaModel("ollama:split", { modelsDir: dir }))).message).toMatch(/2 model layers.*split into shards is not supported/);
    await pull(dir, lib("two-proj"), [LLAVA[0], LLAVA[1], { mediaType: OLLAMA_MEDIA_TYPES.projector, content: "p2" }]);
    expect((await failure(resolveOllamaModel("ollama:two-proj", { modelsDir: dir }))).message).toMatch(/2 projector layers.*at most one/);
  });

  it("lists the tags pulled for a model when the tag asked for is not", async () => {
    const dir = join(root, "tags");
    await pull(dir, lib("llava", "13b"), LLAVA.slice(0, 2));
    await pull(dir, lib("llava", "latest"), LLAVA.slice(0, 2));
    expect(await listOllamaTags(dir, lib("llava"))).toEqual(["13b", "latest"]);
    const error = await failure(resolveOllamaModel("ollama:llava:34b", { modelsDir: dir }));
    expect(error.message).toContain("ollama:llava:34b");
    expect(error.message).toContain(join(dir, "manifests", "registry.ollama.ai", "library", "llava", "34b"));
    expect(error.message).toContain("ollama:llava:13b, ollama:llava:latest");
    // a model never pulled: say so, and how
    const never = await failure(resolveOllamaModel("ollama:bakllava", { modelsDir: dir }));
    expect(never.message).toMatch(/not pulled.*`ollama pull bakllava:latest`/);
    // ... and if it is there in another case
    expect((await failure(resolveOllamaModel("ollama:LLaVA:13b", { modelsDir: dir }))).message).toContain("case-sensitive");
    // no models folder at all
    expect((await failure(resolveOllamaModel("ollama:llava", { modelsDir: join(root, "nowhere") }))).message).toMatch(/no Ollama models folder.*OLLAMA_MODELS/);
  });

  it("refuses a manifest that is not JSON, or whose fields have the wrong types", async () => {
    const dir = join(root, "bad-json");
    const name = lib("bad");
    const pulled = await pull(dir, name, LLAVA.slice(0, 1));
    await writeFile(pulled.manifestPath, "{ not json");
    const error = await failure(resolveOllamaModel("ollama:bad", { modelsDir: dir }));
    expect(error.message).toContain(pulled.manifestPath);
    expect(error.message).toMatch(/not valid JSON/);

    const cases: [(m: { layers: Record<string, unknown>[] } & Record<string, unknown>) => void, RegExp][] = [
      [(m) => (m.schemaVersion = 1), /"schemaVersion" is number 1, not 2/],
      [(m) => (m.layers = {} as never), /"layers" is an object, not an array/],
      [(m) => (m.layers[0].size = "12"), /layer 0: "size" is the string "12", not a byte count/],
      [(m) => (m.layers[0].size = -1), /layer 0: "size" is number -1/],
      [(m) => (m.layers[0].size = 1.5), /layer 0: "size" is number 1.5/],
      [(m) => delete m.layers[0].digest, /layer 0: "digest" is missing/],
      [(m) => (m.layers[0].mediaType = 7), /layer 0: "mediaType" is number 7/],
      [(m) => (m.config = "x"), /"config" is the string "x", not an object/],
      [(m) => (m.layers[0].digest = "sha256:../../../etc/passwd"), /layer 0 .*: the digest is not "sha256:" and 64 hex digits/],
      [(m) => (m.layers[0].digest = "md5:0123"), /the digest is not "sha256:"/],
    ];
    for (const [edit, message] of cases) {
      const p = await pull(dir, name, LLAVA.slice(0, 1), { edit });
      const e = await failure(resolveOllamaModel(p.manifestPath));
      expect(e.message).toContain(p.manifestPath);
      expect(e.message).toMatch(message);
    }
  });

  it("refuses a params layer that is not a JSON object, and a blob that is a folder", async () => {
    const dir = join(root, "bad-params");
    await pull(dir, lib("p"), [LLAVA[0], { mediaType: OLLAMA_MEDIA_TYPES.params, content: "[1,2]" }]);
    expect((await failure(resolveOllamaModel("ollama:p", { modelsDir: dir }))).message).toMatch(/params are an array, not a JSON object/);
    const pulled = await pull(dir, lib("f"), LLAVA.slice(0, 1));
    await rm(pulled.paths[0]);
    await mkdir(pulled.paths[0]);
    const error = await failure(resolveOllamaModel("ollama:f", { modelsDir: dir }));
    expect(error.message).toContain(pulled.manifestPath);
    expect(error.message).toMatch(/not a regular file but a directory/);
  });
});

describe("isOllamaManifest", () => {
  it("is true for a manifest, false for a GGUF, other JSON, a folder or nothing", async () => {
    const dir = join(root, "sniff");
    const pulled = await pull(dir, lib("llava"), LLAVA);
    expect(await isOllamaManifest(pulled.manifestPath)).toBe(true);
    expect(await isOllamaManifest(pulled.paths[0])).toBe(false); // the GGUF blob
    const json = join(dir, "config.json");
    await writeFile(json, JSON.stringify({ model_type: "llava", schemaVersion: 2 }));
    expect(await isOllamaManifest(json)).toBe(false);
    const docker = join(dir, "docker.json");
    await writeFile(docker, JSON.stringify({ schemaVersion: 2, layers: [{ mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", digest: "sha256:00", size: 1 }] }));
    expect(await isOllamaManifest(docker)).toBe(false);
    const v1 = join(dir, "v1.json");
    await writeFile(v1, JSON.stringify({ schemaVersion: 1, layers: [{ mediaType: OLLAMA_MEDIA_TYPES.model }] }));
    expect(await isOllamaManifest(v1)).toBe(false);
    const text = join(dir, "notes.txt");
    await writeFile(text, "schemaVersion 2");
    expect(await isOllamaManifest(text)).toBe(false);
    expect(await isOllamaManifest(join(dir, "manifests"))).toBe(false); // a folder
    expect(await isOllamaManifest(join(dir, "absent"))).toBe(false);
    expect(await isOllamaManifest(join(dir, "empty"))).toBe(false);
    // moved out of its models folder it is still a manifest
    const moved = join(dir, "moved");
    await rename(pulled.manifestPath, moved);
    expect(await isOllamaManifest(moved)).toBe(true);
  });
});

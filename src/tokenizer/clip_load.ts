/**
 * A CLIP tokenizer from a model folder as the Hub's openai/clip-vit-* repositories hold it:
 * vocab.json (token -> id), merges.txt (a "#version" line, then one "left right" merge a line, in
 * rank order), and optionally tokenizer_config.json (special tokens, model_max_length,
 * tokenizer_class) and special_tokens_map.json (special tokens, overriding the config).
 * Such folders usually hold a tokenizer.json too; it is not read (vocab.json and merges.txt say
 * the same, and the tokenizer.json reader is LLaMA's). All merges are used: transformers reads at
 * most 48894 (the number OpenAI's vocabulary has), which no real merges.txt goes past.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { readTextFileWithin } from "../files/read.js";
import { JSON_CONFIG_FILE, TOKENIZER_JSON_FILE, type FileKind } from "../files/limits.js";
import { CLIP_CONTEXT_LENGTH, ClipTokenizer, type ClipSpecialTokens } from "./clip_bpe.js";
import type { ClipClean } from "./clip_clean.js";
import { applySpecialTokensMap, emptyConfig, parseJsonObject, parseTokenizerConfig } from "./config.js";
import { TokenizerError } from "./errors.js";

/** vocab.json and merges.txt are as big as a tokenizer.json's vocabulary and merges: the same limit. */
const VOCAB_FILE: FileKind = { what: "vocab.json", maxBytes: TOKENIZER_JSON_FILE.maxBytes };
const MERGES_FILE: FileKind = { what: "merges.txt", maxBytes: TOKENIZER_JSON_FILE.maxBytes };

const CLIP_CLASSES = new Set(["CLIPTokenizer", "CLIPTokenizerFast"]);

/**
 * transformers writes model_max_length 1e30 (its VERY_LARGE_INTEGER) when no length was set; any
 * length above this is taken as unset, and CLIP's 77 used.
 */
const MAX_SANE_CONTEXT = 1_000_000;

const DEFAULT_SPECIAL: ClipSpecialTokens = { bos: "<|startoftext|>", eos: "<|endoftext|>", pad: "<|endoftext|>", unk: "<|endoftext|>" };

export interface ClipLoadOptions {
  clean?: ClipClean;
}

/**
 * Whether a folder holds a CLIP tokenizer: its tokenizer_config.json names CLIPTokenizer or
 * CLIPTokenizerFast, or it names no tokenizer class and the folder has vocab.json and merges.txt.
 * (A folder whose config names another class, GPT-2's say, is not one, whatever files it has.)
 */
export async function isClipTokenizerFolder(folder: string): Promise<boolean> {
  if (!(await isDirectory(folder))) return false;
  const configPath = join(folder, "tokenizer_config.json");
  if (await isFile(configPath)) {
    const json = parseJsonObject(await readTextFileWithin(configPath, JSON_CONFIG_FILE, { as: TokenizerError }), configPath);
    if (typeof json.tokenizer_class === "string") return CLIP_CLASSES.has(json.tokenizer_class);
  }
  return (await isFile(join(folder, "vocab.json"))) && (await isFile(join(folder, "merges.txt")));
}

export async function loadClipTokenizer(folder: string, options: ClipLoadOptions = {}): Promise<ClipTokenizer> {
  const vocabPath = join(folder, "vocab.json");
  const mergesPath = join(folder, "merges.txt");
  for (const path of [vocabPath, mergesPath]) {
    if (!(await isFile(path))) throw new TokenizerError(`${path}: missing (a CLIP tokenizer folder needs vocab.json and merges.txt)`);
  }
  const vocab = parseClipVocab(await readTextFileWithin(vocabPath, VOCAB_FILE, { as: TokenizerError }), vocabPath);
  const merges = parseClipMerges(await readTextFileWithin(mergesPath, MERGES_FILE, { as: TokenizerError }), mergesPath, vocab);

  const configPath = join(folder, "tokenizer_config.json");
  const mapPath = join(folder, "special_tokens_map.json");
  let config = emptyConfig(configPath);
  let contextLength = CLIP_CONTEXT_LENGTH;
  if (await isFile(configPath)) {
    const text = await readTextFileWithin(configPath, JSON_CONFIG_FILE, { as: TokenizerError });
    config = parseTokenizerConfig(text, configPath);
    contextLength = readContextLength(parseJsonObject(text, configPath).model_max_length, configPath);
  }
  if (await isFile(mapPath)) config = applySpecialTokensMap(config, await readTextFileWithin(mapPath, JSON_CONFIG_FILE, { as: TokenizerError }), mapPath);
  const special: ClipSpecialTokens = {
    bos: config.bosToken ?? DEFAULT_SPECIAL.bos,
    eos: config.eosToken ?? DEFAULT_SPECIAL.eos,
    pad: config.padToken ?? DEFAULT_SPECIAL.pad,
    unk: config.unkToken ?? DEFAULT_SPECIAL.unk,
  };
  for (const [role, token] of Object.entries(special)) {
    if (!vocab.has(token)) throw new TokenizerError(`${folder}: the ${role} token ${JSON.stringify(token)} is not in ${vocabPath}`);
  }
  return new ClipTokenizer({ vocab, merges, special, contextLength, clean: options.clean });
}

/** vocab.json: a JSON object of token -> distinct non-negative integer id. */
export function parseClipVocab(text: string, source: string): Map<string, number> {
  const json = parseJsonObject(text, source);
  const vocab = new Map<string, number>();
  const seen = new Map<number, string>();
  for (const [token, id] of Object.entries(json)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) throw new TokenizerError(`${source}: ${JSON.stringify(token)}: the id must be a non-negative integer, got ${JSON.stringify(id)}`);
    const other = seen.get(id);
    if (other !== undefined) throw new TokenizerError(`${source}: id ${id} is given to both ${JSON.stringify(other)} and ${JSON.stringify(token)}`);
    seen.set(id, token);
    vocab.set(token, id);
  }
  if (vocab.size === 0) throw new TokenizerError(`${source}: the vocabulary is empty`);
  return vocab;
}

/** merges.txt: an optional "#version" first line, then "left right" a line; both pieces and their join in the vocabulary. */
export function parseClipMerges(text: string, source: string, vocab: Map<string, number>): [string, string][] {
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1].trim() === "") lines.pop();
  const merges: [string, string][] = [];
  lines.forEach((line, index) => {
    if (index === 0 && line.startsWith("#version")) return;
    const where = `${source}: line ${index + 1}`;
    const pieces = line.split(" ");
    if (pieces.length !== 2 || pieces[0] === "" || pieces[1] === "") throw new TokenizerError(`${where}: expected two symbols separated by one space, got ${JSON.stringify(line)}`);
    for (const piece of [...pieces, pieces[0] + pieces[1]]) {
      if (!vocab.has(piece)) throw new TokenizerError(`${where}: ${JSON.stringify(piece)} is not in the vocabulary`);
    }
    merges.push([pieces[0], pieces[1]]);
  });
  return merges;
}

function readContextLength(value: unknown, source: string): number {
  if (value === undefined || value === null) return CLIP_CONTEXT_LENGTH;
  if (typeof value !== "number" || !(value >= 2) || (value <= MAX_SANE_CONTEXT && !Number.isInteger(value))) {
    throw new TokenizerError(`${source}: model_max_length must be an integer of at least 2, got ${JSON.stringify(value)}`);
  }
  return value > MAX_SANE_CONTEXT ? CLIP_CONTEXT_LENGTH : value;
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() ?? false;
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

/**
 * loadTokenizer(path): PATH is a tokenizer.model, a tokenizer.json, or a model folder.
 *
 * A folder uses its tokenizer.json when it has one (what transformers' AutoTokenizer loads, the
 * fast tokenizer), else its tokenizer.model, together with tokenizer_config.json and
 * special_tokens_map.json when present. A file given directly is used on its own: a bare
 * tokenizer.model behaves exactly like SentencePiece (plus BOS). A file ending in .json is read
 * as tokenizer.json, anything else as a SentencePiece model.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { JSON_CONFIG_FILE, TOKENIZER_JSON_FILE, TOKENIZER_MODEL_FILE } from "../files/limits.js";
import { pathExists, readFileWithin, readTextFileWithin } from "../files/read.js";
import { applySpecialTokensMap, emptyConfig, parseTokenizerConfig, type TokenizerConfig } from "./config.js";
import { TokenizerError } from "./errors.js";
import { parseSentencePieceModel } from "./sentencepiece_model.js";
import { sentencePieceTokenizer } from "./sentencepiece_tokenizer.js";
import type { Tokenizer } from "./tokenizer.js";
import { tokenizerFromJson } from "./tokenizer_json.js";

export async function loadTokenizer(path: string): Promise<Tokenizer> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new TokenizerError(`${path}: no such file or folder`);
  if (info.isDirectory()) return loadFolder(path);
  return loadFile(path, undefined);
}

async function loadFolder(folder: string): Promise<Tokenizer> {
  const config = await readConfig(folder);
  for (const name of ["tokenizer.json", "tokenizer.model"]) {
    const file = join(folder, name);
    if (await pathExists(file)) return loadFile(file, config);
  }
  throw new TokenizerError(`${folder}: no tokenizer.json or tokenizer.model in this folder`);
}

async function loadFile(path: string, config: TokenizerConfig | undefined): Promise<Tokenizer> {
  const isJson = path.endsWith(".json");
  const bytes = await readFileWithin(path, isJson ? TOKENIZER_JSON_FILE : TOKENIZER_MODEL_FILE, { as: TokenizerError });
  if (isJson) return tokenizerFromJson(bytes.toString("utf8"), path, config);
  return sentencePieceTokenizer(parseSentencePieceModel(bytes, path), config);
}

/** tokenizer_config.json then special_tokens_map.json, or undefined if the folder has neither. */
async function readConfig(folder: string): Promise<TokenizerConfig | undefined> {
  const configFile = join(folder, "tokenizer_config.json");
  const mapFile = join(folder, "special_tokens_map.json");
  const hasConfig = await pathExists(configFile);
  const hasMap = await pathExists(mapFile);
  if (!hasConfig && !hasMap) return undefined;
  const read = (file: string) => readTextFileWithin(file, JSON_CONFIG_FILE, { as: TokenizerError });
  let config = hasConfig ? parseTokenizerConfig(await read(configFile), configFile) : emptyConfig(mapFile);
  if (hasMap) config = applySpecialTokensMap(config, await read(mapFile), mapFile);
  return config;
}

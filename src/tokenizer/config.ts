/**
 * transformers' tokenizer_config.json and special_tokens_map.json: the settings that sit next to
 * the tokenizer proper in a model folder.
 *
 *   tokenizer_config.json  add_bos_token, add_eos_token, legacy, bos/eos/unk/pad_token,
 *                          added_tokens_decoder { "32000": { content, special, lstrip, rstrip,
 *                          normalized, single_word } }
 *   special_tokens_map.json  bos/eos/unk/pad_token, additional_special_tokens (overriding the
 *                          config, as transformers' from_pretrained does)
 * A token may be written as a string or as an AddedToken object with a "content" field.
 */
import type { AddedToken } from "./added_tokens.js";
import { TokenizerError } from "./errors.js";

export interface TokenizerConfig {
  source: string;
  addBosToken?: boolean;
  addEosToken?: boolean;
  legacy?: boolean;
  addedTokens: AddedToken[];
  bosToken?: string;
  eosToken?: string;
  unkToken?: string;
  padToken?: string;
  additionalSpecialTokens: string[];
}

export type JsonObject = { [key: string]: unknown };

/** JSON.parse with an error that names the file, and says so when the file was cut short. */
export function parseJsonObject(text: string, source: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    // JSON.parse stopping at the very end of the text means the text stopped first.
    const position = /at position (\d+)/.exec(message);
    const atEnd = /end of JSON input/.test(message) || (position !== null && Number(position[1]) >= text.trimEnd().length);
    throw new TokenizerError(atEnd ? `${source} is truncated: it ends before its JSON does (${message})` : `${source}: not valid JSON: ${message}`);
  }
  if (!isObject(value)) throw new TokenizerError(`${source}: expected a JSON object at the top level`);
  return value;
}

export function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function emptyConfig(source: string): TokenizerConfig {
  return { source, addedTokens: [], additionalSpecialTokens: [] };
}

export function parseTokenizerConfig(text: string, source: string): TokenizerConfig {
  const json = parseJsonObject(text, source);
  const config = emptyConfig(source);
  config.addBosToken = optionalBoolean(json, "add_bos_token", source);
  config.addEosToken = optionalBoolean(json, "add_eos_token", source);
  config.legacy = optionalBoolean(json, "legacy", source);
  readSpecialTokenNames(json, config, source);
  const decoder = json.added_tokens_decoder;
  if (decoder !== undefined && decoder !== null) {
    if (!isObject(decoder)) throw new TokenizerError(`${source}: added_tokens_decoder must be an object of id -> token`);
    for (const [key, value] of Object.entries(decoder)) {
      const id = Number(key);
      if (!Number.isInteger(id) || id < 0 || String(id) !== key) throw new TokenizerError(`${source}: added_tokens_decoder key '${key}' is not a token id`);
      config.addedTokens.push(parseAddedToken(value, id, `${source}: added_tokens_decoder["${key}"]`));
    }
  }
  return config;
}

/** special_tokens_map.json over a config: its names win. */
export function applySpecialTokensMap(config: TokenizerConfig, text: string, source: string): TokenizerConfig {
  const json = parseJsonObject(text, source);
  const merged = { ...config, additionalSpecialTokens: [...config.additionalSpecialTokens] };
  readSpecialTokenNames(json, merged, source);
  return merged;
}

/**
 * An added token as tokenizer.json's added_tokens and tokenizer_config.json's
 * added_tokens_decoder both write it. single_word tokens are refused: no LLaMA-family tokenizer
 * uses them, and transformers and tokenizers disagree on what they mean.
 */
export function parseAddedToken(value: unknown, id: number, where: string): AddedToken {
  if (!isObject(value)) throw new TokenizerError(`${where}: expected an object with "content"`);
  const content = value.content;
  if (typeof content !== "string" || content === "") throw new TokenizerError(`${where}: "content" must be a non-empty string`);
  const flag = (name: string, fallback: boolean): boolean => {
    const flagValue = value[name];
    if (flagValue === undefined || flagValue === null) return fallback;
    if (typeof flagValue !== "boolean") throw new TokenizerError(`${where}: "${name}" must be true or false`);
    return flagValue;
  };
  if (flag("single_word", false)) throw new TokenizerError(`${where}: single_word added tokens ('${content}') are not supported`);
  const special = flag("special", false);
  return { id, content, special, lstrip: flag("lstrip", false), rstrip: flag("rstrip", false), normalized: flag("normalized", !special) };
}

function readSpecialTokenNames(json: JsonObject, config: TokenizerConfig, source: string): void {
  config.bosToken = tokenName(json, "bos_token", source) ?? config.bosToken;
  config.eosToken = tokenName(json, "eos_token", source) ?? config.eosToken;
  config.unkToken = tokenName(json, "unk_token", source) ?? config.unkToken;
  config.padToken = tokenName(json, "pad_token", source) ?? config.padToken;
  const additional = json.additional_special_tokens;
  if (additional !== undefined && additional !== null) {
    if (!Array.isArray(additional)) throw new TokenizerError(`${source}: additional_special_tokens must be a list`);
    config.additionalSpecialTokens = additional.map((value, i) => {
      const name = tokenContent(value);
      if (name === undefined) throw new TokenizerError(`${source}: additional_special_tokens[${i}] is not a token`);
      return name;
    });
  }
}

function tokenName(json: JsonObject, key: string, source: string): string | undefined {
  const value = json[key];
  if (value === undefined || value === null) return undefined;
  const name = tokenContent(value);
  if (name === undefined) throw new TokenizerError(`${source}: ${key} must be a string or an object with "content"`);
  return name;
}

function tokenContent(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (isObject(value) && typeof value.content === "string") return value.content;
  return undefined;
}

function optionalBoolean(json: JsonObject, key: string, source: string): boolean | undefined {
  const value = json[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean") throw new TokenizerError(`${source}: ${key} must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

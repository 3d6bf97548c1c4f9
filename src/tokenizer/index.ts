/** LLaMA's tokenizer: SentencePiece BPE with byte fallback, from tokenizer.model or tokenizer.json. */
export { loadTokenizer } from "./load.js";
export { Tokenizer, type EncodeOptions } from "./tokenizer.js";
export { StreamingDecoder, type DecodeOptions } from "./decoding.js";
export { TokenizerError } from "./errors.js";
export { parseSentencePieceModel, type SentencePieceModel, type SentencePiece, type PieceType } from "./sentencepiece_model.js";
export { sentencePieceTokenizer } from "./sentencepiece_tokenizer.js";
export { tokenizerFromJson } from "./tokenizer_json.js";
export { tokenizerJsonFromModel, type ConvertOptions } from "./convert.js";
export { parseTokenizerConfig, applySpecialTokensMap, type TokenizerConfig } from "./config.js";
export type { AddedToken } from "./added_tokens.js";
export { sentencePieceModelFromGguf, ggufTokenizer, ggufTokenizerMetadata, GGUF_TOKENIZER_KEYS, type GgufSentencePieceModel, type GgufMetadata, type GgufMetadataValue, type GgufTokenizerValue, type GgufTokenizerOptions, type GgufTokenizerMetadataOptions } from "./gguf_vocab.js";

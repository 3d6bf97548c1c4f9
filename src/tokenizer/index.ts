/** The tokenizers: LLaMA's (SentencePiece BPE with byte fallback, from tokenizer.model or tokenizer.json) and CLIP's (byte-level BPE, from vocab.json + merges.txt). */
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
/** CLIP's tokenizer: byte-level BPE over ftfy- or BasicTokenizer-cleaned text, from vocab.json + merges.txt. */
export { ClipTokenizer, bytesToUnicode, CLIP_CONTEXT_LENGTH, type ClipTokenizerOptions, type ClipSpecialTokens, type ClipEncodeOptions, type ClipBatchOptions, type ClipBatch, type ClipDecodeOptions } from "./clip_bpe.js";
export { cleanClipText, DEFAULT_CLIP_CLEAN, CLIP_CLEANERS, type ClipClean } from "./clip_clean.js";
export { loadClipTokenizer, isClipTokenizerFolder, parseClipVocab, parseClipMerges, type ClipLoadOptions } from "./clip_load.js";

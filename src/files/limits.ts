/**
 * The kinds of file the program reads whole, each with the most bytes it will read of one.
 * A limit is far above the largest real file of its kind, so it only stops a wrong path (a disk
 * image, a video, /dev/zero through a symlink) before it fills memory. safetensors files are not
 * here: they are read in ranges, and their header has its own limit (MAX_HEADER_BYTES).
 */

const MIB = 1024 * 1024;

/** A kind of file: what to call it in errors, and the most bytes one may have. */
export interface FileKind {
  what: string;
  maxBytes: number;
}

/**
 * config.json, preprocessor_config.json, tokenizer_config.json, special_tokens_map.json,
 * model.safetensors.index.json: kilobytes in real checkpoints (a tokenizer_config.json listing
 * thousands of added tokens is a few MB).
 */
export const JSON_CONFIG_FILE: FileKind = { what: "JSON config file", maxBytes: 16 * MIB };

/** tokenizer.json: llava-1.5's is 1.8 MB, LLaMA-3's 9 MB, Gemma's (256k pieces) 33 MB. */
export const TOKENIZER_JSON_FILE: FileKind = { what: "tokenizer.json", maxBytes: 64 * MIB };

/** tokenizer.model (SentencePiece): LLaMA's is 0.5 MB, Gemma's 4 MB. */
export const TOKENIZER_MODEL_FILE: FileKind = { what: "SentencePiece tokenizer.model", maxBytes: 16 * MIB };

/**
 * An image: 512 MiB holds, with room for its headers, the largest image the pixel limit allows
 * (DEFAULT_MAX_PIXELS, PIL's 89.5 million) stored uncompressed as 8-bit RGBA (358 MB), so no
 * image the decoder would accept is refused for its bytes; compressed formats are far smaller.
 */
export const IMAGE_FILE: FileKind = { what: "image file", maxBytes: 512 * MIB };

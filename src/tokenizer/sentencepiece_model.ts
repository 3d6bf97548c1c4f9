/**
 * SentencePiece's `tokenizer.model`: a serialized ModelProto (sentencepiece_model.proto), read
 * field by field with the small reader in protobuf.ts.
 *
 * What we keep:
 *   ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec,
 *                   5 denormalizer_spec
 *   SentencePiece   1 piece (string), 2 score (float), 3 type (NORMAL=1 UNKNOWN=2 CONTROL=3
 *                   USER_DEFINED=4 UNUSED=5 BYTE=6; default NORMAL)
 *   TrainerSpec     3 model_type (UNIGRAM=1 BPE=2 WORD=3 CHAR=4; default UNIGRAM),
 *                   24 treat_whitespace_as_suffix, 35 byte_fallback, 44 unk_surface,
 *                   45..48 unk/bos/eos/pad piece strings
 *   NormalizerSpec  1 name, 2 precompiled_charsmap, 3 add_dummy_prefix (default true),
 *                   4 remove_extra_whitespaces (default true), 5 escape_whitespaces (default true)
 * Everything else (training options, self-test data) is skipped.
 *
 * The checks follow SentencePiece's own model loading (ModelInterface::InitializePieces): no empty
 * or repeated piece, exactly one UNKNOWN piece, and with byte_fallback all 256 <0xNN> pieces.
 * We only run BPE models with the identity normalization (no precompiled character map), which
 * is what LLaMA uses; anything else is refused by name rather than encoded differently.
 */
import { ProtoReader, WIRE_FIXED32, WIRE_LENGTH_DELIMITED, WIRE_VARINT } from "./protobuf.js";
import { TokenizerError } from "./errors.js";

export type PieceType = "normal" | "unknown" | "control" | "user-defined" | "unused" | "byte";

const PIECE_TYPES: Record<number, PieceType> = {
  1: "normal",
  2: "unknown",
  3: "control",
  4: "user-defined",
  5: "unused",
  6: "byte",
};

const MODEL_TYPES: Record<number, string> = { 1: "UNIGRAM", 2: "BPE", 3: "WORD", 4: "CHAR" };

export interface SentencePiece {
  piece: string;
  score: number;
  type: PieceType;
}

export interface SentencePieceModel {
  /** Where it came from, for error messages. */
  source: string;
  pieces: SentencePiece[];
  byteFallback: boolean;
  /** What decoding prints for the unknown piece (" ⁇ " unless the trainer set it). */
  unkSurface: string;
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
  padPiece: string;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

/** Parses and checks a tokenizer.model; `source` names it in errors. */
export function parseSentencePieceModel(bytes: Uint8Array, source: string): SentencePieceModel {
  const reader = new ProtoReader(bytes, source, "SentencePiece model");
  const pieces: SentencePiece[] = [];
  let trainer: TrainerSpec | undefined;
  let normalizer: NormalizerSpec | undefined;
  let denormalizer: NormalizerSpec | undefined;
  while (!reader.done()) {
    const field = reader.field();
    switch (field.number) {
      case 1:
        reader.expect(field, WIRE_LENGTH_DELIMITED, "pieces");
        pieces.push(readPiece(reader.message(`pieces[${pieces.length}]`)));
        break;
      case 2:
        reader.expect(field, WIRE_LENGTH_DELIMITED, "trainer_spec");
        trainer = readTrainerSpec(reader.message("trainer_spec"));
        break;
      case 3:
        reader.expect(field, WIRE_LENGTH_DELIMITED, "normalizer_spec");
        normalizer = readNormalizerSpec(reader.message("normalizer_spec"));
        break;
      case 5:
        reader.expect(field, WIRE_LENGTH_DELIMITED, "denormalizer_spec");
        denormalizer = readNormalizerSpec(reader.message("denormalizer_spec"));
        break;
      default:
        reader.skip(field.wireType);
    }
  }

  if (pieces.length === 0) throw new TokenizerError(`${source}: the model has no pieces (is this a SentencePiece model?)`);
  // SentencePiece always writes both specs, after the pieces: a file cut between two fields
  // parses, only without them (and would be read with the defaults, UNIGRAM and all).
  if (!trainer || !normalizer) {
    throw new TokenizerError(
      `${source} is truncated, or not a whole SentencePiece model: it ends at byte ${bytes.length}, after ${pieces.length} piece${pieces.length === 1 ? "" : "s"}, ` +
        `with no ${trainer ? "normalizer_spec" : "trainer_spec"}`,
    );
  }
  const modelType = MODEL_TYPES[trainer.modelType] ?? `unknown type ${trainer.modelType}`;
  if (modelType !== "BPE") throw new TokenizerError(`${source}: SentencePiece model type ${modelType} is not supported; only BPE (LLaMA's) is`);
  if (trainer.treatWhitespaceAsSuffix) throw new TokenizerError(`${source}: treat_whitespace_as_suffix is not supported`);
  if (normalizer.precompiledCharsmapBytes > 0) {
    throw new TokenizerError(`${source}: normalization rule '${normalizer.name}' (a precompiled character map) is not supported; only the identity normalization is`);
  }
  if (denormalizer && denormalizer.precompiledCharsmapBytes > 0) {
    throw new TokenizerError(`${source}: a denormalization rule ('${denormalizer.name}') is not supported`);
  }
  checkPieces(pieces, trainer.byteFallback, source);

  return {
    source,
    pieces,
    byteFallback: trainer.byteFallback,
    unkSurface: trainer.unkSurface,
    unkPiece: trainer.unkPiece,
    bosPiece: trainer.bosPiece,
    eosPiece: trainer.eosPiece,
    padPiece: trainer.padPiece,
    addDummyPrefix: normalizer.addDummyPrefix,
    removeExtraWhitespaces: normalizer.removeExtraWhitespaces,
    escapeWhitespaces: normalizer.escapeWhitespaces,
  };
}

/** The byte a <0xNN> piece stands for, or -1 if the piece is not of that form. */
export function byteOfPiece(piece: string): number {
  const match = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  return match ? parseInt(match[1], 16) : -1;
}

/** The piece that stands for a byte: <0x0A> for a newline. */
export function pieceOfByte(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`;
}

function readPiece(reader: ProtoReader): SentencePiece {
  let piece = "";
  let score = 0;
  let type = 1;
  while (!reader.done()) {
    const field = reader.field();
    if (field.number === 1) {
      reader.expect(field, WIRE_LENGTH_DELIMITED, "piece");
      piece = reader.string();
    } else if (field.number === 2) {
      reader.expect(field, WIRE_FIXED32, "score");
      score = reader.float();
    } else if (field.number === 3) {
      reader.expect(field, WIRE_VARINT, "type");
      type = reader.int32();
    } else {
      reader.skip(field.wireType);
    }
  }
  const pieceType = PIECE_TYPES[type];
  if (!pieceType) throw new TokenizerError(`${reader.what}: piece '${piece}' has unknown type ${type}`);
  return { piece, score, type: pieceType };
}

interface TrainerSpec {
  modelType: number;
  treatWhitespaceAsSuffix: boolean;
  byteFallback: boolean;
  unkSurface: string;
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
  padPiece: string;
}

function defaultTrainerSpec(): TrainerSpec {
  return {
    modelType: 1,
    treatWhitespaceAsSuffix: false,
    byteFallback: false,
    unkSurface: " \u2047 ",
    unkPiece: "<unk>",
    bosPiece: "<s>",
    eosPiece: "</s>",
    padPiece: "<pad>",
  };
}

function readTrainerSpec(reader: ProtoReader): TrainerSpec {
  const spec = defaultTrainerSpec();
  while (!reader.done()) {
    const field = reader.field();
    switch (field.number) {
      case 3:
        reader.expect(field, WIRE_VARINT, "model_type");
        spec.modelType = reader.int32();
        break;
      case 24:
        reader.expect(field, WIRE_VARINT, "treat_whitespace_as_suffix");
        spec.treatWhitespaceAsSuffix = reader.bool();
        break;
      case 35:
        reader.expect(field, WIRE_VARINT, "byte_fallback");
        spec.byteFallback = reader.bool();
        break;
      case 44:
        reader.expect(field, WIRE_LENGTH_DELIMITED, "unk_surface");
        spec.unkSurface = reader.string();
        break;
      case 45:
        reader.expect(field, WIRE_LENGTH_DELIMITED, "unk_piece");
        spec.unkPiece = reader.string();
        break;
      case 46:
        reader.expect(field, WIRE_LENGTH_DELIMITED, "bos_piece");
        spec.bosPiece = reader.string();
        break;
      case 47:
        reader.expect(field, WIRE_LENGTH_DELIMITED, "eos_piece");
        spec.eosPiece = reader.string();
        break;
      case 48:
        reader.expect(field, WIRE_LENGTH_DELIMITED, "pad_piece");
        spec.padPiece = reader.string();
        break;
      default:
        reader.skip(field.wireType);
    }
  }
  return spec;
}

interface NormalizerSpec {
  name: string;
  precompiledCharsmapBytes: number;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

function defaultNormalizerSpec(): NormalizerSpec {
  return { name: "", precompiledCharsmapBytes: 0, addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true };
}

function readNormalizerSpec(reader: ProtoReader): NormalizerSpec {
  const spec = defaultNormalizerSpec();
  while (!reader.done()) {
    const field = reader.field();
    switch (field.number) {
      case 1:
        reader.expect(field, WIRE_LENGTH_DELIMITED, "name");
        spec.name = reader.string();
        break;
      case 2:
        reader.expect(field, WIRE_LENGTH_DELIMITED, "precompiled_charsmap");
        spec.precompiledCharsmapBytes = reader.byteString().length;
        break;
      case 3:
        reader.expect(field, WIRE_VARINT, "add_dummy_prefix");
        spec.addDummyPrefix = reader.bool();
        break;
      case 4:
        reader.expect(field, WIRE_VARINT, "remove_extra_whitespaces");
        spec.removeExtraWhitespaces = reader.bool();
        break;
      case 5:
        reader.expect(field, WIRE_VARINT, "escape_whitespaces");
        spec.escapeWhitespaces = reader.bool();
        break;
      default:
        reader.skip(field.wireType);
    }
  }
  return spec;
}

function checkPieces(pieces: SentencePiece[], byteFallback: boolean, source: string): void {
  // SentencePiece keeps two maps (mergeable pieces, and the reserved ones); a piece may not repeat
  // within either.
  const mergeable = new Set<string>();
  const reserved = new Set<string>();
  const bytesSeen = new Set<number>();
  let unknowns = 0;
  pieces.forEach(({ piece, type }, id) => {
    if (piece === "") throw new TokenizerError(`${source}: piece ${id} is empty`);
    const map = type === "normal" || type === "user-defined" || type === "unused" ? mergeable : reserved;
    if (map.has(piece)) throw new TokenizerError(`${source}: piece '${piece}' (id ${id}) is defined twice`);
    map.add(piece);
    if (type === "unknown") unknowns++;
    if (type === "byte") {
      if (!byteFallback) throw new TokenizerError(`${source}: byte piece '${piece}' (id ${id}) found although byte_fallback is off`);
      const byte = byteOfPiece(piece);
      if (byte < 0) throw new TokenizerError(`${source}: byte piece '${piece}' (id ${id}) is not of the form <0xNN>`);
      bytesSeen.add(byte);
    }
  });
  if (unknowns !== 1) throw new TokenizerError(`${source}: the model must have exactly one UNKNOWN piece, found ${unknowns}`);
  if (byteFallback && bytesSeen.size !== 256) {
    throw new TokenizerError(`${source}: byte_fallback is on but only ${bytesSeen.size} of the 256 <0xNN> byte pieces are present`);
  }
}

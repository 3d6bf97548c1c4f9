/**
 * A Tokenizer over a SentencePiece tokenizer.model, in one of two behaviours:
 *
 * - alone: exactly SentencePiece (`SentencePieceProcessor.encode(text)`), plus BOS. Text such as
 *   "<s>" or "<image>" is just text.
 * - with a tokenizer_config.json: transformers' slow LlamaTokenizer (4.40). Added tokens
 *   (added_tokens_decoder, and the special tokens bos/eos/unk/pad) are cut out of the text first,
 *   and each stretch of text in between is encoded on its own. How those stretches start depends
 *   on `legacy`:
 *     legacy=true   each stretch gets SentencePiece's dummy-prefix "▁", so the text right after
 *                   "<image>" starts with "▁" ("<image>\n" gives <image> ▁ \n).
 *     legacy=false  only the start of the whole text gets one: transformers turns the dummy
 *                   prefix off, puts "▁" in front of the text itself, and encodes a stretch that
 *                   starts with a space as "<unk>" + stretch, dropping the "<unk>" pieces, so that
 *                   SentencePiece keeps that space. A lone "▁" right before a special token is
 *                   dropped ("<image>\n" gives <image> \n).
 */
import { AddedTokenSplitter, type AddedToken } from "./added_tokens.js";
import type { TokenizerConfig } from "./config.js";
import { TokenKind, type DecodeTable } from "./decoding.js";
import { TokenizerError } from "./errors.js";
import { SentencePieceBpe } from "./sentencepiece.js";
import { byteOfPiece, type PieceType, type SentencePieceModel } from "./sentencepiece_model.js";
import { SPACE_SYMBOL } from "./text.js";
import { Tokenizer } from "./tokenizer.js";

const KIND_OF_TYPE: Record<PieceType, TokenKind> = {
  normal: TokenKind.Text,
  "user-defined": TokenKind.Text,
  unused: TokenKind.Text,
  unknown: TokenKind.Unknown,
  control: TokenKind.Special,
  byte: TokenKind.Byte,
};

type DecodeParts = DecodeTable & { pieces: string[] };

export function sentencePieceTokenizer(model: SentencePieceModel, config?: TokenizerConfig): Tokenizer {
  const bpe = new SentencePieceBpe(model);
  const controlId = (piece: string): number | undefined => {
    const id = bpe.pieceToId(piece);
    return bpe.types[id] === "control" ? id : undefined;
  };
  const common: DecodeParts = {
    pieces: [...bpe.pieces],
    kinds: Uint8Array.from(bpe.types, (type) => KIND_OF_TYPE[type]),
    bytes: Int16Array.from(bpe.pieces, (piece, id) => (bpe.types[id] === "byte" ? byteOfPiece(piece) : -1)),
    unkSurface: model.unkSurface,
    leadingSpace: model.removeExtraWhitespaces ? "all" : model.addDummyPrefix ? "one" : "none",
  };
  if (!config) {
    return new Tokenizer({
      ...common,
      description: `${model.source} (SentencePiece BPE)`,
      encodeText: (text) => bpe.encode(text),
      bosId: controlId(model.bosPiece),
      eosId: controlId(model.eosPiece),
      unkId: bpe.unkId,
      padId: controlId(model.padPiece),
      addBos: true,
      addEos: false,
    });
  }
  return transformersLlamaTokenizer(model, bpe, config, common);
}

function transformersLlamaTokenizer(
  model: SentencePieceModel,
  bpe: SentencePieceBpe,
  config: TokenizerConfig,
  common: DecodeParts,
): Tokenizer {
  const legacy = config.legacy ?? true;
  const added = new Map<string, AddedToken>(config.addedTokens.map((token) => [token.content, token]));
  // transformers registers every special token as an added token; its id is the piece's.
  const names = {
    bos: config.bosToken ?? model.bosPiece,
    eos: config.eosToken ?? model.eosPiece,
    unk: config.unkToken ?? model.unkPiece,
    pad: config.padToken,
  };
  const specialNames = new Set([names.bos, names.eos, names.unk, ...(names.pad ? [names.pad] : []), ...config.additionalSpecialTokens]);
  for (const name of specialNames) {
    if (added.has(name)) continue;
    const id = bpe.pieceToId(name);
    if (bpe.pieces[id] !== name) {
      throw new TokenizerError(`${config.source}: special token '${name}' is neither a piece of ${model.source} nor in added_tokens_decoder`);
    }
    added.set(name, { id, content: name, special: true, lstrip: false, rstrip: false, normalized: false });
  }
  const addedTokens = [...added.values()];
  const isSpecial = (token: AddedToken): boolean => token.special || specialNames.has(token.content);

  const size = Math.max(common.pieces.length, ...addedTokens.map((t) => t.id + 1));
  const pieces = [...common.pieces, ...new Array<string>(size - common.pieces.length).fill("")];
  const kinds = new Uint8Array(size).fill(TokenKind.Missing);
  kinds.set(common.kinds);
  const bytes = new Int16Array(size).fill(-1);
  bytes.set(common.bytes);
  for (const token of addedTokens) {
    const inModel = token.id < common.pieces.length;
    if (inModel && common.pieces[token.id] !== token.content) {
      throw new TokenizerError(`${config.source}: added token ${token.id} is '${token.content}' but ${model.source} has '${common.pieces[token.id]}' there`);
    }
    pieces[token.id] = token.content;
    if (!inModel) kinds[token.id] = isSpecial(token) ? TokenKind.Special : TokenKind.Added;
    else if (isSpecial(token) && kinds[token.id] === TokenKind.Text) kinds[token.id] = TokenKind.Special;
  }

  const splitter = new AddedTokenSplitter(addedTokens);
  const unkPrefixLength = bpe.encode(names.unk, false).length;
  const encodeText = (text: string): number[] => {
    if (legacy || text === "") {
      const ids: number[] = [];
      for (const part of splitter.split(text)) {
        if ("token" in part) ids.push(part.token.id);
        else for (const id of bpe.encode(part.text)) ids.push(id);
      }
      return ids;
    }
    const ids: number[] = [];
    const special: boolean[] = [];
    for (const part of splitter.split(SPACE_SYMBOL + text.replaceAll(SPACE_SYMBOL, " "))) {
      if ("token" in part) {
        ids.push(part.token.id);
        special.push(isSpecial(part.token));
        continue;
      }
      let pieceIds: number[];
      if (part.text.startsWith(SPACE_SYMBOL) || part.text.startsWith(" ")) {
        pieceIds = bpe.encode(names.unk + part.text, false);
        if (pieceIds.length >= unkPrefixLength) pieceIds = pieceIds.slice(unkPrefixLength);
      } else {
        pieceIds = bpe.encode(part.text, false);
      }
      for (const id of pieceIds) {
        ids.push(id);
        special.push(false);
      }
    }
    if (ids.length > 1 && common.pieces[ids[0]] === SPACE_SYMBOL && !special[0] && special[1]) ids.shift();
    return ids;
  };

  const idOfName = (name: string): number | undefined => added.get(name)?.id;
  return new Tokenizer({
    ...common,
    pieces,
    kinds,
    bytes,
    description: `${model.source} with ${config.source} (transformers LlamaTokenizer, legacy=${legacy})`,
    encodeText,
    bosId: idOfName(names.bos),
    eosId: idOfName(names.eos),
    unkId: idOfName(names.unk),
    padId: names.pad === undefined ? undefined : idOfName(names.pad),
    addBos: config.addBosToken ?? true,
    addEos: config.addEosToken ?? false,
    extraIds: new Map(addedTokens.map((t) => [t.content, t.id])),
  });
}

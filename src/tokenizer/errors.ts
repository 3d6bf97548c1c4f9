/** A tokenizer file that cannot be used (missing, malformed, or asking for something we do not do), or a bad argument. */
export class TokenizerError extends Error {
  override name = "TokenizerError";
}

/**
 * A strict JSON parser for the files a checkpoint is made of (safetensors headers, config.json,
 * index files).
 *
 * JSON.parse would accept all of them, but it silently keeps the last of two equal keys, and a
 * header naming one tensor twice is ambiguous: which dtype, shape and bytes does it have? This
 * parser refuses duplicate keys and nesting deeper than any of these files needs, and says
 * where the text went wrong. Otherwise it follows RFC 8259 exactly.
 */

export class JsonError extends Error {
  override name = "JsonError";
}

/** Deeper than any header or config needs (a config nests 3 levels, a header 3). */
export const MAX_JSON_DEPTH = 32;

export function parseJson(text: string, maxDepth = MAX_JSON_DEPTH): unknown {
  const parser = new Parser(text, maxDepth);
  parser.skipWhitespace();
  const value = parser.value(0);
  parser.skipWhitespace();
  if (parser.pos < text.length) parser.fail("unexpected text after the JSON value");
  return value;
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const ESCAPES: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };

class Parser {
  pos = 0;
  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
  ) {}

  fail(message: string): never {
    throw new JsonError(`${message} at character ${this.pos}`);
  }

  skipWhitespace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      this.pos++;
    }
  }

  value(depth: number): unknown {
    const c = this.text[this.pos];
    if (c === "{" || c === "[") {
      if (depth >= this.maxDepth) this.fail(`nested deeper than ${this.maxDepth} levels`);
      return c === "{" ? this.object(depth + 1) : this.array(depth + 1);
    }
    if (c === '"') return this.string();
    if (c === "-" || (c >= "0" && c <= "9")) return this.number();
    for (const [word, result] of [["true", true], ["false", false], ["null", null]] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return result;
      }
    }
    return this.fail(c === undefined ? "unexpected end of text" : `unexpected character ${JSON.stringify(c)}`);
  }

  private object(depth: number): Record<string, unknown> {
    // A null-prototype object, so a key like "__proto__" is just a key.
    const out: Record<string, unknown> = Object.create(null);
    this.pos++; // {
    this.skipWhitespace();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return out;
    }
    for (;;) {
      if (this.text[this.pos] !== '"') this.fail("expected a string key");
      const keyAt = this.pos;
      const key = this.string();
      if (Object.hasOwn(out, key)) {
        this.pos = keyAt;
        this.fail(`duplicate key ${JSON.stringify(key)}`);
      }
      this.skipWhitespace();
      this.expect(":");
      this.skipWhitespace();
      out[key] = this.value(depth);
      this.skipWhitespace();
      if (this.text[this.pos] === "}") {
        this.pos++;
        return out;
      }
      this.expect(",");
      this.skipWhitespace();
    }
  }

  private array(depth: number): unknown[] {
    const out: unknown[] = [];
    this.pos++; // [
    this.skipWhitespace();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth));
      this.skipWhitespace();
      if (this.text[this.pos] === "]") {
        this.pos++;
        return out;
      }
      this.expect(",");
      this.skipWhitespace();
    }
  }

  private string(): string {
    const t = this.text;
    this.pos++; // opening quote
    let out = "";
    let runStart = this.pos;
    for (;;) {
      if (this.pos >= t.length) this.fail("unterminated string");
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) break; // closing quote
      if (c < 0x20) this.fail("control character in a string");
      if (c !== 0x5c) {
        this.pos++;
        continue;
      }
      out += t.slice(runStart, this.pos);
      const escape = t[this.pos + 1];
      if (escape === "u") {
        const hex = t.slice(this.pos + 2, this.pos + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("bad \\u escape");
        out += String.fromCharCode(parseInt(hex, 16));
        this.pos += 6;
      } else if (escape !== undefined && Object.hasOwn(ESCAPES, escape)) {
        out += ESCAPES[escape];
        this.pos += 2;
      } else {
        this.fail("bad escape in a string");
      }
      runStart = this.pos;
    }
    out += t.slice(runStart, this.pos);
    this.pos++; // closing quote
    return out;
  }

  private number(): number {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (!match) return this.fail("malformed number");
    this.pos += match[0].length;
    return Number(match[0]);
  }

  private expect(char: string): void {
    if (this.text[this.pos] !== char) {
      const found = this.text[this.pos];
      this.fail(`expected '${char}' but found ${found === undefined ? "the end of the text" : JSON.stringify(found)}`);
    }
    this.pos++;
  }
}

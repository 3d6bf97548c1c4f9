/**
 * The text cleaning CLIP's tokenizer does before it splits a text into words. transformers'
 * CLIPTokenizer has two, chosen by whether the Python package ftfy is installed:
 *
 *   "ftfy"   ftfy.fix_text (ftfy 6.3.1, default settings), then runs of whitespace to one space,
 *            strip, lowercase. OpenAI's own tokenizer (clip/simple_tokenizer.py) does the same
 *            (and then html.unescape twice), so this is the text CLIP was trained on.
 *   "basic"  transformers' fallback, its BERT BasicTokenizer with accents kept and no punctuation
 *            split: drop NUL, U+FFFD and every control/format/unassigned/private-use character
 *            (category C*), whitespace to spaces, a space around every CJK ideograph, NFC, split
 *            on whitespace, lowercase each piece, join with single spaces.
 *
 * The default is "ftfy" (DEFAULT_CLIP_CLEAN): CLIP's weights were trained on ftfy-cleaned text, and
 * transformers itself uses ftfy whenever it is installed, as it is in any environment that ran
 * OpenAI's code; "basic" is there to reproduce transformers runs without ftfy.
 *
 * ftfy.fix_text, as implemented here: the text is fixed line by line (each line keeps its "\n"),
 * each line by repeating these steps, in ftfy's order, until nothing changes:
 *   - unescape_html: HTML entities ending in ";" (a table of the common ones: the markup five,
 *     all of Latin-1, typographic punctuation, arrows and a few symbols; ftfy knows all of HTML5),
 *     their all-caps forms for lowercase names (&EACUTE; -> É), and numeric references with
 *     html.unescape's rules. Not done on a line holding "<", nor on any line after it (ftfy keeps
 *     that decision for the rest of the text).
 *   - fix_encoding, simplified (the one knowingly approximate step): a "run" is a stretch of
 *     characters that, mapped back to bytes through Windows-1252 (Latin-1 for the C1 controls),
 *     is well-formed multi-byte UTF-8. A line holding a run that is surely mojibake (see
 *     isSurelyMojibake: "Ã©", "â€œ", "Ð±ÑŠ", "ðŸ˜€") has all its runs decoded ("cafÃ©" -> "café");
 *     a line without one is left alone, so "NESTLÉ®" or "MARQUÉ…" stay. ftfy decides with its
 *     "badness" heuristic instead (a large table of character classes), and it also tries other
 *     single-byte codepages (1250, 1251, 1253, 1254, 1257, ISO-8859-2, MacRoman, cp437), restores
 *     a 0xA0 byte turned into a space ("voilÃ  le" -> "voilà le"), replaces lossy sequences with
 *     U+FFFD and decodes CESU-8/Java UTF-8: none of that is done here. On the test texts of ftfy's
 *     own repository this step agrees with ftfy on 30 of its 31 "negative" texts (left alone)
 *     and on most Windows-1252/Latin-1 mojibake; the other codepages are not repaired.
 *   - fix_c1_controls (C1 controls to their Windows-1252 characters), fix_latin_ligatures,
 *     fix_character_width (full/half-width forms to NFKC, U+3000 to a space), uncurl_quotes,
 *     fix_line_breaks (CRLF, CR, U+2028, U+2029, U+0085 to "\n"), fix_surrogates (a lone
 *     surrogate to U+FFFD), remove_terminal_escapes (ANSI "ESC [ ... letter"),
 *     remove_control_chars (ftfy's list), and NFC: as ftfy does them.
 * Not implemented: the parts of fix_encoding named above, and the HTML5 entities outside the
 * table; everything else fix_text does with its default settings is. The test texts in
 * test/fixtures/golden/clip-tokenizer/ftfy-cases.json were run through ftfy 6.3.1 itself.
 */

export type ClipClean = "ftfy" | "basic";

export const DEFAULT_CLIP_CLEAN: ClipClean = "ftfy";

export const CLIP_CLEANERS: readonly ClipClean[] = ["ftfy", "basic"];

/** The text as CLIPTokenizer's _tokenize has it before the split regex. */
export function cleanClipText(text: string, clean: ClipClean): string {
  return clean === "ftfy" ? whitespaceClean(fixText(text)).toLowerCase() : basicClean(text);
}

/** Python's str.isspace() characters (what re's \s and str.split()/strip() use). */
const PY_SPACE = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const SPACE_RUNS = new RegExp(`[${PY_SPACE}]+`, "gu");

const SPACE_ENDS = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "gu");

/** Python's str.strip(). */
export function stripPythonSpace(text: string): string {
  return text.replace(SPACE_ENDS, "");
}

function whitespaceClean(text: string): string {
  return stripPythonSpace(text.replace(SPACE_RUNS, " "));
}

// ---- basic ----

const CJK = /([\u{4E00}-\u{9FFF}\u{3400}-\u{4DBF}\u{20000}-\u{2A6DF}\u{2A700}-\u{2B73F}\u{2B740}-\u{2B81F}\u{2B820}-\u{2CEAF}\u{F900}-\u{FAFF}\u{2F800}-\u{2FA1F}])/gu;

function basicClean(text: string): string {
  const kept = text
    .replace(/[\t\n\r]|\p{Zs}/gu, " ")
    .replace(/[\0\uFFFD]|\p{C}/gu, "")
    .replace(CJK, " $1 ")
    .normalize("NFC");
  return kept
    .split(new RegExp(`[${PY_SPACE}]+`, "u"))
    .filter((piece) => piece !== "")
    .map((piece) => piece.toLowerCase())
    .join(" ");
}

// ---- ftfy ----

function fixText(text: string): string {
  let unescape = true;
  return text
    .split(/(?<=\n)/)
    .map((line) => {
      if (line.includes("<")) unescape = false;
      return fixLine(line, unescape);
    })
    .join("");
}

function fixLine(line: string, unescape: boolean): string {
  for (let round = 0; round < 16; round++) {
    let text = unescape ? unescapeHtml(line) : line;
    text = fixEncoding(text);
    text = fixC1Controls(text);
    text = text.replace(LIGATURE_RE, (c) => LIGATURES[c]);
    text = text.replace(/[\u3000\uFF01-\uFFEF]/g, (c) => WIDTH_MAP.get(c) ?? c);
    text = text.replace(/[\u02BC\u2018-\u201B]/g, "'").replace(/[\u201C-\u201F]/g, '"');
    text = text.replace(/\r\n|[\r\u2028\u2029\u0085]/g, "\n");
    text = text.replace(/\p{Cs}/gu, "\uFFFD");
    text = text.replace(/\x1b\[[\d;]*[a-zA-Z]/g, "");
    text = text.replace(/[\x00-\x08\x0B\x0E-\x1F\x7F\u206A-\u206F\uFEFF\uFFF9-\uFFFC]/g, "");
    text = text.normalize("NFC");
    if (text === line) break;
    line = text;
  }
  return line;
}

const LIGATURES: Record<string, string> = {
  "Ĳ": "IJ", "ĳ": "ij", "ŉ": "ʼn", "Ǳ": "DZ", "ǲ": "Dz", "ǳ": "dz", "Ǆ": "DŽ", "ǅ": "Dž", "ǆ": "dž",
  "Ǉ": "LJ", "ǈ": "Lj", "ǉ": "lj", "Ǌ": "NJ", "ǋ": "Nj", "ǌ": "nj",
  "ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "ſt", "ﬆ": "st",
};
const LIGATURE_RE = new RegExp(`[${Object.keys(LIGATURES).join("")}]`, "g");

const WIDTH_MAP = new Map<string, string>([["\u3000", " "]]);
for (let cp = 0xff01; cp < 0xfff0; cp++) {
  const char = String.fromCodePoint(cp);
  const alternate = char.normalize("NFKC");
  if (alternate !== char) WIDTH_MAP.set(char, alternate);
}

/** Windows-1252's characters for bytes 0x80-0x9F; the five bytes it leaves undefined stay C1 controls ("sloppy"). */
const CP1252_HIGH = "€\x81‚ƒ„…†‡ˆ‰Š‹Œ\x8DŽ\x8F\x90‘’“”•–—˜™š›œ\x9DžŸ";

function fixC1Controls(text: string): string {
  return text.replace(/[\x80-\x9F]/g, (c) => CP1252_HIGH[c.charCodeAt(0) - 0x80]);
}

/** The byte each character stands for when UTF-8 was decoded as Windows-1252 (or Latin-1). */
const MOJIBAKE_BYTE = new Map<string, number>();
for (let byte = 0x80; byte <= 0xff; byte++) MOJIBAKE_BYTE.set(String.fromCharCode(byte), byte);
for (let i = 0; i < 32; i++) MOJIBAKE_BYTE.set(CP1252_HIGH[i], 0x80 + i);

const classOf = (lo: number, hi: number): string => {
  let chars = "";
  for (const [char, byte] of MOJIBAKE_BYTE) if (byte >= lo && byte <= hi) chars += char;
  return `[${chars.replace(/[\\\]^-]/g, "\\$&")}]`;
};
const CONT = classOf(0x80, 0xbf);
const SEQUENCE = `${classOf(0xc2, 0xdf)}${CONT}|${classOf(0xe0, 0xef)}${CONT}{2}|${classOf(0xf0, 0xf4)}${CONT}{3}`;
const MOJIBAKE_RE = new RegExp(`(?:${SEQUENCE})+`, "g");
const SEQUENCE_RE = new RegExp(SEQUENCE, "g");
const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });
/** What legitimately follows a word, and so also an accented letter: "É…", "Ã’s", "lá´´", "ë…”". */
const WORD_END = /^[…’”™–—´]+$/;

/** A run's UTF-8 text, or undefined if its bytes are not well-formed UTF-8 (an overlong form, a surrogate). */
function decodeRun(run: string): string | undefined {
  try {
    return STRICT_UTF8.decode(Uint8Array.from(run, (c) => MOJIBAKE_BYTE.get(c)!));
  } catch {
    return undefined;
  }
}

/**
 * Whether a run is surely mojibake rather than an accented letter before a symbol: two or more
 * sequences in a row ("Ð±ÑŠ"), a 4-byte one ("ðŸ˜€"), a C1 control, or a 2-byte one led by Â or
 * Ã, or a 3-byte one, whose continuation is not punctuation that ends words ("Ã©", "â€œ").
 */
function isSurelyMojibake(run: string): boolean {
  const sequences = run.match(SEQUENCE_RE)!;
  if (sequences.length > 1 || /[\x80-\x9f]/.test(run)) return true;
  const [sequence] = sequences;
  if (sequence.length === 4) return true;
  if (WORD_END.test(sequence.slice(1))) return false;
  return sequence.length === 3 || sequence[0] === "Â" || sequence[0] === "Ã";
}

/**
 * ftfy's fix_encoding, simplified: a line with a run that is surely mojibake was decoded as
 * Windows-1252 throughout, so every run of it that is well-formed UTF-8 is decoded; a line without
 * one is left alone ("NESTLÉ®", "AHÅ™" stay).
 */
function fixEncoding(text: string): string {
  const runs = [...text.matchAll(MOJIBAKE_RE)].map(([run]) => run);
  if (!runs.some((run) => decodeRun(run) !== undefined && isSurelyMojibake(run))) return text;
  return text.replace(MOJIBAKE_RE, (run) => decodeRun(run) ?? run);
}

const HTML_ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;

function unescapeHtml(text: string): string {
  return text.replace(HTML_ENTITY_RE, (entity) => {
    const named = HTML_ENTITIES.get(entity);
    if (named !== undefined) return named;
    const numeric = /^&#(?:([0-9]+)|[xX]([0-9a-fA-F]+));$/.exec(entity);
    return numeric ? charReference(numeric[1] !== undefined ? parseInt(numeric[1], 10) : parseInt(numeric[2], 16)) : entity;
  });
}

/** html.unescape's rules for &#N; (HTML5's, with Windows-1252 for 0x80-0x9F). */
function charReference(cp: number): string {
  if (cp === 0) return "\uFFFD";
  if (cp === 0x0d) return "\r";
  if (cp >= 0x80 && cp <= 0x9f) return CP1252_HIGH[cp - 0x80];
  if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return "\uFFFD";
  const invalid =
    (cp >= 0x01 && cp <= 0x08) || cp === 0x0b || (cp >= 0x0e && cp <= 0x1f) || cp === 0x7f ||
    (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe;
  return invalid ? "" : String.fromCodePoint(cp);
}

const LATIN1_NAMES =
  "nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr deg plusmn sup2 sup3 acute micro para middot " +
  "cedil sup1 ordm raquo frac14 frac12 frac34 iquest Agrave Aacute Acirc Atilde Auml Aring AElig Ccedil Egrave Eacute Ecirc Euml " +
  "Igrave Iacute Icirc Iuml ETH Ntilde Ograve Oacute Ocirc Otilde Ouml times Oslash Ugrave Uacute Ucirc Uuml Yacute THORN szlig " +
  "agrave aacute acirc atilde auml aring aelig ccedil egrave eacute ecirc euml igrave iacute icirc iuml eth ntilde ograve oacute " +
  "ocirc otilde ouml divide oslash ugrave uacute ucirc uuml yacute thorn yuml";

const OTHER_ENTITIES: Record<string, string> = {
  amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", AMP: "&", LT: "<", GT: ">", QUOT: '"', COPY: "©", REG: "®",
  hellip: "…", mdash: "—", ndash: "–", lsquo: "‘", rsquo: "’", sbquo: "‚", ldquo: "“", rdquo: "”", bdquo: "„",
  lsaquo: "‹", rsaquo: "›", bull: "•", dagger: "†", Dagger: "‡", permil: "‰", prime: "′", Prime: "″",
  euro: "€", trade: "™", OElig: "Œ", oelig: "œ", Scaron: "Š", scaron: "š", Yuml: "Ÿ", fnof: "ƒ", circ: "ˆ", tilde: "˜",
  ensp: "\u2002", emsp: "\u2003", thinsp: "\u2009", zwnj: "\u200C", zwj: "\u200D", lrm: "\u200E", rlm: "\u200F",
  larr: "←", uarr: "↑", rarr: "→", darr: "↓", harr: "↔", hearts: "♥", spades: "♠", clubs: "♣", diams: "♦",
  infin: "∞", ne: "≠", le: "≤", ge: "≥", minus: "−", check: "✓", checkmark: "✓", star: "☆", starf: "★",
};

/** html.unescape changes "&NAME" (no ";") when a prefix of NAME is one of these legacy names. */
const LEGACY_UPPER = ["AMP", "COPY", "GT", "LT", "QUOT", "REG", "ETH", "THORN"];

const HTML_ENTITIES = new Map<string, string>();
{
  const names: [string, string][] = LATIN1_NAMES.split(" ").map((name, i) => [name, String.fromCharCode(0xa0 + i)]);
  names.push(...Object.entries(OTHER_ENTITIES));
  for (const [name, char] of names) HTML_ENTITIES.set(`&${name};`, char);
  // ftfy also decodes the all-caps form of a lowercase name, unless html.unescape would read it as another entity.
  for (const [name, char] of names) {
    const upper = name.toUpperCase();
    if (name !== name.toLowerCase() || HTML_ENTITIES.has(`&${upper};`)) continue;
    if (LEGACY_UPPER.some((legacy) => upper.startsWith(legacy))) continue;
    HTML_ENTITIES.set(`&${upper};`, char.toUpperCase());
  }
}

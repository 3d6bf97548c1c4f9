/**
 * Prompts from chat messages, by the checkpoint's own chat template (Jinja, rendered with
 * @huggingface/jinja, which like transformers trims blocks and strips their leading whitespace),
 * or, when it has none, by its family's (chat_formats.ts).
 *
 * Where a checkpoint's template is, in the order transformers looks (loadChatTemplate):
 *   chat_template.jinja                the newer form (processor's and tokenizer's)
 *   chat_template.json                 {"chat_template": "..."}, the processor's (llava-hf's)
 *   tokenizer_config.json              "chat_template": a string, or [{name, template}, ...] of
 *                                      which "default" is used
 *
 * What the template is given, as transformers gives it: `messages`, `add_generation_prompt`, and
 * the tokenizer's special tokens by name (`bos_token`, `eos_token`, `unk_token`, `pad_token`, ...).
 * A message's content is given in one of two forms:
 *   list    [{type: "image"}, ..., {type: "text", text}] (images first, as ChatMessage places them):
 *           the processor form that llava-hf's templates iterate (selectattr('type', ...)).
 *   string  "<image>\n" once per image, then the text: what text-only (tokenizer) templates such
 *           as Llama-2's expect (they concatenate message['content']).
 * transformers passes messages as the caller wrote them, so a template only works with the form it
 * was written for; here the form is chosen from the template source, as vLLM does: the list form
 * when it reads content items' type or text (['type'], .type, selectattr('type', ...), ['text']),
 * else the string form.
 *
 * One question about one image with llava-1.5's template reads "USER: <image>\nWhat are these? ASSISTANT:".
 */
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import type { Tensor } from "../tensor/tensor.js";
import type { PixelValues } from "../image/preprocess.js";
import type { AnyresPixels } from "../image/anyres.js";
import { pathExists, readTextFileWithin } from "../files/read.js";
import { JSON_CONFIG_FILE, type FileKind } from "../files/limits.js";
import { FALLBACK_SPECIAL_TOKENS, FALLBACK_TEMPLATES, type ChatFamily } from "./chat_formats.js";

export { CHAT_FAMILIES, chooseChatFamily, FALLBACK_TEMPLATES, type ChatFamily, type ChatFamilyConfig } from "./chat_formats.js";

/**
 * An image: a file path, the file's bytes, preprocessed pixel values (a tiled model's:
 * preprocessAnyres's tiles with the image's size), or a [3, H, W] tensor of them.
 */
export type ImageInput = string | Uint8Array | PixelValues | AnyresPixels | Tensor;

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
  /** Images shown with this turn (placed before its text). */
  images?: readonly ImageInput[];
}

export const IMAGE_TAG = "<image>";

/** A chat template file (chat_template.jinja), and a template inside a JSON file: real ones are a few kB. */
export const CHAT_TEMPLATE_FILE: FileKind = { what: "chat template", maxBytes: 1024 * 1024 };

/** A chat template that cannot be read, parsed or rendered; the message names the template's source. */
export class ChatTemplateError extends Error {
  override name = "ChatTemplateError";
}

export interface RenderOptions {
  /** End with the assistant's turn opening, for the model to answer (default true). */
  addGenerationPrompt?: boolean;
}

export interface RenderedPrompt {
  /** The prompt text, an IMAGE_TAG where each image goes. */
  text: string;
  /** The images, in the order of their tags in `text`. */
  images: ImageInput[];
  /**
   * Whether the tokenizer should still put its BOS token first: false when the template already
   * wrote the BOS token's text at the start of `text` (Llama-2's and Mistral-Instruct's templates
   * write `bos_token`). The text is left as the template rendered it; encode it with
   * `tokenizer.encode(text, addBos ? {} : { addBos: false })`, so that the prompt has one BOS, not
   * two (what transformers' apply_chat_template(tokenize=True) does too: it tokenizes without
   * special tokens when the rendered prompt starts with bos_token). The BOS text is then read as
   * the added token it is.
   */
  addBos: boolean;
}

/** The content of one message as the template sees it. */
type ContentItem = { type: "image" } | { type: "text"; text: string };

const ROLES: readonly string[] = ["system", "user", "assistant"];

/** Names a template's variables cannot take from the special tokens. */
const RESERVED = new Set(["true", "false", "none", "True", "False", "None", "raise_exception", "range", "strftime_now", "namespace", "messages", "add_generation_prompt"]);

/** Whether a template reads its messages' content as a list of typed items (see the file comment). */
export function readsContentItems(source: string): boolean {
  return /\[\s*['"]type['"]\s*\]|\.type\b|selectattr\(\s*['"]type['"]|\[\s*['"]text['"]\s*\]/.test(source);
}

/** A thrown value's message. */
function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A chat template, ready to render chat messages into a prompt. */
export class ChatTemplate {
  /** Where the template came from: "<file> (<field>)", or "fallback: <family>". */
  readonly source: string;
  /** The model's chat family (whose fallback this is, or would have been). */
  readonly family: ChatFamily;
  /** The template's Jinja source. */
  readonly template: string;
  /** How messages' content is given to the template (see the file comment). */
  readonly contentForm: "list" | "string";
  private readonly parsed: Template;
  private readonly specialTokens: Readonly<Record<string, string>>;

  constructor(template: string, options: { source: string; family: ChatFamily; specialTokens?: Record<string, string> }) {
    this.source = options.source;
    this.family = options.family;
    this.template = template;
    // The library declares its globals (true, range, raise_exception, ...) first and refuses a second declaration.
    this.specialTokens = Object.fromEntries(Object.entries(options.specialTokens ?? {}).filter(([name, value]) => !RESERVED.has(name) && typeof value === "string"));
    if (typeof template !== "string" || template.trim() === "") throw new ChatTemplateError(`${this.source}: the chat template is empty`);
    try {
      this.parsed = new Template(template);
    } catch (error) {
      throw new ChatTemplateError(`${this.source}: the chat template does not parse: ${messageOf(error)}`);
    }
    this.contentForm = readsContentItems(template) ? "list" : "string";
  }

  /** The prompt for `messages`: its text, its images in tag order, and whether the tokenizer should add BOS. */
  render(messages: readonly ChatMessage[], options: RenderOptions = {}): RenderedPrompt {
    if (!Array.isArray(messages)) throw new Error("messages must be an array");
    const images: ImageInput[] = [];
    let typedTags = 0; // image tags the messages' own text holds
    const given = messages.map((message, i) => {
      if (!ROLES.includes(message.role)) {
        throw new Error(`messages[${i}].role must be system, user or assistant, not ${JSON.stringify(message.role)}`);
      }
      if (typeof message.content !== "string") throw new Error(`messages[${i}].content must be a string`);
      const own = message.images ?? [];
      images.push(...own);
      typedTags += count(message.content, IMAGE_TAG);
      if (this.contentForm === "string") return { role: message.role, content: `${IMAGE_TAG}\n`.repeat(own.length) + message.content };
      const content: ContentItem[] = [...own.map((): ContentItem => ({ type: "image" })), { type: "text", text: message.content }];
      return { role: message.role, content };
    });
    let text: unknown;
    try {
      text = this.parsed.render({
        ...this.specialTokens,
        messages: given,
        add_generation_prompt: options.addGenerationPrompt ?? true,
      });
    } catch (error) {
      // raise_exception(message) (the library's own) throws its message as a plain Error, so it reads as the template wrote it.
      throw new ChatTemplateError(`${this.source}: rendering the chat template failed: ${messageOf(error)}`);
    }
    if (typeof text !== "string") throw new ChatTemplateError(`${this.source}: the chat template rendered ${typeof text}, not text`);
    const tags = count(text, IMAGE_TAG) - typedTags;
    if (tags !== images.length) {
      throw new ChatTemplateError(`${this.source}: the chat template wrote ${tags} ${IMAGE_TAG} tags for the messages' ${images.length} images`);
    }
    const bos = this.specialTokens.bos_token;
    return { text, images, addBos: !(bos !== undefined && bos !== "" && text.startsWith(bos)) };
  }
}

function count(text: string, tag: string): number {
  return text.split(tag).length - 1;
}

/** The fallback chat template of a family. */
export function fallbackChatTemplate(family: ChatFamily, specialTokens: Record<string, string> = {}): ChatTemplate {
  const template = FALLBACK_TEMPLATES[family];
  if (template === undefined) throw new Error(`no chat format for family ${JSON.stringify(family)}`);
  return new ChatTemplate(template, { source: `fallback: ${family}`, family, specialTokens: { ...FALLBACK_SPECIAL_TOKENS, ...specialTokens } });
}

/**
 * The chat template of the checkpoint in `folder`: its own (chat_template.jinja, chat_template.json,
 * tokenizer_config.json's chat_template, the first found), else `family`'s fallback. `specialTokens`
 * are the tokenizer's special tokens by their tokenizer_config.json names (bos_token: "<s>", ...).
 */
export async function loadChatTemplate(folder: string, options: { family: ChatFamily; specialTokens: Record<string, string> }): Promise<ChatTemplate> {
  const make = (template: string, source: string) => new ChatTemplate(template, { source, family: options.family, specialTokens: options.specialTokens });

  const jinjaPath = join(folder, "chat_template.jinja");
  if (await pathExists(jinjaPath)) return make(await readTextFileWithin(jinjaPath, CHAT_TEMPLATE_FILE, { as: ChatTemplateError }), jinjaPath);

  const processorPath = join(folder, "chat_template.json");
  if (await pathExists(processorPath)) {
    const json = await readJson(processorPath);
    const template = json.chat_template;
    if (typeof template !== "string") throw new ChatTemplateError(`${processorPath}: chat_template must be a string, got ${describe(template)}`);
    return make(checkedTemplate(template, `${processorPath} (chat_template)`), `${processorPath} (chat_template)`);
  }

  const tokenizerPath = join(folder, "tokenizer_config.json");
  if (await pathExists(tokenizerPath)) {
    const field = (await readJson(tokenizerPath)).chat_template;
    if (typeof field === "string") return make(checkedTemplate(field, `${tokenizerPath} (chat_template)`), `${tokenizerPath} (chat_template)`);
    if (Array.isArray(field)) {
      const names: string[] = [];
      for (const [i, entry] of field.entries()) {
        const { name, template } = (entry ?? {}) as { name?: unknown; template?: unknown };
        if (typeof name !== "string" || typeof template !== "string") {
          throw new ChatTemplateError(`${tokenizerPath}: chat_template[${i}] must be {"name": string, "template": string}`);
        }
        names.push(name);
      }
      const index = names.indexOf("default");
      if (index < 0) {
        throw new ChatTemplateError(`${tokenizerPath}: chat_template names ${names.map((n) => JSON.stringify(n)).join(", ") || "no templates"}, but none is "default"`);
      }
      const source = `${tokenizerPath} (chat_template "default")`;
      return make(checkedTemplate((field[index] as { template: string }).template, source), source);
    }
    if (field !== undefined && field !== null) throw new ChatTemplateError(`${tokenizerPath}: chat_template must be a string or a list of {name, template}, got ${describe(field)}`);
  }

  return fallbackChatTemplate(options.family, options.specialTokens);
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  const text = await readTextFileWithin(path, JSON_CONFIG_FILE, { as: ChatTemplateError });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ChatTemplateError(`${path}: not valid JSON (${messageOf(error)})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new ChatTemplateError(`${path}: not a JSON object`);
  return json as Record<string, unknown>;
}

/** A template found inside a JSON file, within the size a template file may have. */
function checkedTemplate(template: string, source: string): string {
  const bytes = Buffer.byteLength(template, "utf8");
  if (bytes > CHAT_TEMPLATE_FILE.maxBytes) throw new ChatTemplateError(`${source}: ${bytes} bytes, over the ${CHAT_TEMPLATE_FILE.maxBytes}-byte limit for a chat template`);
  return template;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  return typeof value === "string" ? "a string" : `a ${typeof value}`;
}

let llava15: ChatTemplate | undefined;

/** The prompt text and the images in the order their tags appear in it, by llava-1.5's chat template. */
export function chatPrompt(messages: readonly ChatMessage[]): { text: string; images: ImageInput[] } {
  llava15 ??= fallbackChatTemplate("llava-1.5");
  const { text, images } = llava15.render(messages);
  return { text, images };
}

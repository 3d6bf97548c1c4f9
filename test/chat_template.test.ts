import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ChatTemplate,
  ChatTemplateError,
  chatPrompt,
  chooseChatFamily,
  fallbackChatTemplate,
  loadChatTemplate,
  readsContentItems,
  type ChatFamily,
  type ChatMessage,
} from "../src/generate/chat_template.js";

const SPECIAL = { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", pad_token: "<pad>" };
const VICUNA_SYSTEM =
  "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.";

const single: ChatMessage[] = [{ role: "user", content: "What is this?", images: ["a.png"] }];
const twoInOne: ChatMessage[] = [{ role: "user", content: "Compare.", images: ["a.png", "b.png"] }];
const twoTurns: ChatMessage[] = [
  { role: "user", content: "What is this?", images: ["a.png"] },
  { role: "assistant", content: "A cat." },
  { role: "user", content: "And this?", images: ["b.png"] },
];
const withSystem: ChatMessage[] = [{ role: "system", content: "Be brief." }, ...single];

/** Each fallback's rendering of the cases above (and of `single` without the generation prompt). */
const expected: Record<ChatFamily, { single: string; twoInOne: string; twoTurns: string; withSystem: string; noGeneration: string }> = {
  "llava-1.5": {
    single: "USER: <image>\nWhat is this? ASSISTANT:",
    twoInOne: "USER: <image>\n<image>\nCompare. ASSISTANT:",
    twoTurns: "USER: <image>\nWhat is this? ASSISTANT: A cat. USER: <image>\nAnd this? ASSISTANT:",
    withSystem: "Be brief. USER: <image>\nWhat is this? ASSISTANT:",
    noGeneration: "USER: <image>\nWhat is this? ",
  },
  vicuna: {
    single: `${VICUNA_SYSTEM} USER: <image>\nWhat is this? ASSISTANT:`,
    twoInOne: `${VICUNA_SYSTEM} USER: <image>\n<image>\nCompare. ASSISTANT:`,
    twoTurns: `${VICUNA_SYSTEM} USER: <image>\nWhat is this? ASSISTANT: A cat. USER: <image>\nAnd this? ASSISTANT:`,
    withSystem: "Be brief. USER: <image>\nWhat is this? ASSISTANT:",
    noGeneration: `${VICUNA_SYSTEM} USER: <image>\nWhat is this? `,
  },
  mistral: {
    single: "[INST] <image>\nWhat is this? [/INST]",
    twoInOne: "[INST] <image>\n<image>\nCompare. [/INST]",
    twoTurns: "[INST] <image>\nWhat is this? [/INST] A cat.</s> [INST] <image>\nAnd this? [/INST]",
    withSystem: "<<SYS>>\nBe brief.\n<</SYS>>\n\n[INST] <image>\nWhat is this? [/INST]",
    noGeneration: "[INST] <image>\nWhat is this? [/INST]", // the template has no generation prompt of its own
  },
  chatml: {
    single: "<|im_start|>system\nAnswer the questions.<|im_end|>\n<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n",
    twoInOne: "<|im_start|>system\nAnswer the questions.<|im_end|>\n<|im_start|>user\n<image>\n<image>\nCompare.<|im_end|>\n<|im_start|>assistant\n",
    twoTurns:
      "<|im_start|>system\nAnswer the questions.<|im_end|>\n<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n" +
      "<|im_start|>assistant\nA cat.<|im_end|>\n<|im_start|>user\n<image>\nAnd this?<|im_end|>\n<|im_start|>assistant\n",
    withSystem: "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n",
    noGeneration: "<|im_start|>system\nAnswer the questions.<|im_end|>\n<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n",
  },
  "llama-2": {
    single: "<s>[INST] <image>\nWhat is this? [/INST]",
    twoInOne: "<s>[INST] <image>\n<image>\nCompare. [/INST]",
    twoTurns: "<s>[INST] <image>\nWhat is this? [/INST] A cat. </s><s>[INST] <image>\nAnd this? [/INST]",
    withSystem: "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n<image>\nWhat is this? [/INST]",
    noGeneration: "<s>[INST] <image>\nWhat is this? [/INST]",
  },
};

describe("fallback chat templates", () => {
  for (const family of Object.keys(expected) as ChatFamily[]) {
    describe(family, () => {
      const template = fallbackChatTemplate(family, SPECIAL);
      const want = expected[family];
      it("names its source and family", () => {
        expect(template.source).toBe(`fallback: ${family}`);
        expect(template.family).toBe(family);
      });
      it("renders one image", () => {
        const r = template.render(single);
        expect(r.text).toBe(want.single);
        expect(r.images).toEqual(["a.png"]);
        // Only Llama-2's template writes the BOS token itself; then the tokenizer must not add another.
        expect(r.addBos).toBe(family !== "llama-2");
      });
      it("renders two images in one turn, in order", () => {
        const r = template.render(twoInOne);
        expect(r.text).toBe(want.twoInOne);
        expect(r.images).toEqual(["a.png", "b.png"]);
      });
      it("renders images in two turns with an assistant reply between", () => {
        const r = template.render(twoTurns);
        expect(r.text).toBe(want.twoTurns);
        expect(r.images).toEqual(["a.png", "b.png"]);
      });
      it("renders a system message", () => {
        expect(template.render(withSystem).text).toBe(want.withSystem);
      });
      it("leaves out the generation prompt when asked", () => {
        expect(template.render(single, { addGenerationPrompt: false }).text).toBe(want.noGeneration);
      });
    });
  }

  it("chatPrompt is the llava-1.5 fallback, byte for byte the old format", () => {
    const { text, images } = chatPrompt([
      { role: "system", content: "Be brief." },
      { role: "user", content: "What are these?", images: ["a.png"] },
      { role: "assistant", content: "Cats." },
      { role: "user", content: "And these?", images: ["b.png", "c.png"] },
    ]);
    expect(text).toBe("Be brief. USER: <image>\nWhat are these? ASSISTANT: Cats. USER: <image>\n<image>\nAnd these? ASSISTANT:");
    expect(images).toEqual(["a.png", "b.png", "c.png"]);
    expect(chatPrompt([{ role: "user", content: "What is this?", images: [new Uint8Array()] }]).text).toBe("USER: <image>\nWhat is this? ASSISTANT:");
    expect(chatPrompt([{ role: "user", content: "What is this?" }]).text).toBe("USER: What is this? ASSISTANT:");
    expect(chatPrompt([]).text).toBe("ASSISTANT:");
    // Images on a system turn and empty text are rendered as before too.
    expect(chatPrompt([{ role: "system", content: "", images: ["s.png"] }]).text).toBe("<image>\n ASSISTANT:");
  });

  it("refuses a role or content the messages may not have", () => {
    expect(() => chatPrompt([{ role: "tool", content: "x" } as unknown as ChatMessage])).toThrow(/messages\[0\]\.role must be system, user or assistant, not "tool"/);
    expect(() => chatPrompt([{ role: "user", content: 3 } as unknown as ChatMessage])).toThrow(/messages\[0\]\.content must be a string/);
  });

  it("passes raise_exception's message on, naming the template", () => {
    expect(() => fallbackChatTemplate("llama-2").render([{ role: "assistant", content: "Hi." }])).toThrow(
      /^fallback: llama-2: rendering the chat template failed: Conversation roles must alternate/,
    );
  });
});

describe("ChatTemplate", () => {
  // llava-hf/llava-1.5-7b-hf's chat_template.json, as it reads (list content, {% generation %}).
  const llavaHf =
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";
  // A text-only tokenizer template, Vicuna style: content is a string.
  const textStyle =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + ' ' }}{% else %}{{ message['role'] | upper + ': ' + message['content'] + ' ' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

  it("gives a llava-hf template list content, and renders images as <image>", () => {
    const t = new ChatTemplate(llavaHf, { source: "x", family: "llava-1.5", specialTokens: SPECIAL });
    expect(t.contentForm).toBe("list");
    expect(t.render(twoTurns)).toEqual({ text: expected["llava-1.5"].twoTurns, images: ["a.png", "b.png"], addBos: true });
  });

  it("gives a text template string content with <image>\\n before the text, and tells the caller not to add BOS again", () => {
    const t = new ChatTemplate(textStyle, { source: "x", family: "vicuna", specialTokens: SPECIAL });
    expect(t.contentForm).toBe("string");
    expect(t.render(twoTurns)).toEqual({ text: "<s>USER: <image>\nWhat is this? ASSISTANT: A cat. USER: <image>\nAnd this? ASSISTANT:", images: ["a.png", "b.png"], addBos: false });
  });

  it("chooses the content form from the template source", () => {
    expect(readsContentItems("{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>{% endif %}{% endfor %}")).toBe(true);
    expect(readsContentItems("{% for c in message.content %}{% if c.type == 'image' %}<image>{% endif %}{% endfor %}")).toBe(true);
    expect(readsContentItems("{{ message['content'][0]['text'] }}")).toBe(true);
    expect(readsContentItems("{{ '[INST] ' + message['content'].strip() + ' [/INST]' }}")).toBe(false);
  });

  it("gives the template the special tokens by name", () => {
    const t = new ChatTemplate("{{ bos_token }}|{{ eos_token }}|{{ unk_token }}|{{ pad_token }}|{{ messages | length }}", { source: "x", family: "llava-1.5", specialTokens: SPECIAL });
    expect(t.render([{ role: "user", content: "Hi." }])).toEqual({ text: "<s>|</s>|<unk>|<pad>|1", images: [], addBos: false });
  });

  it("refuses a template that leaves out or adds image tags", () => {
    const t = new ChatTemplate("{% for m in messages %}{{ m['content'] }}{% endfor %}", { source: "drops.jinja", family: "llava-1.5" });
    expect(t.render(single).text).toBe("<image>\nWhat is this?");
    const dropping = new ChatTemplate("{% for m in messages %}{{ m['content'][-1]['text'] }}{% endfor %}", { source: "drops.jinja", family: "llava-1.5" });
    expect(() => dropping.render(single)).toThrow(/^drops\.jinja: the chat template wrote 0 <image> tags for the messages' 1 images/);
    // An <image> the user typed is not counted as one the template wrote.
    expect(dropping.render([{ role: "user", content: "Where is <image>?" }]).text).toBe("Where is <image>?");
  });

  it("names the template when it does not parse or fails at run time", () => {
    expect(() => new ChatTemplate("{% for m in messages %}", { source: "bad.jinja", family: "llava-1.5" })).toThrow(ChatTemplateError);
    expect(() => new ChatTemplate("{% for m in messages %}", { source: "bad.jinja", family: "llava-1.5" })).toThrow(/^bad\.jinja: the chat template does not parse: /);
    expect(() => new ChatTemplate("  ", { source: "empty.jinja", family: "llava-1.5" })).toThrow(/^empty\.jinja: the chat template is empty/);
    const failing = new ChatTemplate("{{ messages[0]['content'].nonexistent_method() }}", { source: "run.jinja", family: "llava-1.5" });
    expect(() => failing.render(single)).toThrow(/^run\.jinja: rendering the chat template failed: /);
  });
});

describe("loadChatTemplate", () => {
  let root: string;
  let n = 0;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "wgsl-vlm-chat-template-"));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** A folder holding `files` (name → text). */
  async function folder(files: Record<string, string>): Promise<string> {
    const dir = await mkdtemp(join(root, `${n++}-`));
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    return dir;
  }
  const options = { family: "vicuna" as const, specialTokens: SPECIAL };
  const jinja = "J{% if add_generation_prompt %}:{% endif %}";
  const processor = JSON.stringify({ chat_template: "P{% if add_generation_prompt %}:{% endif %}" });
  const tokenizer = JSON.stringify({ bos_token: "<s>", chat_template: "T{% if add_generation_prompt %}:{% endif %}" });

  it("reads chat_template.jinja", async () => {
    const dir = await folder({ "chat_template.jinja": jinja });
    const t = await loadChatTemplate(dir, options);
    expect(t.source).toBe(join(dir, "chat_template.jinja"));
    expect(t.family).toBe("vicuna");
    expect(t.render([]).text).toBe("J:");
    expect(t.render([], { addGenerationPrompt: false }).text).toBe("J");
  });

  it("reads chat_template.json's chat_template", async () => {
    const dir = await folder({ "chat_template.json": processor });
    const t = await loadChatTemplate(dir, options);
    expect(t.source).toBe(`${join(dir, "chat_template.json")} (chat_template)`);
    expect(t.render([]).text).toBe("P:");
  });

  it("reads tokenizer_config.json's chat_template, a string or the named list's default", async () => {
    let dir = await folder({ "tokenizer_config.json": tokenizer });
    let t = await loadChatTemplate(dir, options);
    expect(t.source).toBe(`${join(dir, "tokenizer_config.json")} (chat_template)`);
    expect(t.render([]).text).toBe("T:");
    dir = await folder({
      "tokenizer_config.json": JSON.stringify({
        chat_template: [
          { name: "tool_use", template: "tools" },
          { name: "default", template: "D" },
        ],
      }),
    });
    t = await loadChatTemplate(dir, options);
    expect(t.source).toBe(`${join(dir, "tokenizer_config.json")} (chat_template "default")`);
    expect(t.render([]).text).toBe("D");
    dir = await folder({ "tokenizer_config.json": JSON.stringify({ chat_template: [{ name: "tool_use", template: "tools" }] }) });
    await expect(loadChatTemplate(dir, options)).rejects.toThrow(/tokenizer_config\.json: chat_template names "tool_use", but none is "default"/);
  });

  it("takes them in transformers' order: .jinja, then chat_template.json, then tokenizer_config.json", async () => {
    expect((await loadChatTemplate(await folder({ "chat_template.jinja": jinja, "chat_template.json": processor, "tokenizer_config.json": tokenizer }), options)).render([]).text).toBe("J:");
    expect((await loadChatTemplate(await folder({ "chat_template.json": processor, "tokenizer_config.json": tokenizer }), options)).render([]).text).toBe("P:");
  });

  it("falls back to the family's template when there is none", async () => {
    const dir = await folder({ "tokenizer_config.json": JSON.stringify({ bos_token: "<s>" }) });
    const t = await loadChatTemplate(dir, options);
    expect(t.source).toBe("fallback: vicuna");
    expect(t.render(single).text).toBe(expected.vicuna.single);
    expect((await loadChatTemplate(await folder({}), { family: "mistral", specialTokens: {} })).source).toBe("fallback: mistral");
  });

  it("names the file of a template that is invalid or raises", async () => {
    let dir = await folder({ "chat_template.jinja": "{% if messages %}unclosed" });
    await expect(loadChatTemplate(dir, options)).rejects.toThrow(new RegExp(`^${escape(join(dir, "chat_template.jinja"))}: the chat template does not parse`));
    dir = await folder({ "chat_template.json": JSON.stringify({ chat_template: "{{ raise_exception('Only user and assistant roles are supported!') }}" }) });
    const t = await loadChatTemplate(dir, options);
    expect(() => t.render(single)).toThrow(ChatTemplateError);
    expect(() => t.render(single)).toThrow(`${join(dir, "chat_template.json")} (chat_template): rendering the chat template failed: Only user and assistant roles are supported!`);
    dir = await folder({ "chat_template.json": "{not json" });
    await expect(loadChatTemplate(dir, options)).rejects.toThrow(/chat_template\.json: not valid JSON/);
    dir = await folder({ "chat_template.json": JSON.stringify({ chat_template: 7 }) });
    await expect(loadChatTemplate(dir, options)).rejects.toThrow(/chat_template\.json: chat_template must be a string, got a number/);
    dir = await folder({ "tokenizer_config.json": JSON.stringify({ chat_template: { default: "x" } }) });
    await expect(loadChatTemplate(dir, options)).rejects.toThrow(/tokenizer_config\.json: chat_template must be a string or a list of \{name, template\}, got a object/);
  });

  it("refuses a template file over its size limit", async () => {
    const dir = await folder({ "chat_template.jinja": "x".repeat(1024 * 1024 + 1) });
    await expect(loadChatTemplate(dir, options)).rejects.toThrow(/chat_template\.jinja: 1048577 bytes, over the 1048576-byte .* limit for chat template/);
  });
});

describe("chooseChatFamily", () => {
  const llama = { family: "llama" as const, vocabSize: 32064 };
  const mistral = { family: "mistral" as const, vocabSize: 32064 };
  const anyres = { gridPinpoints: [[336, 672]] };
  const none = () => false;
  const chatml = (t: string) => t === "<|im_start|>";

  it("picks the family by model kind, decoder and vocabulary", () => {
    expect(chooseChatFamily({ kind: "llava", text: llama, anyres: null }, none)).toBe("llava-1.5");
    expect(chooseChatFamily({ kind: "llava", text: mistral, anyres: null }, none)).toBe("mistral");
    expect(chooseChatFamily({ kind: "llava", text: mistral, anyres }, none)).toBe("mistral");
    expect(chooseChatFamily({ kind: "llava", text: llama, anyres }, chatml)).toBe("chatml");
    expect(chooseChatFamily({ kind: "llava", text: llama, anyres }, none)).toBe("vicuna");
    expect(chooseChatFamily({ kind: "llama", text: mistral }, none)).toBe("mistral");
    expect(chooseChatFamily({ kind: "llama", text: llama }, chatml)).toBe("chatml");
    expect(chooseChatFamily({ kind: "llama", text: llama }, none)).toBe("llama-2");
    expect(() => chooseChatFamily({ kind: "clip_vision" }, none)).toThrow(/clip_vision model has no language model/);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

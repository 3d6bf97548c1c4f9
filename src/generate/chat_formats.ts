/**
 * The chat formats used when a checkpoint has no chat template of its own, one per model family,
 * each written as a Jinja chat template (rendered by chat_template.ts like a checkpoint's own), and
 * the rule that picks the family from the model's config.
 *
 * Where the templates come from:
 *   llava-1.5  llava-hf/llava-1.5-7b-hf's chat_template.json, verbatim. (llava-hf/llava-v1.6-vicuna-*-hf
 *              ship this same template.)
 *   vicuna     the same, plus LLaVA's vicuna_v1 system line when the conversation has no system
 *              message: LLaVA-NeXT-vicuna was trained with it (LLaVA's conv_vicuna_v1; the llava-hf
 *              model card's prompt "A chat between ... questions. USER: <image>\n... ASSISTANT:").
 *   mistral    llava-hf/llava-v1.6-mistral-7b-hf's chat_template.json as of its "support system msg"
 *              revision (system as <<SYS>>, "</s> " after each assistant turn), verbatim.
 *   chatml     ChatML in llava-hf's form (images first, "\n" after <|im_end|>), with LLaVA's
 *              conv_chatml_direct system line "Answer the questions." (what llava-v1.6-34b was
 *              trained with) when the conversation has none.
 *   llama-2    meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json template (string content,
 *              bos_token before each [INST], eos_token after each answer).
 */

/** The chat format of a family of checkpoints. */
export type ChatFamily = "llava-1.5" | "vicuna" | "mistral" | "chatml" | "llama-2";

export const CHAT_FAMILIES: readonly ChatFamily[] = ["llava-1.5", "vicuna", "mistral", "chatml", "llama-2"];

const LLAVA_1_5 =
  "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}" +
  "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}" +
  "{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}" +
  "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}" +
  "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

/** LLaVA's conv_vicuna_v1 system message. */
export const VICUNA_SYSTEM =
  "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.";

const VICUNA = `{% if messages | length == 0 or messages[0]['role'] != 'system' %}{{ "${VICUNA_SYSTEM} " }}{% endif %}${LLAVA_1_5}`;

const MISTRAL =
  "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'][0]['text'] + '\\n<</SYS>>\\n\\n' }}" +
  "{% elif message['role'] == 'user' %}{{ '[INST] ' }}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}" +
  "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}{{' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + '</s> '}}" +
  "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

/** LLaVA's conv_chatml_direct system message (llava-v1.6-34b). */
export const CHATML_SYSTEM = "Answer the questions.";

const CHATML =
  `{% if messages | length == 0 or messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n${CHATML_SYSTEM}<|im_end|>\\n' }}{% endif %}` +
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}" +
  "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}" +
  "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}" +
  "{{ '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const LLAMA_2 =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
  "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}" +
  "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
  "{% else %}{% set content = message['content'] %}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/** Each family's fallback chat template (Jinja source). */
export const FALLBACK_TEMPLATES: Readonly<Record<ChatFamily, string>> = {
  "llava-1.5": LLAVA_1_5,
  vicuna: VICUNA,
  mistral: MISTRAL,
  chatml: CHATML,
  "llama-2": LLAMA_2,
};

/**
 * The special tokens the fallbacks assume when the caller names none: LLaMA's and Mistral's
 * SentencePiece <s> and </s> (only the llama-2 template uses them).
 */
export const FALLBACK_SPECIAL_TOKENS: Readonly<Record<string, string>> = { bos_token: "<s>", eos_token: "</s>" };

/** The least of a model config (weights/config.ts ModelConfig) that decides its chat family. */
export interface ChatFamilyConfig {
  kind: string;
  text?: { family: "llama" | "mistral" };
  /** LLaVA-NeXT's anyres tiling; null (or absent) for llava-1.5. */
  anyres?: unknown;
}

/**
 * The chat family of a model, for when its checkpoint has no chat template:
 *
 *   llava (1.5) + llama decoder                    llava-1.5
 *   llava (1.5) + mistral decoder (BakLLaVA)       mistral   (llava-hf/bakLlava-v1-hf's template is [INST])
 *   llava_next + mistral decoder                   mistral   (llava-v1.6-mistral)
 *   llava_next + llama, <|im_start|> in the vocab  chatml    (llava-v1.6-34b, Nous-Hermes-2-Yi)
 *   llava_next + llama otherwise                   vicuna    (llava-v1.6-vicuna)
 *   text-only mistral                              mistral   ([INST] ... [/INST], "</s> " after answers)
 *   text-only llama, <|im_start|> in the vocab     chatml
 *   text-only llama otherwise                      llama-2   (Llama-2-chat's [INST] <<SYS>>)
 *
 * A model with no decoder (a CLIP vision tower alone) has no chat: an Error.
 */
export function chooseChatFamily(config: ChatFamilyConfig, hasToken: (token: string) => boolean): ChatFamily {
  if (config.text === undefined) throw new Error(`a ${config.kind} model has no language model, so no chat format`);
  const mistral = config.text.family === "mistral";
  const chatml = () => hasToken("<|im_start|>");
  if (config.kind === "llava") {
    const next = config.anyres !== null && config.anyres !== undefined;
    if (mistral) return "mistral";
    if (!next) return "llava-1.5";
    return chatml() ? "chatml" : "vicuna";
  }
  if (mistral) return "mistral";
  return chatml() ? "chatml" : "llama-2";
}

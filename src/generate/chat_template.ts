/**
 * Prompts from chat messages, with llava-1.5-hf's chat template:
 *
 *   each turn:  ROLE: <image>\n (once per image of the turn) text␠      (system turns: text␠)
 *   then:       ASSISTANT:
 *
 * so one question about one image reads "USER: <image>\nWhat are these? ASSISTANT:".
 */
import type { Tensor } from "../tensor/tensor.js";
import type { PixelValues } from "../image/preprocess.js";

/** An image: a file path, the file's bytes, preprocessed pixel values, or a [3, H, W] tensor of them. */
export type ImageInput = string | Uint8Array | PixelValues | Tensor;

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
  /** Images shown with this turn (placed before its text). */
  images?: readonly ImageInput[];
}

export const IMAGE_TAG = "<image>";

/** The prompt text and the images in the order their tags appear in it. */
export function chatPrompt(messages: readonly ChatMessage[]): { text: string; images: ImageInput[] } {
  let text = "";
  const images: ImageInput[] = [];
  for (const [i, message] of messages.entries()) {
    if (!["system", "user", "assistant"].includes(message.role)) {
      throw new Error(`messages[${i}].role must be system, user or assistant, not ${JSON.stringify(message.role)}`);
    }
    if (typeof message.content !== "string") throw new Error(`messages[${i}].content must be a string`);
    if (message.role !== "system") text += `${message.role.toUpperCase()}: `;
    for (const image of message.images ?? []) {
      text += `${IMAGE_TAG}\n`;
      images.push(image);
    }
    text += `${message.content} `;
  }
  return { text: `${text}ASSISTANT:`, images };
}

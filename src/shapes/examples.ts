/**
 * Examples of the shapes world: a scene, a question and its answer, and the token ids a model
 * is trained on or prompted with. Both the training set and every evaluation draw examples
 * from here, so a (seed, index) pair always gives the same scene and question.
 *
 * The prompt is llava-1.5's chat template, "USER: <image>\n{question} ASSISTANT:", and the
 * target is " {answer}" followed by the end-of-sequence token: so the ids of prompt + target
 * are exactly the ids of the whole conversation, and a trained model stops by itself.
 */
import { chatPrompt } from "../generate/chat_template.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { QUESTION_TYPES, sampleQuestion, trainingQuestions, type QuestionAnswer } from "./questions.js";
import { exampleRandom, sampleScene, type Scene } from "./world.js";

export interface Example extends QuestionAnswer {
  scene: Scene;
}

/** The prompt text of a question about one image, as the runtime's chat template writes it. */
export function promptText(question: string): string {
  return chatPrompt([{ role: "user", content: question, images: [new Uint8Array()] }]).text;
}

/** The whole conversation: the prompt, a space, the answer. */
export function conversationText(question: string, answer: string): string {
  return `${promptText(question)} ${answer}`;
}

/**
 * Token ids of the prompt (with BOS) and of the target (the answer, then EOS). Throws if the
 * prompt's ids are not a prefix of the conversation's: then the model would be trained on
 * splits it never sees when prompted.
 */
export function encodeExample(tokenizer: Tokenizer, question: string, answer: string): { promptIds: number[]; targetIds: number[] } {
  const promptIds = tokenizer.encode(promptText(question));
  const all = tokenizer.encode(conversationText(question, answer));
  if (!promptIds.every((id, i) => all[i] === id)) {
    throw new Error(`the tokenizer splits the prompt of ${JSON.stringify(question)} differently once the answer follows`);
  }
  if (tokenizer.eosId === undefined) throw new Error(`${tokenizer.description}: no end-of-sequence token`);
  return { promptIds, targetIds: [...all.slice(promptIds.length), tokenizer.eosId] };
}

/**
 * Evaluation example `index` of the set named `seed`: a fresh scene and one question, its
 * type going round the five types in turn (so any 5k examples hold k of each).
 */
export function evalExample(seed: number, index: number): Example {
  const random = exampleRandom(seed, index);
  const scene = sampleScene(random);
  return { scene, ...sampleQuestion(scene, QUESTION_TYPES[index % QUESTION_TYPES.length], random) };
}

/** Training image `index` of the set named `seed`, with all its questions. */
export function trainingImage(seed: number, index: number): { scene: Scene; questions: QuestionAnswer[] } {
  const random = exampleRandom(seed, index);
  const scene = sampleScene(random);
  return { scene, questions: trainingQuestions(scene, random) };
}

/** Every conversation of `images` training images: the text the tokenizer's vocabulary is learnt from. */
export function tokenizerCorpus(seed: number, images: number): string[] {
  const texts: string[] = [];
  for (let i = 0; i < images; i++) for (const qa of trainingImage(seed, i).questions) texts.push(conversationText(qa.question, qa.answer));
  return texts;
}

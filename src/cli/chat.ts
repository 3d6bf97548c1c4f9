/** `wgsl-vlm chat`: an interactive conversation; `/image PATH` shows the model an image. */
import { createInterface } from "node:readline/promises";
import { parseArgs } from "node:util";
import type { ChatMessage } from "../generate/chat_template.js";
import { DeviceLostError } from "../tensor/errors.js";
import type { Command } from "./command.js";
import { statistics } from "./generate.js";
import { loadModelFrom, MODEL_OPTIONS, MODEL_USAGE, SAMPLING_OPTIONS, SAMPLING_USAGE, samplingFrom } from "./model_options.js";

const HELP = `commands: /image PATH (attach an image to your next message), /reset (forget the conversation), /exit`;

const command: Command = {
  summary: "chat with a model interactively (/image PATH attaches an image)",
  usage: `usage: wgsl-vlm chat --model DIR [--system TEXT] [options]
  ${HELP}
  --system TEXT    a system message starting the conversation
  --stats          print timing statistics after each answer
${SAMPLING_USAGE}
${MODEL_USAGE}`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: { ...MODEL_OPTIONS, ...SAMPLING_OPTIONS, system: { type: "string" }, stats: { type: "boolean" } },
    });
    const sampling = samplingFrom(values);
    const model = await loadModelFrom(values);
    const start: ChatMessage[] = values.system !== undefined ? [{ role: "system", content: values.system }] : [];
    let history = [...start];
    let pendingImages: string[] = [];
    const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
    const abort = { controller: null as AbortController | null };
    // Ctrl-C stops the answer being generated; at the prompt it ends the chat.
    rl.on("SIGINT", () => (abort.controller ? abort.controller.abort() : rl.close()));
    process.stdout.write(`${HELP}\n`);
    // Lines are read through the iterator, which buffers them: input piped in while an answer
    // is being generated waits its turn instead of being lost.
    const lines = rl[Symbol.asyncIterator]();
    try {
      for (;;) {
        rl.setPrompt("> ");
        rl.prompt();
        const next = await lines.next();
        if (next.done) break; // input closed
        const line = String(next.value).trim();
        if (line === "/exit" || line === "/quit") break;
        if (line === "/reset") {
          history = [...start];
          pendingImages = [];
          process.stdout.write("(conversation cleared)\n");
          continue;
        }
        if (line.startsWith("/image")) {
          const path = line.slice("/image".length).trim();
          if (!path) process.stdout.write("usage: /image PATH\n");
          else {
            pendingImages.push(path);
            process.stdout.write(`(${path} will be shown with your next message)\n`);
          }
          continue;
        }
        if (!line) continue;
        const message: ChatMessage = { role: "user", content: line, images: pendingImages };
        abort.controller = new AbortController();
        try {
          const result = await model.complete(
            { messages: [...history, message], ...sampling, signal: abort.controller.signal },
            (chunk) => process.stdout.write(chunk.text),
          );
          process.stdout.write("\n");
          if (values.stats) process.stdout.write(`(${statistics(result)})\n`);
          history.push(message, { role: "assistant", content: result.text.trim() });
          pendingImages = [];
        } catch (error) {
          // A lost device runs nothing more: the session ends with its error.
          if (error instanceof DeviceLostError) throw error;
          // A bad image or an over-long conversation: say so and keep the session.
          process.stdout.write(`\nerror: ${(error as Error).message}\n`);
          pendingImages = [];
        } finally {
          abort.controller = null;
        }
      }
    } finally {
      rl.close();
      model.dispose();
    }
    return 0;
  },
};

export default command;

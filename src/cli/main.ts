/**
 * `wgsl-vlm <command> [options]`: the command-line interface. Each command lives in its own file
 * and is imported only when used, so `wgsl-vlm info` does not load image or model code.
 *
 * Exit status: 0 done; 1 it failed (one line on stderr says why: a file, the GPU, a check);
 * 2 a bad command line (the line, then the command's usage); 141 stdout was closed by its
 * reader (output.ts). `--help` or `-h` on any command prints its usage, status 0.
 */
import type { Command } from "./command.js";
import { UsageError } from "./command.js";
import { handleOutputErrors } from "./output.js";

const COMMANDS: Record<string, () => Promise<{ default: Command }>> = {
  demo: () => import("./demo.js"),
  info: () => import("./info.js"),
  generate: () => import("./generate.js"),
  chat: () => import("./chat.js"),
  inspect: () => import("./inspect.js"),
  preprocess: () => import("./preprocess.js"),
  convert: () => import("./convert.js"),
  tokenize: () => import("./tokenize.js"),
  verify: () => import("./verify.js"),
  embed: () => import("./embed.js"),
  classify: () => import("./classify.js"),
  index: () => import("./index_images.js"),
  search: () => import("./search.js"),
  eval: () => import("./eval.js"),
  "eval-clip": () => import("./eval_clip.js"),
  bench: () => import("./bench.js"),
  serve: () => import("./serve.js"),
  caption: () => import("./caption.js"),
};

/** The command called `name`, if there is one (an own key: not `toString` or `constructor`). */
function commandLoader(name: string | undefined): (() => Promise<{ default: Command }>) | undefined {
  return name !== undefined && Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
}

function commandList(): string {
  return Object.keys(COMMANDS)
    .map((name) => `  ${name}`)
    .join("\n");
}

const HELP_FLAGS = ["--help", "-h"];

/** --help or -h anywhere before a `--` (after one, arguments are text, not options). */
function asksForHelp(argv: string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).some((arg) => HELP_FLAGS.includes(arg));
}

async function overview(): Promise<string> {
  const lines = await Promise.all(
    Object.entries(COMMANDS).map(async ([n, load]) => `  ${n.padEnd(12)} ${(await load()).default.summary}`),
  );
  return `usage: wgsl-vlm <command> [options]\n\ncommands:\n${lines.join("\n")}\n\nwgsl-vlm help <command> for its options\n`;
}

/** `wgsl-vlm help [COMMAND]`: the command list, or one command's usage (bench's covers its benchmarks). */
async function help(topic: string | undefined): Promise<number> {
  if (topic === undefined) {
    process.stdout.write(await overview());
    return 0;
  }
  const load = commandLoader(topic);
  if (!load) {
    process.stderr.write(`wgsl-vlm help: unknown command '${topic}'\ncommands:\n${commandList()}\n`);
    return 2;
  }
  const command = (await load()).default;
  process.stdout.write(`${command.summary}\n\n${command.usage}\n`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  handleOutputErrors(commandLoader(name) || name === "help" ? `wgsl-vlm ${name}` : "wgsl-vlm");
  if (name === undefined) {
    process.stderr.write(await overview());
    return 2;
  }
  if (name === "help" || HELP_FLAGS.includes(name)) return help(rest[0]);
  const load = commandLoader(name);
  if (!load) {
    process.stderr.write(`wgsl-vlm: unknown command '${name}'\ncommands:\n${commandList()}\n`);
    return 2;
  }
  if (asksForHelp(rest)) return help(name);
  const command = (await load()).default;
  try {
    return await command.run(rest);
  } catch (error) {
    // parseArgs' messages can span lines; an error is one line, then the usage.
    const message = (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, " ");
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`wgsl-vlm ${name}: ${message}\n\n${command.usage}\n`);
      return 2;
    }
    process.stderr.write(`wgsl-vlm ${name}: ${message}\n`);
    if (process.env.WGSL_VLM_DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
    return 1;
  }
}

// Run directly (`tsx src/cli/main.ts ...`, as `npm run cli` does) rather than imported by bin/.
import { pathToFileURL } from "node:url";
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}

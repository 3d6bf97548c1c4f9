/**
 * `wgsl-vlm <command> [options]`: the command-line interface. Each command lives in its own file
 * and is imported only when used, so `wgsl-vlm info` does not load image or model code.
 */
import type { Command } from "./command.js";
import { UsageError } from "./command.js";

const COMMANDS: Record<string, () => Promise<{ default: Command }>> = {
  demo: () => import("./demo.js"),
  info: () => import("./info.js"),
  generate: () => import("./generate.js"),
  chat: () => import("./chat.js"),
  inspect: () => import("./inspect.js"),
  preprocess: () => import("./preprocess.js"),
  tokenize: () => import("./tokenize.js"),
  verify: () => import("./verify.js"),
  eval: () => import("./eval.js"),
  bench: () => import("./bench.js"),
};

function commandList(): string {
  return Object.keys(COMMANDS)
    .map((name) => `  ${name}`)
    .join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    const target = rest[0] && COMMANDS[rest[0]] ? (await COMMANDS[rest[0]]()).default : undefined;
    if (target) {
      process.stdout.write(`${target.summary}\n\n${target.usage}\n`);
      return 0;
    }
    const lines = await Promise.all(
      Object.entries(COMMANDS).map(async ([n, load]) => `  ${n.padEnd(12)} ${(await load()).default.summary}`),
    );
    process.stdout.write(`usage: wgsl-vlm <command> [options]\n\ncommands:\n${lines.join("\n")}\n\nwgsl-vlm help <command> for its options\n`);
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    process.stderr.write(`wgsl-vlm: unknown command '${name}'\ncommands:\n${commandList()}\n`);
    return 2;
  }
  const command = (await load()).default;
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`wgsl-vlm ${name}: ${(error as Error).message}\n\n${command.usage}\n`);
      return 2;
    }
    process.stderr.write(`wgsl-vlm ${name}: ${(error as Error).message}\n`);
    if (process.env.WGSL_VLM_DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
    return 1;
  }
}

// Run directly (`tsx src/cli/main.ts ...`, as `npm run cli` does) rather than imported by bin/.
import { pathToFileURL } from "node:url";
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}

/** What every CLI subcommand provides; main.ts loads each one only when it is called. */
export interface Command {
  /** One line for the command list. */
  summary: string;
  /** Usage text printed by `wgsl-vlm help <command>` and on bad arguments. */
  usage: string;
  /** Runs the command; resolves to the process exit code. */
  run(argv: string[]): Promise<number>;
}

/** A bad command line: main prints the message and the command's usage, and exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

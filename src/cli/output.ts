/**
 * What the command does when its own output cannot be written; main.ts installs it for every
 * command, so each command just writes to process.stdout and process.stderr.
 *
 * A write that fails does not throw: the stream emits an 'error' event (on a later tick, also
 * for output streamed token by token), and an unhandled one is a crash with a stack trace.
 *
 * - stdout closed by its reader (EPIPE: `wgsl-vlm generate ... | head -c 3`): the command ends
 *   at once, silently, with status 141, which is what the shell reports for a command killed by
 *   SIGPIPE, as `cat` or `yes` are in the same place (Node ignores SIGPIPE, hence the EPIPE).
 *   The reader has what it wanted, so there is nothing to say; but the output was cut short, so
 *   it is not a success (under `set -o pipefail` the pipeline fails as `yes | head` does, and
 *   without it the pipeline's status is the reader's, so nothing changes for ordinary use).
 * - stdout failing otherwise (a full disk, ENOSPC; an I/O error): one line on stderr, such as
 *   "wgsl-vlm generate: cannot write to standard output: no space left on device (ENOSPC)",
 *   and status 1.
 * - stderr failing: the diagnostics are lost (there is nowhere left to report it) and the
 *   command carries on, its status still saying how it went; nothing is retried, so nothing
 *   loops.
 */
import { getSystemErrorMap } from "node:util";

/** 128 + SIGPIPE (13): the status of a command whose reader went away. */
const EXIT_BROKEN_PIPE = 141;

/** Installs the handling above; `prefix` starts the error line ("wgsl-vlm generate"). */
export function handleOutputErrors(prefix: string): void {
  // A stream emits one 'error' at most: after it, it is destroyed and later writes fail silently.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(EXIT_BROKEN_PIPE);
    // Exit once the line is written (or has failed): a pipe on stderr may take it a tick later.
    process.stderr.write(`${prefix}: cannot write to standard output: ${describe(error)}\n`, () => process.exit(1));
  });
  // Handled, so not a crash; there is nowhere to report it.
  process.stderr.on("error", () => {});
}

/** "no space left on device (ENOSPC)": the system's wording for the error, and its code. */
function describe(error: NodeJS.ErrnoException): string {
  const known = typeof error.errno === "number" ? getSystemErrorMap().get(error.errno) : undefined;
  if (known) return `${known[1]} (${known[0]})`;
  return error.code ? `${error.message} (${error.code})` : error.message;
}

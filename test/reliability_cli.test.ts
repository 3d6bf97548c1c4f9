/**
 * The command line when its output cannot be written, and its messages for a bad command line:
 * the real `wgsl-vlm` (from source, through tsx) as a child process, its stdout on a pipe whose
 * reader goes away or on /dev/full (where every write fails with ENOSPC).
 */
import { spawn, type StdioOptions } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeRandomCheckpoint } from "./random_checkpoint.js";

const MAIN = join(import.meta.dirname, "..", "src", "cli", "main.ts");
const FIXTURES = join(import.meta.dirname, "fixtures");
const TOKENIZER = join(FIXTURES, "tokenizer", "tokenizer.model");
const CHECKPOINT = join(FIXTURES, "golden", "tiny-llava-a", "model");
const SHAPES_MODEL = join(import.meta.dirname, "..", "weights", "shapes-llava");

/**
 * Where a stream goes: "pipe" (collected), "full" (/dev/full), or "closed": a pipe whose reader
 * is gone before the command starts, or, with `closeAfter`, once that many bytes have come.
 */
type Sink = "pipe" | "full" | "closed";

interface RunOptions {
  stdout?: Sink;
  stderr?: Sink;
  closeAfter?: number;
  input?: string;
}

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], { stdout = "pipe", stderr = "pipe", closeAfter, input }: RunOptions = {}): Promise<Outcome> {
  const full = openSync("/dev/full", "w");
  const sink = (s: Sink) => (s === "full" ? full : "pipe");
  const stdio: StdioOptions = [input === undefined ? "ignore" : "pipe", sink(stdout), sink(stderr)];
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], { stdio });
  closeSync(full);
  const text = { stdout: "", stderr: "" };
  for (const [name, sinkOf] of [["stdout", stdout], ["stderr", stderr]] as const) {
    const stream = child[name];
    if (!stream) continue;
    if (sinkOf === "closed" && closeAfter === undefined) {
      stream.destroy(); // the child is still starting: its every write finds the reader gone
      continue;
    }
    stream.on("data", (data: Buffer) => {
      text[name] += data.toString();
      if (sinkOf === "closed" && text[name].length >= closeAfter!) stream.destroy();
    });
  }
  child.stdin?.end(input);
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, ...text }));
  });
}

/** What the command itself wrote to stderr: without Dawn's warnings about the adapter's limits. */
function ownLines(stderr: string): string[] {
  return stderr.split("\n").filter((line) => line !== "" && !line.startsWith("Warning: "));
}

function expectNoCrash(outcome: Outcome): void {
  expect(outcome.signal).toBeNull();
  expect(outcome.stderr).not.toMatch(/^\s+at |node:internal|Unhandled|Error: /m);
}

const ENOSPC = (command: string) => `wgsl-vlm ${command}: cannot write to standard output: no space left on device (ENOSPC)`;

let dir: string;
let model: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-reliability-"));
  // A tiny LLaMA with random weights and LLaMA-2's tokenizer: a few ms a token, and 32000
  // tokens to choose from, so it rambles on rather than ending early.
  model = join(dir, "model");
  await writeRandomCheckpoint(model, {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: 32000,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    max_position_embeddings: 256,
  }, { scale: 0.5 });
  await copyFile(TOKENIZER, join(model, "tokenizer.model"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const generate = (tokens: number) => ["generate", "--model", model, "--prompt", "Hello", "--max-new-tokens", String(tokens), "--dtype", "f32", "--quiet"];

describe("a standard output closed by its reader ends the command quietly, status 141", () => {
  it("for commands that print their output at once", async () => {
    const commands = [
      ["help"],
      ["generate", "--help"],
      ["tokenize", "--tokenizer", TOKENIZER, "Hello world"],
      ["inspect", CHECKPOINT],
      ["info"],
    ];
    for (const args of commands) {
      const outcome = await cli(args, { stdout: "closed" });
      expectNoCrash(outcome);
      expect({ args, code: outcome.code, stderr: ownLines(outcome.stderr) }).toEqual({ args, code: 141, stderr: [] });
    }
  });

  it("while generate streams its tokens, once the reader has had 3 bytes", async () => {
    const outcome = await cli(generate(200), { stdout: "closed", closeAfter: 3 });
    expectNoCrash(outcome);
    expect(outcome.code).toBe(141);
    expect(outcome.stdout.length).toBeGreaterThanOrEqual(3);
    expect(ownLines(outcome.stderr)).toEqual([]);
  });

  it("in a chat, with questions still waiting", async () => {
    const input = "Hello\nHow are you?\nAnd then?\n";
    const outcome = await cli(["chat", "--model", model, "--max-new-tokens", "100", "--dtype", "f32", "--quiet"], { stdout: "closed", closeAfter: 3, input });
    expectNoCrash(outcome);
    expect(outcome.code).toBe(141);
    expect(ownLines(outcome.stderr)).toEqual([]);
  });
});

describe("a full disk under standard output is one line on stderr, status 1", () => {
  it("for commands that print their output at once, tables included", async () => {
    const commands: [string, string[]][] = [
      ["help", ["help"]],
      ["tokenize", ["tokenize", "--tokenizer", TOKENIZER, "--json", "Hello world"]],
      ["inspect", ["inspect", CHECKPOINT]],
      ["info", ["info"]],
      ["eval", ["eval", "--model", SHAPES_MODEL, "--n", "1", "--quiet"]],
    ];
    for (const [command, args] of commands) {
      const outcome = await cli(args, { stdout: "full" });
      expectNoCrash(outcome);
      expect({ args, code: outcome.code, stderr: ownLines(outcome.stderr) }).toEqual({ args, code: 1, stderr: [ENOSPC(command)] });
    }
  });

  it("for generate's streamed tokens, and chat's", async () => {
    for (const [command, args, input] of [
      ["generate", generate(20), undefined],
      ["chat", ["chat", "--model", model, "--max-new-tokens", "20", "--dtype", "f32", "--quiet"], "Hello\n"],
    ] as const) {
      const outcome = await cli([...args], { stdout: "full", input });
      expectNoCrash(outcome);
      expect({ command, code: outcome.code, stderr: ownLines(outcome.stderr) }).toEqual({ command, code: 1, stderr: [ENOSPC(command)] });
    }
  });
});

describe("a standard error that cannot be written neither crashes nor loops", () => {
  it("leaves the status to say how the command went", async () => {
    const usage = await cli(["info", "--no-such-option"], { stderr: "full" });
    expect([usage.code, usage.signal, usage.stdout]).toEqual([2, null, ""]);
    const closed = await cli(["info", "--no-such-option"], { stderr: "closed" });
    expect([closed.code, closed.signal, closed.stdout]).toEqual([2, null, ""]);
    // Both full: the ENOSPC line has nowhere to go either.
    const both = await cli(["tokenize", "--tokenizer", TOKENIZER, "Hello"], { stdout: "full", stderr: "full" });
    expect([both.code, both.signal]).toEqual([1, null]);
  });

  it("lets a command whose progress lines are lost finish its work", async () => {
    const args = generate(5).filter((a) => a !== "--quiet");
    const outcome = await cli(args, { stderr: "full" });
    expect([outcome.code, outcome.signal]).toEqual([0, null]);
    expect(outcome.stdout.trim()).not.toBe("");
  });
});

describe("help and the messages for a bad command line", () => {
  it("--help and -h print any command's usage, status 0", async () => {
    const overview = await cli(["help"]);
    expect(overview.code).toBe(0);
    const commands = [...overview.stdout.split("commands:\n")[1].matchAll(/^ {2}(\w+) /gm)].map((m) => m[1]);
    expect(commands).toContain("generate");
    const runs = [...commands.map((c) => [c, "--help"]), ["generate", "-h"], ["bench", "kernels", "--help"], ["generate", "--model", "x", "--help"]];
    const outcomes = await Promise.all(runs.map((args) => cli(args)));
    outcomes.forEach((outcome, i) => {
      const name = runs[i][0];
      expect({ args: runs[i], code: outcome.code, stderr: outcome.stderr }).toEqual({ args: runs[i], code: 0, stderr: "" });
      expect(outcome.stdout).toMatch(new RegExp(`^.+\\n\\nusage: wgsl-vlm ${name}`));
    });
    // After `--`, -h is text to tokenize, not a request for help.
    expect((await cli(["tokenize", "--tokenizer", TOKENIZER, "--no-bos", "--", "-h"])).stdout).toBe("448 29882\n");
  });

  it("say which command is unknown", async () => {
    const [help, command, inherited, none] = await Promise.all([cli(["help", "nope"]), cli(["nope"]), cli(["toString"]), cli([])]);
    expect([help.code, help.stdout, help.stderr.split("\n")[0]]).toEqual([2, "", "wgsl-vlm help: unknown command 'nope'"]);
    expect([command.code, command.stderr.split("\n")[0]]).toEqual([2, "wgsl-vlm: unknown command 'nope'"]);
    expect([inherited.code, inherited.stderr.split("\n")[0]]).toEqual([2, "wgsl-vlm: unknown command 'toString'"]);
    expect([none.code, none.stdout]).toEqual([2, ""]);
    expect(none.stderr).toMatch(/^usage: wgsl-vlm <command> \[options\]\n/);
  });

  it("name the option or argument that is wrong, on one line, then the usage", async () => {
    const cases: [string[], string][] = [
      [["inspect", "--bogus", CHECKPOINT], "wgsl-vlm inspect: Unknown option '--bogus'"],
      [["info", "extra"], "wgsl-vlm info: Unexpected argument 'extra'"],
      [["generate", "--prompt", "Hi"], "wgsl-vlm generate: --model DIR is required"],
      [["generate", "--model", model], "wgsl-vlm generate: --prompt TEXT is required"],
      [["generate", "--model", model, "--prompt", "--raw"], "wgsl-vlm generate: Option '--prompt' argument is ambiguous. Did you forget"],
      [["demo", "--dtype", "f64"], "wgsl-vlm demo: --dtype must be f16 or f32, not 'f64'"],
      [["verify"], "wgsl-vlm verify: DIR is missing"],
      [["verify", CHECKPOINT, "/no/such/golden"], "wgsl-vlm verify: /no/such/golden: no such folder"],
    ];
    const outcomes = await Promise.all(cases.map(([args]) => cli(args)));
    outcomes.forEach((outcome, i) => {
      const [args, start] = cases[i];
      const [first, blank, usage] = outcome.stderr.split("\n");
      expect({ args, code: outcome.code, first: first.slice(0, start.length), blank, usage: usage.split(" ").slice(0, 3) }).toEqual({
        args,
        code: 2,
        first: start,
        blank: "",
        usage: ["usage:", "wgsl-vlm", args[0]],
      });
    });
  });

  it("say a truncated tokenizer.model is truncated, status 1", async () => {
    const cut = join(dir, "cut.model");
    await writeFile(cut, readFileSync(TOKENIZER).subarray(0, 499437));
    const outcome = await cli(["tokenize", "--tokenizer", cut, "Hello"]);
    expect(outcome.code).toBe(1);
    expect(outcome.stderr).toBe(
      `wgsl-vlm tokenize: ${cut} is truncated, or not a whole SentencePiece model: it ends at byte 499437, after 32000 pieces, with no trainer_spec\n`,
    );
  });
});

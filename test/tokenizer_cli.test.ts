/** `wgsl-vlm tokenize`: run() called directly, stdout captured. */
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import tokenize from "../src/cli/tokenize.js";
import { UsageError } from "../src/cli/command.js";
import { TokenizerError } from "../src/tokenizer/index.js";
import { runCommand } from "./helpers.js";

const MODEL = fileURLToPath(new URL("./fixtures/tokenizer/tokenizer.model", import.meta.url));
const NOT_A_MODEL = fileURLToPath(new URL("./fixtures/tokenizer/README.md", import.meta.url));

const run = (argv: string[]) => runCommand(tokenize, argv);

describe("wgsl-vlm tokenize", () => {
  it("prints the ids, BOS first", async () => {
    expect(await run(["--tokenizer", MODEL, "Hello world"])).toEqual({ code: 0, stdout: "1 15043 3186\n", stderr: "" });
  });

  it("prints JSON, and leaves BOS out with --no-bos", async () => {
    const { code, stdout } = await run(["--tokenizer", MODEL, "--no-bos", "--json", "USER: <image>\nWhat is shown in this image? ASSISTANT:"]);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ ids: [3148, 1001, 29901, 529, 3027, 29958, 13, 5618, 338, 4318, 297, 445, 1967, 29973, 319, 1799, 9047, 13566, 29901] });
  });

  it("takes a model folder", async () => {
    const folder = fileURLToPath(new URL("./fixtures/tokenizer/", import.meta.url));
    expect((await run(["--tokenizer", folder, "--json", ""])).stdout).toBe('{"ids":[1]}\n');
  });

  it("rejects a bad command line with a UsageError", async () => {
    await expect(run(["Hello"])).rejects.toThrow(UsageError);
    await expect(run(["--tokenizer", MODEL])).rejects.toThrow(/TEXT is missing/);
    await expect(run(["--tokenizer", MODEL, "two", "texts"])).rejects.toThrow(/expected one TEXT, got 2/);
    await expect(run(["--tokenizer", "/no/such/path", "Hello"])).rejects.toThrow(new UsageError("--tokenizer: no such file or folder: /no/such/path"));
    await expect(run(["--tokenizer", MODEL, "--bos", "Hello"])).rejects.toMatchObject({ code: "ERR_PARSE_ARGS_UNKNOWN_OPTION" });
  });

  it("fails with a TokenizerError naming a file that is not a tokenizer", async () => {
    await expect(run(["--tokenizer", NOT_A_MODEL, "Hello"])).rejects.toThrow(TokenizerError);
    await expect(run(["--tokenizer", NOT_A_MODEL, "Hello"])).rejects.toThrow(/README\.md: not a SentencePiece model, or a corrupt one: unsupported wire type 3 for field 4 at byte 0/);
  });
});

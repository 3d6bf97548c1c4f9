import { spawn } from "node:child_process";
import { copyFile, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { writeRandomCheckpoint } from "./random_checkpoint.js";

const FIXTURES = join(import.meta.dirname, "fixtures");
const MAIN = join(import.meta.dirname, "..", "src", "cli", "main.ts");

/** Runs `wgsl-vlm args...` (from source, through tsx) with `input` on stdin. */
function cli(args: string[], input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

describe("wgsl-vlm chat", () => {
  it("keeps a conversation, attaches images with /image, survives a bad image, and exits on /exit", async () => {
    const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-chat-"));
    await writeRandomCheckpoint(dir, {
      model_type: "llava",
      image_token_index: 32000,
      text_config: { model_type: "llama", vocab_size: 32002, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 128 },
      vision_config: { model_type: "clip_vision_model", image_size: 16, patch_size: 8, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 },
      vision_feature_layer: -1,
    }, { scale: 0.5 });
    await copyFile(join(FIXTURES, "tokenizer", "tokenizer.model"), join(dir, "tokenizer.model"));
    for (const f of ["tokenizer_config.json", "special_tokens_map.json"]) await copyFile(join(FIXTURES, "tokenizer", "llava-1.5", f), join(dir, f));
    const photo = join(dir, "dot.png");
    await sharp({ create: { width: 20, height: 20, channels: 3, background: "#3366cc" } }).png().toFile(photo);
    await writeFile(join(dir, "not-an-image.png"), "hello");

    const input = [`/image ${photo}`, "What is this?", `/image ${join(dir, "not-an-image.png")}`, "And this?", "/reset", "Hi", "/exit", "never read"].join("\n");
    const { code, stdout, stderr } = await cli(["chat", "--model", dir, "--max-new-tokens", "4", "--quiet", "--dtype", "f32", "--stats"], `${input}\n`);
    expect(stderr).not.toMatch(/Error:|at .*\.ts/);
    expect(code).toBe(0);
    expect(stdout).toContain(`(${photo} will be shown with your next message)`);
    expect(stdout).toMatch(/error: .*not-an-image\.png/);
    expect(stdout).toContain("(conversation cleared)");
    // Three questions were asked; the two that worked printed their statistics.
    expect(stdout.match(/prompt positions, 4 tokens/g)).toHaveLength(2);
  });
});

/**
 * `wgsl-vlm serve` as a process: it listens at once, answers 503 on /health until the model is
 * loaded, serves, logs one JSON line per request on stdout, and on SIGTERM finishes what is in
 * flight and exits 0.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import serveCommand from "../src/cli/serve.js";
import { UsageError } from "../src/cli/command.js";

const MAIN = join(import.meta.dirname, "..", "src", "cli", "main.ts");
const SHAPES = join(import.meta.dirname, "..", "weights", "shapes-llava");

describe("wgsl-vlm serve (the command)", () => {
  it("serves until SIGTERM, then exits 0 after the request in flight", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", MAIN, "serve", "--model", SHAPES, "--port", "0", "--model-name", "shapes"], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>;
    try {
      while (!/listening on (http:\/\/\S+)/.test(stderr)) await new Promise((r) => setTimeout(r, 20));
      const url = /listening on (http:\/\/\S+)/.exec(stderr)![1];
      while (!/ready: shapes/.test(stderr)) await new Promise((r) => setTimeout(r, 20));
      expect((await fetch(`${url}/health`)).status).toBe(200);
      const reply = fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "shapes", messages: [{ role: "user", content: "Describe the image." }], temperature: 0 }),
      });
      const answered = await reply;
      child.kill("SIGTERM");
      expect(answered.status).toBe(200);
      const [code] = await exited;
      expect(code).toBe(0);
      expect(stderr).toMatch(/SIGTERM: finishing the requests in flight/);
      const lines = stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.filter((l) => l.msg === "request")).toMatchObject([{ endpoint: "chat", status: 200 }]);
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("fails at once on a port in use, before loading the model", async () => {
    const taken = createServer().listen(0, "127.0.0.1");
    await once(taken, "listening");
    try {
      const port = String((taken.address() as AddressInfo).port);
      const started = Date.now();
      await expect(serveCommand.run(["--model", SHAPES, "--port", port, "--quiet", "--no-log"])).rejects.toThrow(/EADDRINUSE|address already in use/);
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      taken.close();
    }
  });

  it("refuses bad options before loading anything", async () => {
    await expect(serveCommand.run([])).rejects.toThrow(new UsageError("--model DIR is required"));
    await expect(serveCommand.run(["--model", SHAPES, "--port", "70000"])).rejects.toThrow(/--port: '70000' is not a valid value/);
    await expect(serveCommand.run(["--model", SHAPES, "--max-batch", "0"])).rejects.toThrow(/--max-batch/);
    await expect(serveCommand.run(["--model", SHAPES, "--api-key", ""])).rejects.toThrow(/--api-key must not be empty/);
  });
});

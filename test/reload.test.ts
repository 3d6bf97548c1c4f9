/**
 * A second model load in the same process (a server reloading, a test after another) does not
 * repeat work it can avoid: the first model, disposed, leaves nothing on its device, which is
 * kept and given to the next load with the same options, compiled pipelines and all.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadModel } from "../src/generate/model.js";

const MODEL = join(import.meta.dirname, "..", "weights", "shapes-llava");

describe("loading a model again in the same process", () => {
  it("reuses the device and its pipelines, and answers the same", async () => {
    const image = new Uint8Array(await readFile(join(MODEL, "example.png")));
    const ask = { messages: [{ role: "user" as const, content: "What shape is this?", images: [image] }], maxNewTokens: 6 };

    const first = await loadModel(MODEL, { dtype: "f32" });
    const gpu = first.gpu;
    const answer = (await first.complete(ask)).text;
    first.dispose();
    expect(gpu.memory().liveBytes, "a disposed model leaves nothing on its device").toBe(0);

    const compiled = gpu.pipelinesCreated;
    const second = await loadModel(MODEL, { dtype: "f32" });
    expect(second.gpu).toBe(gpu);
    expect((await second.complete(ask)).text).toBe(answer);
    expect(gpu.pipelinesCreated - compiled, "pipelines compiled by the second load and its answer").toBe(0);
    second.dispose();

    // Other options, another device.
    const third = await loadModel(MODEL, { dtype: "f32", poison: true });
    expect(third.gpu).not.toBe(gpu);
    third.dispose();
  });
});

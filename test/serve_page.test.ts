/**
 * The chat page the server serves at / (src/serve/page/), in a real browser: Debian's chromium,
 * headless, driven by playwright-core, against the server in-process on the bundled shapes
 * model. An image goes in through the file input, the question through the textarea, and the
 * model's answer (temperature 0, so always the same) must stream into the page; a follow-up
 * must see the earlier turns; a server with an API key must be refused until the key is given.
 *
 * Without chromium (scripts/install-chromium.sh installs it) the tests are skipped, except on
 * CI, where that is a failure.
 */
import { accessSync, constants, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { delimiter, join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type VisionLanguageModel } from "../src/generate/model.js";
import { startServer, type RunningServer } from "../src/serve/server.js";

const SHAPES = join(import.meta.dirname, "..", "weights", "shapes-llava");
const IMAGE = join(SHAPES, "example.png");
const example = JSON.parse(readFileSync(join(SHAPES, "example.json"), "utf8")) as { questions: { type: string; question: string; answer: string }[] };
const question = (type: string) => example.questions.find((q) => q.type === type)!;
const colour = question("colour"); // What colour is the circle? yellow
const count = question("count"); // How many shapes are there? three
const description = question("description"); // Describe the image. A blue triangle at the top, ...

const CHROMIUM = findOnPath("chromium");
const MISSING = "chromium is not installed: run scripts/install-chromium.sh to test the chat page in a browser";
if (!CHROMIUM && !process.env.CI) console.warn(`serve_page.test.ts skipped: ${MISSING}`);

function findOnPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not in this directory
    }
  }
  return null;
}

if (!CHROMIUM && process.env.CI) {
  it("chat page needs chromium", () => {
    throw new Error(MISSING);
  });
}

describe.skipIf(!CHROMIUM)("chat page", () => {
  let model: VisionLanguageModel;
  let open: RunningServer;
  let locked: RunningServer;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    [model, browser] = await Promise.all([loadModel(SHAPES, { maxBatch: 2 }), chromium.launch({ executablePath: CHROMIUM!, headless: true })]);
    open = await startServer({ model, modelName: "shapes-llava", port: 0, log: false });
    locked = await startServer({ model, modelName: "shapes-llava", port: 0, log: false, apiKey: "k" });
  });
  afterAll(async () => {
    await browser?.close();
    await open?.close();
    await locked?.close();
    model?.dispose();
  });
  afterEach(async () => {
    for (const context of contexts.splice(0)) await context.close();
  });

  /** The page in a fresh browser context (its own localStorage), with the errors it throws collected. */
  async function openPage(url: string): Promise<{ page: Page; errors: Error[] }> {
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    page.setDefaultTimeout(15_000); // (the first answer compiles the model's kernels: a second or so)
    const errors: Error[] = [];
    page.on("pageerror", (error) => errors.push(error));
    await page.goto(url);
    return { page, errors };
  }

  const turns = (page: Page, role: "user" | "assistant") => page.locator(`[data-role="${role}"]`);

  /**
   * Types `text`, sends it with the button (or Enter), and waits for the reply to finish;
   * returns its text and timings line, or "" for both when the page took the question back (an error).
   */
  async function ask(page: Page, text: string, how: "click" | "enter" = "click"): Promise<{ reply: string; stats: string }> {
    const before = await turns(page, "assistant").count();
    await page.fill("textarea", text);
    if (how === "click") await page.click('button[type="submit"]');
    else await page.press("textarea", "Enter");
    // Send is disabled from the click until the reply has finished (or failed).
    await page.locator("#send:not([disabled])").waitFor();
    if ((await turns(page, "assistant").count()) === before) return { reply: "", stats: "" };
    const reply = turns(page, "assistant").nth(before);
    return { reply: (await reply.locator(".text").textContent()) ?? "", stats: (await reply.locator(".stats").textContent()) ?? "" };
  }

  const attachedNames = (page: Page) => page.locator("#attachments img").evaluateAll((images) => images.map((img) => img.getAttribute("alt")).sort());

  it("answers a question about an uploaded image, streaming it in with its timings", async () => {
    const { page, errors } = await openPage(open.url);
    await page.locator("#model-name", { hasText: /^shapes-llava$/ }).waitFor();

    await page.setInputFiles('input[type="file"]', IMAGE);
    await page.locator("#attachments img").waitFor();
    const { reply, stats } = await ask(page, colour.question);

    expect(reply.toLowerCase()).toContain(colour.answer);
    expect(stats).toMatch(/first token \d+(\.\d+)? m?s/);
    expect(stats).toMatch(/\d+ tokens?/);
    // The question and its image are in the conversation; the composer is empty again.
    expect(await turns(page, "user").locator(".text").textContent()).toBe(colour.question);
    expect(await turns(page, "user").locator("img").count()).toBe(1);
    expect(await page.locator("#attachments img").count()).toBe(0);
    expect(await page.inputValue("textarea")).toBe("");
    expect(await page.isHidden("#error")).toBe(true);
    expect(errors).toEqual([]);
  });

  it("sends the earlier turns with a follow-up, and starts over on New chat", async () => {
    const { page, errors } = await openPage(open.url);
    const sent: { role: string; content: unknown }[][] = [];
    page.on("request", (request) => {
      if (request.url().endsWith("/v1/chat/completions")) sent.push(request.postDataJSON().messages);
    });
    await page.setInputFiles('input[type="file"]', IMAGE);
    await page.locator("#attachments img").waitFor();
    expect((await ask(page, colour.question)).reply.toLowerCase()).toContain(colour.answer);

    // Shift+Enter is a new line, Enter sends. (The image goes with the follow-up too: the tiny
    // model was trained on questions asked right after their image, and miscounts otherwise.)
    await page.fill("textarea", "one");
    await page.press("textarea", "Shift+Enter");
    expect(await page.inputValue("textarea")).toBe("one\n");
    await page.setInputFiles('input[type="file"]', IMAGE);
    await page.locator("#attachments img").waitFor();
    const followUp = await ask(page, count.question, "enter");
    expect(followUp.reply.toLowerCase()).toContain(count.answer);
    expect(sent[1].map((m) => m.role)).toEqual(["user", "assistant", "user"]);
    expect(sent[1][1].content).toBe(await turns(page, "assistant").first().locator(".text").textContent());
    expect(await turns(page, "user").locator("img").count()).toBe(2);

    await page.click("text=New chat");
    expect(await page.locator("[data-role]").count()).toBe(0);
    await page.setInputFiles('input[type="file"]', IMAGE);
    await page.locator("#attachments img").waitFor();
    const described = await ask(page, description.question);
    expect(described.reply).toBe(description.answer);
    expect(sent.at(-1)!.map((m) => m.role)).toEqual(["user"]);
    // A longer answer has a rate too (a one-token answer has none).
    expect(described.stats).toMatch(/\d+ tokens · \d+(\.\d+)? tokens\/s/);
    expect(errors).toEqual([]);
  });

  it("says when the server needs an API key, and answers once it is given", async () => {
    const { page, errors } = await openPage(locked.url);
    // Listing the models already needs the key.
    await page.locator("#error", { hasText: "API key" }).waitFor();

    await page.setInputFiles('input[type="file"]', IMAGE);
    await page.locator("#attachments img").waitFor();
    expect((await ask(page, colour.question)).reply).toBe("");
    expect(await page.textContent("#error")).toContain("API key");
    // The refused question is back in the composer, ready to be sent again.
    expect(await page.inputValue("textarea")).toBe(colour.question);
    expect(await page.locator("#attachments img").count()).toBe(1);
    expect(await page.locator("[data-role]").count()).toBe(0);

    await page.fill("#api-key", "k");
    const { reply } = await ask(page, colour.question);
    expect(reply.toLowerCase()).toContain(colour.answer);
    expect(await page.isHidden("#error")).toBe(true);
    expect(await page.textContent("#model-name")).toBe("shapes-llava");
    expect(await page.evaluate('localStorage.getItem("wgsl-vlm.apiKey")')).toBe("k");
    expect(errors).toEqual([]);
  });

  it("attaches images dropped on the page or pasted into it, and removes them", async () => {
    const { page, errors } = await openPage(open.url);
    // In the page (a string: this file is type-checked without the DOM's types): a PNG drawn on
    // a canvas, dropped on the page as one file and pasted into the textarea as another.
    await page.evaluate(`(async () => {
      const blob = await new Promise((resolve) => document.createElement("canvas").toBlob(resolve, "image/png"));
      const files = (name) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([blob], name, { type: "image/png" }));
        return transfer;
      };
      document.body.dispatchEvent(new DragEvent("drop", { dataTransfer: files("dropped.png"), bubbles: true, cancelable: true }));
      document.querySelector("textarea").dispatchEvent(new ClipboardEvent("paste", { clipboardData: files("pasted.png"), bubbles: true, cancelable: true }));
    })()`);
    await page.locator("#attachments img").nth(1).waitFor();
    expect(await attachedNames(page)).toEqual(["dropped.png", "pasted.png"]);
    await page.click('[aria-label="Remove dropped.png"]');
    expect(await attachedNames(page)).toEqual(["pasted.png"]);
    expect(errors).toEqual([]);
  });

  // The shapes model answers in a few milliseconds, too fast to stop reliably; so the stream
  // comes from a stand-in that sends one chunk and then waits until the client goes away.
  it("stops a streaming reply, keeping what came", async () => {
    let closed!: () => void;
    const clientLeft = new Promise<void>((resolve) => (closed = resolve));
    const standIn: Server = createServer((request, response) => {
      response.writeHead(200, { "content-type": "text/event-stream" });
      response.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { role: "assistant", content: "Once upon" }, finish_reason: null }] })}\n\n`);
      request.socket.on("close", closed);
    });
    standIn.listen(0, "127.0.0.1");
    await once(standIn, "listening");
    try {
      const { page, errors } = await openPage(open.url);
      await page.route("**/v1/chat/completions", (route) => route.continue({ url: `http://127.0.0.1:${(standIn.address() as AddressInfo).port}/` }));
      await page.fill("textarea", "Tell me a long story.");
      await page.click('button[type="submit"]');
      await turns(page, "assistant").locator(".text", { hasText: "Once upon" }).waitFor();
      await page.click("text=Stop");
      await turns(page, "assistant").locator(".stats", { hasText: "stopped" }).waitFor();
      await clientLeft; // the aborted fetch closed its connection
      expect(await turns(page, "assistant").locator(".text").textContent()).toBe("Once upon");
      expect(await page.isHidden("#stop")).toBe(true);
      expect(await page.isEnabled('button[type="submit"]')).toBe(true);
      expect(await page.isHidden("#error")).toBe(true);
      expect(errors).toEqual([]);
    } finally {
      standIn.closeAllConnections();
      standIn.close();
    }
  });
});

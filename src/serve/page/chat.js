// wgsl-vlm's chat page. It uses the server's OpenAI API as any client would: GET /v1/models for
// the model's name and POST /v1/chat/completions, streamed, for each reply. The whole
// conversation is sent again with each question (the server finds the earlier turns in its
// KV-cache, so only the new ones cost time). Text from the user or the model is only ever set as
// textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("composer");
const messageInput = $("message");
const fileInput = $("files");
const attachmentList = $("attachments");
const conversation = $("conversation");
const errorBox = $("error");
const sendButton = $("send");
const stopButton = $("stop");
const temperatureInput = $("temperature");
const maxTokensInput = $("max-tokens");
const apiKeyInput = $("api-key");
const modelNameBox = $("model-name");

const API_KEY_STORAGE = "wgsl-vlm.apiKey";

/** The conversation as the API takes it: OpenAI messages, earlier replies included. */
let messages = [];
/** The images attached to the next message, each {name, url} with a data: URL. */
let attached = [];
/** The AbortController of the reply streaming now, or null. */
let streaming = null;
/** Bumped by "New chat", so that a reply still finishing does not land in the new conversation. */
let chatNumber = 0;
/** The model's id from /v1/models, or null until known. */
let modelId = null;

// ---- API key and model name ----

apiKeyInput.value = storage(() => localStorage.getItem(API_KEY_STORAGE)) ?? "";
apiKeyInput.addEventListener("input", () => {
  const key = apiKeyInput.value.trim();
  storage(() => (key ? localStorage.setItem(API_KEY_STORAGE, key) : localStorage.removeItem(API_KEY_STORAGE)));
});
apiKeyInput.addEventListener("change", () => loadModelName());

/** localStorage can be unavailable (disabled, or a private mode): then the key is just not kept. */
function storage(use) {
  try {
    return use();
  } catch {
    return null;
  }
}

function headers() {
  const key = apiKeyInput.value.trim();
  return { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) };
}

async function loadModelName() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (!response.ok) throw await httpError(response);
    const { data } = await response.json();
    modelId = data?.[0]?.id ?? null;
    modelNameBox.textContent = modelId ?? "no model";
    if (errorBox.dataset.status === "401") hideError(); // the key entered is the right one
  } catch (error) {
    modelNameBox.textContent = "model unknown";
    showError(error);
  }
}

// ---- Attaching images: file picker, drag and drop, paste ----

fileInput.addEventListener("change", async () => {
  await attach(fileInput.files);
  fileInput.value = ""; // so that picking the same file again fires "change" again
});

const hasFiles = (event) => event.dataTransfer?.types.includes("Files");
document.addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault(); // without this the browser would open the dropped file itself
  document.body.classList.add("dropping");
});
document.addEventListener("dragleave", (event) => {
  if (event.relatedTarget === null) document.body.classList.remove("dropping"); // left the window
});
document.addEventListener("drop", (event) => {
  document.body.classList.remove("dropping");
  if (!hasFiles(event)) return;
  event.preventDefault();
  void attach(event.dataTransfer.files);
});
document.addEventListener("paste", (event) => {
  const images = [...(event.clipboardData?.files ?? [])].filter((file) => file.type.startsWith("image/"));
  if (images.length === 0) return; // pasted text goes where it was pasted
  event.preventDefault();
  void attach(images);
});

async function attach(files) {
  for (const file of files) {
    if (!file.type.startsWith("image/")) {
      showError(new Error(`${file.name} is not an image`));
      continue;
    }
    attached.push({ name: file.name || "pasted image", url: await dataUrl(file) });
  }
  renderAttachments();
}

function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function renderAttachments() {
  attachmentList.replaceChildren(
    ...attached.map((image, i) =>
      thumbnail(image, () => {
        attached.splice(i, 1);
        renderAttachments();
        messageInput.focus();
      }),
    ),
  );
}

/** An image's thumbnail, with a remove button when `onRemove` is given. */
function thumbnail(image, onRemove) {
  const item = document.createElement("li");
  const img = document.createElement("img");
  img.src = image.url;
  img.alt = image.name;
  img.title = image.name;
  item.append(img);
  if (onRemove) {
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${image.name}`);
    remove.addEventListener("click", onRemove);
    item.append(remove);
  }
  return item;
}

// ---- The conversation ----

messageInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  void send();
});
stopButton.addEventListener("click", () => streaming?.abort());
$("new-chat").addEventListener("click", () => {
  streaming?.abort();
  chatNumber++;
  messages = [];
  conversation.replaceChildren();
  hideError();
  messageInput.focus();
});

/** A turn's element: data-role says whose it is; an assistant turn has a line for its timings. */
function addTurn(role, text, images = []) {
  const turn = document.createElement("article");
  turn.className = "turn";
  turn.dataset.role = role;
  if (images.length > 0) {
    const list = document.createElement("ul");
    list.className = "thumbs";
    list.append(...images.map((image) => thumbnail(image)));
    turn.append(list);
  }
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  turn.append(body);
  if (role === "assistant") {
    const stats = document.createElement("p");
    stats.className = "stats";
    turn.append(stats);
  }
  conversation.append(turn);
  scrollToEnd(true);
  return turn;
}

/** Keeps the newest text in view, unless the reader has scrolled up to read something earlier. */
function scrollToEnd(force = false) {
  const nearEnd = conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 80;
  if (force || nearEnd) conversation.scrollTop = conversation.scrollHeight;
}

async function send() {
  const text = messageInput.value.trim();
  if (streaming || (!text && attached.length === 0)) return;
  hideError();
  // A turn's images go before its text, as llava's chat template places them.
  const content = attached.map((image) => ({ type: "image_url", image_url: { url: image.url } }));
  if (text) content.push({ type: "text", text });
  const question = { role: "user", content };
  const images = attached;
  const number = chatNumber;

  const userTurn = addTurn("user", text, images);
  const replyTurn = addTurn("assistant", "");
  messageInput.value = "";
  attached = [];
  renderAttachments();

  const { text: reply, complete } = await streamReply([...messages, question], replyTurn);
  if (number !== chatNumber) return; // "New chat" was pressed meanwhile
  if (reply || complete) {
    messages.push(question, { role: "assistant", content: reply }); // a stopped reply keeps what came
  } else {
    // Nothing came back (an error, or stopped at once): take the question back into the
    // composer, so that it can be sent again (after entering an API key, say).
    userTurn.remove();
    replyTurn.remove();
    messageInput.value = messageInput.value ? `${text}\n${messageInput.value}` : text;
    attached = [...images, ...attached];
    renderAttachments();
  }
  messageInput.focus();
}

/** Streams one reply into `turn`; returns its text and whether it came to its end (not stopped, no error). */
async function streamReply(history, turn) {
  const textBox = turn.querySelector(".text");
  const statsBox = turn.querySelector(".stats");
  const controller = new AbortController();
  streaming = controller;
  sendButton.disabled = true;
  stopButton.hidden = false;
  turn.setAttribute("aria-busy", "true"); // screen readers read the reply once, when it is whole

  const body = {
    model: modelId ?? undefined,
    messages: history,
    stream: true,
    stream_options: { include_usage: true },
    // An emptied field means its default (the server's default temperature would be 1).
    temperature: temperatureInput.value === "" ? 0 : temperatureInput.valueAsNumber,
    max_tokens: maxTokensInput.value === "" ? 256 : maxTokensInput.valueAsNumber,
  };
  const sent = performance.now();
  let firstToken = null;
  let usage = null;
  let text = "";
  let complete = false;
  try {
    const response = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal }).catch((error) => {
      throw error.name === "AbortError" ? error : new Error(`could not reach the server (${error.message})`);
    });
    if (!response.ok) throw await httpError(response);
    let finished = false;
    for await (const data of serverSentEvents(response.body)) {
      if (data === "[DONE]") {
        finished = true;
        break;
      }
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message); // failed mid-stream, after the 200
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        firstToken ??= performance.now();
        text += delta;
        textBox.textContent = text;
        scrollToEnd();
      }
      if (chunk.usage) usage = chunk.usage; // the last chunk, with no choices
    }
    if (!finished) throw new Error("the connection closed before the reply was complete");
    statsBox.textContent = timings(sent, firstToken, performance.now(), usage);
    complete = true;
  } catch (error) {
    const stopped = error.name === "AbortError";
    statsBox.textContent = [timings(sent, firstToken, performance.now(), null), stopped ? "stopped" : "failed"].filter(Boolean).join(" · ");
    if (!stopped) showError(error);
  } finally {
    streaming = null;
    sendButton.disabled = false;
    stopButton.hidden = true;
    turn.removeAttribute("aria-busy");
  }
  return { text, complete };
}

/**
 * The time to first token runs from pressing Send to the first delta with text: the upload,
 * the images' encoding and the prompt's prefill. The rate counts the tokens after the first
 * over the time from the first to the end, as the server's own decode rate does: the first
 * token's time is already in the time to first token. (One token has no rate.)
 */
function timings(sent, firstToken, ended, usage) {
  const parts = [];
  if (firstToken !== null) parts.push(`first token ${duration(firstToken - sent)}`);
  const tokens = usage?.completion_tokens;
  if (tokens !== undefined) parts.push(`${tokens} token${tokens === 1 ? "" : "s"}`);
  if (firstToken !== null && tokens > 1 && ended > firstToken) parts.push(`${((tokens - 1) / ((ended - firstToken) / 1000)).toFixed(1)} tokens/s`);
  return parts.join(" · ");
}

function duration(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/**
 * The data of each Server-Sent Event of a response body, as strings. An event is a block of
 * lines ended by a blank line; its `data:` lines are joined by newlines (this server sends one
 * per event: a JSON chunk, or [DONE]). A read can end anywhere, inside a line or a UTF-8
 * character, so the bytes are decoded as a stream and an unfinished last line waits for the
 * next read. Other fields (event:, id:, retry:) and comments (lines starting with ":") are
 * not used by this API and skipped.
 */
async function* serverSentEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      pending += decoder.decode(value, { stream: !done });
      const lines = pending.split("\n");
      pending = done ? "" : lines.pop(); // the unfinished line (an incomplete last event is dropped)
      for (const raw of lines) {
        const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
        if (line === "") {
          if (data.length > 0) yield data.join("\n");
          data = [];
        } else if (line.startsWith("data:")) {
          data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
        }
      }
      if (done) return;
    }
  } finally {
    reader.cancel().catch(() => {}); // stopped reading early: let the server know
  }
}

// ---- Errors ----

/** An error from a non-2xx answer, with the server's own message when it sent one. */
async function httpError(response) {
  let message = `HTTP ${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (typeof body?.error?.message === "string") message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  return Object.assign(new Error(message), { status: response.status });
}

function showError(error) {
  errorBox.dataset.status = String(error.status ?? "");
  if (error.status === 401) {
    errorBox.textContent = `The server needs an API key (${error.message}). Enter it under Settings.`;
    $("settings").open = true;
  } else {
    errorBox.textContent = `Error${error.status ? ` ${error.status}` : ""}: ${error.message}`;
  }
  errorBox.hidden = false;
}

function hideError() {
  errorBox.hidden = true;
  errorBox.textContent = "";
  delete errorBox.dataset.status;
}

void loadModelName();

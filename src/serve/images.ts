/**
 * The images of an API request: `data:` URLs always, http(s) URLs only when the server was
 * started with --allow-remote-images.
 *
 * A server that fetches the URLs it is given can be made to reach what only it can reach: a
 * cloud's metadata service, an admin page on localhost, the machines of the internal network
 * (server-side request forgery). So remote fetching is off by default, and when on:
 * - every address a host name resolves to is checked at connect time (the lookup the socket
 *   uses is ours, so a name that resolves to a public address when checked and a private one
 *   when connecting cannot slip through), and private, loopback, link-local, multicast and
 *   unspecified addresses are refused;
 * - redirects are followed by hand, at most MAX_REDIRECTS, each checked the same way;
 * - the whole fetch has a time-out, and the body a size limit counted as it arrives.
 *
 * Every image, however it came, is checked as far as its header (format, size, pixel count)
 * before the request is queued, so a bad one fails with a 400 naming its part of the request.
 */
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import http from "node:http";
import https from "node:https";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { checkImage } from "../image/decode.js";
import { badRequest } from "./api_error.js";

export interface RemoteImageOptions {
  /** Fetch http(s) image URLs (default false: only data: URLs). */
  allow: boolean;
  /** Milliseconds for the whole fetch, redirects included (default 10 s). */
  timeoutMs?: number;
  /** Bytes an image may have (default 20 MiB). */
  maxBytes?: number;
  /** Let URLs reach private and loopback addresses (only for tests against a local server). */
  allowPrivateAddresses?: boolean;
}

export const DEFAULT_REMOTE_TIMEOUT_MS = 10_000;
export const DEFAULT_REMOTE_MAX_BYTES = 20 * 2 ** 20;
const MAX_REDIRECTS = 3;

/** The addresses no fetched URL may reach. */
const PRIVATE = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8], // "this network", unspecified
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // carrier-grade NAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, cloud metadata services
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 3], // multicast and reserved, up to 255.255.255.255
] as const) {
  PRIVATE.addSubnet(net, prefix, "ipv4");
}
for (const [net, prefix] of [
  ["::", 127], // unspecified and loopback
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
  ["ff00::", 8], // multicast
] as const) {
  PRIVATE.addSubnet(net, prefix, "ipv6");
}

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address); // IPv4-mapped IPv6
  if (mapped) return PRIVATE.check(mapped[1], "ipv4");
  return PRIVATE.check(address, family === 4 ? "ipv4" : "ipv6");
}

/** An image's bytes from an image_url, checked as far as its header; `param` names the part. */
export async function imageFromUrl(url: unknown, param: string, remote: RemoteImageOptions): Promise<Uint8Array> {
  if (typeof url !== "string" || url.length === 0) throw badRequest(param, "must be a data: URL or an http(s) URL");
  const bytes = url.startsWith("data:") ? fromDataUrl(url, param) : await fromRemote(url, param, remote);
  try {
    await checkImage(bytes, { name: param });
  } catch (error) {
    throw badRequest(param, `is not an image this server can read: ${(error as Error).message}`, "invalid_image");
  }
  return bytes;
}

/** `data:image/png;base64,...`: the base64 payload's bytes. */
function fromDataUrl(url: string, param: string): Uint8Array {
  const comma = url.indexOf(",");
  const header = comma < 0 ? "" : url.slice(5, comma).toLowerCase();
  if (comma < 0 || !header.split(";").includes("base64")) {
    throw badRequest(param, "a data: URL must be base64 (data:image/png;base64,...)", "invalid_image");
  }
  const mediaType = header.split(";")[0];
  if (mediaType && !mediaType.startsWith("image/")) throw badRequest(param, `has media type '${mediaType}', not an image`, "invalid_image");
  const payload = url.slice(comma + 1);
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(payload)) throw badRequest(param, "its base64 payload has characters base64 does not use", "invalid_image");
  const bytes = Buffer.from(payload, "base64");
  if (bytes.length === 0) throw badRequest(param, "is an empty data: URL", "invalid_image");
  return bytes;
}

async function fromRemote(url: string, param: string, remote: RemoteImageOptions): Promise<Uint8Array> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw badRequest(param, "must be a data: URL or an http(s) URL", "invalid_image_url");
  }
  if (target.protocol !== "http:" && target.protocol !== "https:") {
    throw badRequest(param, `URLs of scheme '${target.protocol}' are not fetched: give a data: URL or an http(s) URL`, "invalid_image_url");
  }
  if (!remote.allow) {
    throw badRequest(param, "this server does not fetch image URLs (start it with --allow-remote-images): send the image as a data: URL", "invalid_image_url");
  }
  const deadline = AbortSignal.timeout(remote.timeoutMs ?? DEFAULT_REMOTE_TIMEOUT_MS);
  for (let hop = 0; ; hop++) {
    const response = await get(target, param, remote, deadline);
    if (response.redirect === null) return response.body;
    if (hop === MAX_REDIRECTS) throw badRequest(param, `redirected more than ${MAX_REDIRECTS} times`, "invalid_image_url");
    target = new URL(response.redirect, target);
    if (target.protocol !== "http:" && target.protocol !== "https:") throw badRequest(param, "redirects to a URL that is not http(s)", "invalid_image_url");
  }
}

/** One GET: the body, or where a redirect points. */
function get(target: URL, param: string, remote: RemoteImageOptions, deadline: AbortSignal): Promise<{ body: Uint8Array; redirect: string | null }> {
  const maxBytes = remote.maxBytes ?? DEFAULT_REMOTE_MAX_BYTES;
  const lookup: LookupFunction = (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
      if (error) return callback(error, "", 0);
      const refused = addresses.find((a) => !remote.allowPrivateAddresses && isPrivateAddress(a.address));
      if (refused) return callback(Object.assign(new Error(`resolves to ${refused.address}, a private address`), { code: "EPRIVATE" }), "", 0);
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      callback(null, addresses[0].address, addresses[0].family);
    });
  };
  const literal = target.hostname.replace(/^\[|\]$/g, "");
  if (isIP(literal) && !remote.allowPrivateAddresses && isPrivateAddress(literal)) {
    return Promise.reject(badRequest(param, `points at ${literal}, a private address`, "invalid_image_url"));
  }
  const client = target.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const fail = (message: string) => reject(badRequest(param, message, "invalid_image_url"));
    const request = client.get(target, { lookup, signal: deadline, headers: { accept: "image/*" } }, (response) => {
      const status = response.statusCode ?? 0;
      if (status >= 300 && status < 400 && response.headers.location) {
        response.resume();
        return resolve({ body: new Uint8Array(), redirect: response.headers.location });
      }
      if (status !== 200) {
        response.resume();
        return fail(`fetching it answered HTTP ${status}`);
      }
      const declared = Number(response.headers["content-length"]);
      if (declared > maxBytes) {
        response.destroy();
        return fail(`is ${declared} bytes, over the limit of ${maxBytes} bytes`);
      }
      const parts: Buffer[] = [];
      let received = 0;
      response.on("data", (part: Buffer) => {
        received += part.length;
        if (received > maxBytes) {
          response.destroy();
          fail(`is over the limit of ${maxBytes} bytes`);
        } else {
          parts.push(part);
        }
      });
      response.on("end", () => resolve({ body: Buffer.concat(parts), redirect: null }));
      response.on("error", (error) => fail(`could not be fetched: ${error.message}`));
    });
    request.on("error", (error) => {
      if (deadline.aborted) return fail(`was not fetched within ${remote.timeoutMs ?? DEFAULT_REMOTE_TIMEOUT_MS} ms`);
      fail(`could not be fetched: ${error.message}`);
    });
  });
}

/**
 * Errors as OpenAI's API shapes them: an HTTP status and
 *
 *   {"error": {"message": "...", "type": "invalid_request_error", "param": "messages[0].content", "code": null}}
 *
 * so that the official clients raise their own typed errors (BadRequestError, NotFoundError,
 * AuthenticationError, RateLimitError, ...) with our message in them.
 */
import { RequestError } from "../generate/errors.js";
import { ImageError } from "../image/decode.js";

export type ErrorType = "invalid_request_error" | "authentication_error" | "not_found_error" | "rate_limit_error" | "server_error";

export class ApiError extends Error {
  override name = "ApiError";

  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type: ErrorType = status === 401 ? "authentication_error" : status === 404 ? "not_found_error" : status === 429 ? "rate_limit_error" : status >= 500 ? "server_error" : "invalid_request_error",
    /** Seconds a client should wait before trying again (a Retry-After header). */
    readonly retryAfter: number | null = null,
  ) {
    super(message);
  }

  body(): { error: { message: string; type: ErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 naming the request field (as the client spelled it). */
export function badRequest(param: string, message: string, code: string | null = null): ApiError {
  return new ApiError(400, `${param}: ${message}`, param, code);
}

/**
 * Any error as the API answers it. The generation's own request errors (a prompt too long for
 * the context, a sampler value out of range) name the field of generate()'s request, which the
 * OpenAI request only maps onto; their message says what was wrong, the status is 400. Anything
 * else is the server's fault: 500, with the message (it never carries a secret: the request's
 * own text is not put into errors).
 */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof RequestError) return new ApiError(400, error.message, null, error.field === "messages/prompt/promptIds" ? null : "invalid_value");
  if (error instanceof ImageError) return new ApiError(400, error.message, null, "invalid_image");
  const message = error instanceof Error ? error.message : String(error);
  return new ApiError(500, `internal error: ${message}`, null, null, "server_error");
}

/**
 * Server limits and their defaults, and the 4xx errors the HTTP layer returns.
 * @internal
 * @packageDocumentation
 */

/** Limits a server enforces on every request (each one a `sdnode serve` flag). */
export interface ServerLimits {
  /** Largest width or height in pixels (--max-size). */
  maxSize: number;
  /** Most sampling steps (--max-steps). */
  maxSteps: number;
  /** Most images per job (--max-batch). */
  maxBatch: number;
  /** Most jobs waiting to run (--max-queue). */
  maxQueue: number;
  /** Largest request body in bytes (--body-limit). */
  bodyLimit: number;
  /** Jobs running at once in this process (--max-concurrent; local mode only). */
  maxConcurrent: number;
}

export const DEFAULT_LIMITS: Readonly<ServerLimits> = Object.freeze({
  maxSize: 1024,
  maxSteps: 150,
  maxBatch: 8,
  maxQueue: 64,
  bodyLimit: 16 << 20, // img2img bodies carry base64 images
  maxConcurrent: 1,
});

/** The CLI flag of each limit, named in error messages. */
export const LIMIT_FLAGS: Record<keyof ServerLimits, string> = {
  maxSize: '--max-size',
  maxSteps: '--max-steps',
  maxBatch: '--max-batch',
  maxQueue: '--max-queue',
  bodyLimit: '--body-limit',
  maxConcurrent: '--max-concurrent',
};

/** An error the HTTP layer turns into a JSON response `{ error: { message, type, code, param?, limit? } }`. */
export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly param: string | undefined;
  readonly limit: string | undefined;
  constructor(status: number, code: string, message: string, extra: { param?: string; limit?: string } = {}) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
    this.param = extra.param;
    this.limit = extra.limit;
  }
}

/** A request over a server limit (400, or 429 for a full queue, 413 for a large body). */
export function limitError(limit: keyof ServerLimits, message: string, param?: string, status = 400): HttpError {
  return new HttpError(status, 'limit_exceeded', `${message} (server limit ${LIMIT_FLAGS[limit]})`, { param, limit: LIMIT_FLAGS[limit].slice(2) });
}

/** The JSON body of an error response. */
export function errorBody(err: HttpError): { error: Record<string, unknown> } {
  const type = err.status === 401 ? 'authentication_error' : err.status >= 500 ? 'server_error' : 'invalid_request_error';
  const e: Record<string, unknown> = { message: err.message, type, code: err.code };
  if (err.param !== undefined) e.param = err.param;
  if (err.limit !== undefined) e.limit = err.limit;
  return { error: e };
}

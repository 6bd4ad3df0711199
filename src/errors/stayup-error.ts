import { errorCodes, type ErrorCode } from './codes.ts';

/** Where in a file an input error is. Lines and columns start at 1. */
export interface SourcePosition {
  file: string;
  line: number;
  col: number;
}

/** One problem found in an input, printed as `file:line:col: message`. */
export interface Diagnostic extends SourcePosition {
  message: string;
}

export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.col}: ${d.message}`;
}

/**
 * An operating error: bad input, a refused request, a failed system call. It carries a registry code, so
 * the API, the CLI and the tests agree on what happened. Programmer errors use `assert` instead.
 */
export class StayupError extends Error {
  readonly code: ErrorCode;
  readonly diagnostics: Diagnostic[];
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { diagnostics?: Diagnostic[]; details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StayupError';
    this.code = code;
    this.diagnostics = options.diagnostics ?? [];
    this.details = options.details;
  }

  get status(): number {
    return errorCodes[this.code].status;
  }

  get exitCode(): number {
    return errorCodes[this.code].exit;
  }

  toJSON(): { code: ErrorCode; message: string; diagnostics?: Diagnostic[]; details?: Record<string, unknown> } {
    return {
      code: this.code,
      message: this.message,
      ...(this.diagnostics.length ? { diagnostics: this.diagnostics } : {}),
      ...(this.details ? { details: this.details } : {}),
    };
  }
}

/** Builds the error for a list of diagnostics; its message holds them all, one per line. */
export function diagnosticsError(code: ErrorCode, diagnostics: Diagnostic[]): StayupError {
  return new StayupError(code, diagnostics.map(formatDiagnostic).join('\n'), { diagnostics });
}

export function isStayupError(e: unknown): e is StayupError {
  return e instanceof StayupError;
}

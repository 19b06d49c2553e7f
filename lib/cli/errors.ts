// Known failures become one line and an exit code; anything else is a bug and keeps its stack.
import { GraphError, OnnxFormatError } from '../../graph-tools/index.js';
import { InputError } from '../errors.js';
import { DataError } from '../data/dataset.js';
import { RuntimeError } from '../runtime/backend.js';

export class UsageError extends Error {
  constructor(message: string) { super(message); this.name = 'UsageError'; }
}

/** A run stopped by Ctrl-C (SIGINT): exit code 130, as a shell reports it. */
export class InterruptedError extends Error {
  constructor(message: string) { super(message); this.name = 'InterruptedError'; }
}

export function formatError(e: unknown): { message: string; code: number } {
  if (e instanceof UsageError) return { message: `${e.message} (see --help)`, code: 2 };
  if (e instanceof InterruptedError) return { message: e.message, code: 130 };
  if (e instanceof InputError || e instanceof DataError || e instanceof GraphError || e instanceof OnnxFormatError || e instanceof RuntimeError || e instanceof RangeError) {
    return { message: e.message, code: 1 };
  }
  if (e instanceof Error && (e as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return { message: `${e.message.split('.')[0]} (see --help)`, code: 2 };
  if (e instanceof Error && (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) return { message: e.message, code: 2 };
  return { message: e instanceof Error ? (e.stack ?? e.message) : String(e), code: 70 };
}

// Parsing helpers shared by the commands (node:util parseArgs, no dependency needed).
import { parseArgs } from 'node:util';
import { BATCHNORM_MODES, LOSSES, REDUCTIONS, type BatchNormMode, type LossKind, type Reduction } from '../../graph-tools/index.js';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '../runtime/backend.js';
import { UsageError } from './errors.js';

export type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

export function parse(args: string[], options: OptionSpec, positionals: number) {
  const r = parseArgs({ args, options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals: true, strict: true });
  if (r.positionals.length > positionals) throw new UsageError(`unexpected argument '${r.positionals[positionals]}'`);
  return { values: r.values as Record<string, string | boolean | string[] | undefined>, positionals: r.positionals };
}

export function oneOf<T extends string>(value: unknown, allowed: readonly T[], flag: string, dflt?: T): T {
  if (value === undefined) {
    if (dflt === undefined) throw new UsageError(`${flag} is required (${allowed.join('|')})`);
    return dflt;
  }
  if (!allowed.includes(value as T)) throw new UsageError(`${flag} must be one of ${allowed.join(', ')}; got '${value}'`);
  return value as T;
}

export function number(value: unknown, flag: string, opts: { integer?: boolean; min?: number } = {}): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min)) {
    throw new UsageError(`${flag} needs ${opts.integer ? 'an integer' : 'a number'}${opts.min !== undefined ? ` ≥ ${opts.min}` : ''}; got '${value}'`);
  }
  return n;
}

export const lossOptions: OptionSpec = { loss: { type: 'string' }, reduction: { type: 'string' }, output: { type: 'string' }, batchnorm: { type: 'string' } };

export function lossFrom(values: Record<string, unknown>, dflt?: LossKind): { kind: LossKind; reduction: Reduction; output?: string; batchnorm: BatchNormMode } {
  return {
    kind: oneOf(values.loss, LOSSES, '--loss', dflt),
    reduction: oneOf(values.reduction, REDUCTIONS, '--reduction', 'mean'),
    output: values.output as string | undefined,
    batchnorm: oneOf(values.batchnorm, BATCHNORM_MODES, '--batchnorm', 'frozen'),
  };
}

export function epFrom(value: unknown): ExecutionProvider {
  return oneOf(value, EXECUTION_PROVIDERS, '--ep', 'cpu');
}

export function requireModel(positionals: string[], command: string): string {
  if (!positionals[0]) throw new UsageError(`${command} needs a MODEL.onnx argument`);
  return positionals[0];
}

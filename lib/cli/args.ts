/**
 * Every command's flag parser: node:util's parseArgs, whose errors become one
 * line with exit code 2 and, for an unknown flag, the closest known flags.
 */
import { parseArgs as nodeParseArgs, type ParseArgsConfig } from 'node:util';
import { didYouMean } from '../util/suggest.js';
import { UsageError } from './errors.js';

export function parseArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof nodeParseArgs<T>> {
  try {
    return nodeParseArgs(config);
  } catch (error) {
    throw usageErrorOf(error, config);
  }
}

function usageErrorOf(error: unknown, config: ParseArgsConfig): unknown {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const typed = /'([^']+)'/.exec(message)?.[1] ?? '';
    return new UsageError(`unknown option ${typed}${didYouMean(typed.replace(/^-+/, ''), knownFlags(config), flag)} (--help lists the options)`);
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const typed = /'([^']+)'/.exec(message)?.[1] ?? '';
    return new UsageError(`unexpected argument "${typed}": this command takes none (--help lists the options)`);
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    // "Option '--out <value>' argument missing" and the like: already one line.
    return new UsageError(`${message.replace(/^Option /, 'option ').split('\n')[0]} (--help lists the options)`);
  }
  return error;
}

/** Long names and one-letter aliases, without their dashes. */
function knownFlags(config: ParseArgsConfig): string[] {
  return Object.entries(config.options ?? {}).flatMap(([name, option]) => (option.short ? [name, option.short] : [name]));
}

const flag = (name: string) => (name.length === 1 ? `-${name}` : `--${name}`);

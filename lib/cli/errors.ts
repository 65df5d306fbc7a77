/**
 * An error the CLI prints as one line, without a stack trace. Its exit code
 * says what went wrong: 1 the command ran and failed, 2 it was called wrongly
 * (USAGE_EXIT_CODE), 130 it was interrupted.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The exit code of every usage error: an unknown command, flag or configuration key, or a flag's value out of range. */
export const USAGE_EXIT_CODE = 2;

/** The command line itself is wrong (exit code 2): the message says what to change. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, USAGE_EXIT_CODE);
    this.name = 'UsageError';
  }
}

/**
 * Progress of long work on stderr: a live line on a terminal, a line every
 * few seconds otherwise (logs of batch jobs stay readable).
 */
export class Progress {
  private readonly start = Date.now();
  private lastPrint = this.start;
  private readonly interactive = Boolean(process.stderr.isTTY);

  constructor(
    private readonly verb: string,
    private readonly unit: string,
  ) {}

  update(count: number): void {
    const now = Date.now();
    if (now - this.lastPrint < (this.interactive ? 200 : 5000)) return;
    this.lastPrint = now;
    const line = this.line(count, now);
    process.stderr.write(this.interactive ? `\r${line}` : `${line}\n`);
  }

  done(count: number): void {
    if (this.interactive && this.lastPrint > this.start) process.stderr.write(`\r${this.line(count, Date.now())}\n`);
  }

  private line(count: number, now: number): string {
    const seconds = Math.max((now - this.start) / 1000, 1e-3);
    return `${this.verb} ${count} ${this.unit} (${Math.round(count / seconds)} ${this.unit}/s, ${seconds.toFixed(1)} s)`;
  }
}

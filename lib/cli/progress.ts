/**
 * Progress of long work on stderr: a live line on a terminal, a line every
 * few seconds otherwise (logs of batch jobs stay readable). Each line has the
 * rate and, when the total is known, the time left.
 */
export class Progress {
  private readonly start = Date.now();
  private lastPrint = this.start;
  private readonly interactive = Boolean(process.stderr.isTTY);

  constructor(
    private readonly verb: string,
    private readonly unit: string,
    private readonly total?: number,
  ) {}

  update(count: number): void {
    const now = Date.now();
    if (now - this.lastPrint < (this.interactive ? 200 : 5000)) return;
    this.lastPrint = now;
    const line = this.line(count, now);
    process.stderr.write(this.interactive ? `\r\x1b[K${line}` : `${line}\n`);
  }

  done(count: number): void {
    if (this.interactive && this.lastPrint > this.start) process.stderr.write(`\r\x1b[K${this.line(count, Date.now())}\n`);
  }

  private line(count: number, now: number): string {
    const seconds = Math.max((now - this.start) / 1000, 1e-3);
    const of = this.total !== undefined ? `/${this.total}` : '';
    return `${this.verb} ${count}${of} ${this.unit} (${rateText(count, seconds)} ${this.unit}/s, ${formatDuration(seconds)}${etaText(count, this.total, seconds)})`;
  }
}

/** 12.3 below 100, whole numbers above. */
export function rateText(count: number, seconds: number): string {
  const rate = count / Math.max(seconds, 1e-3);
  return rate >= 100 ? String(Math.round(rate)) : rate.toFixed(rate >= 10 ? 1 : 2);
}

/** ", ETA 3m05s" from the rate so far; "" when the total is unknown, reached, or nothing is done yet. */
export function etaText(done: number, total: number | undefined, seconds: number): string {
  if (total === undefined || done <= 0 || done >= total) return '';
  return `, ETA ${formatDuration(((total - done) * seconds) / done)}`;
}

/** 4.2s, 3m05s, 1h02m. */
export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

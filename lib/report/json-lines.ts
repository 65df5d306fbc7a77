/**
 * Lines of a JSONL file, streamed, with their 1-based numbers and whether
 * each ended with a newline: a run killed mid-write leaves a last line with
 * no newline, which readers report as truncated rather than malformed.
 */
import { createReadStream } from 'node:fs';

export interface TextLine {
  /** 1-based line number. */
  number: number;
  text: string;
  /** False only for a last line with no newline after it. */
  terminated: boolean;
}

export async function* textLines(path: string): AsyncGenerator<TextLine> {
  let rest = '';
  let number = 0;
  for await (const chunk of createReadStream(path, { encoding: 'utf8' })) {
    rest += chunk as string;
    let start = 0;
    let end: number;
    while ((end = rest.indexOf('\n', start)) >= 0) {
      const text = rest.slice(start, end);
      start = end + 1;
      yield { number: ++number, text: text.endsWith('\r') ? text.slice(0, -1) : text, terminated: true };
    }
    rest = rest.slice(start);
  }
  if (rest !== '') yield { number: ++number, text: rest, terminated: false };
}

/**
 * On-disk answer cache for LLM calls: one JSON file per key, stored under a hashed file name and
 * written atomically (temp file + rename), so an interrupted run can resume without paying twice.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Stable SHA-256 hex digest of a string or byte buffer. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface CacheEntry<T> {
  /** The key parts, stored for debugging/inspection (never secrets). */
  key: readonly (string | number)[];
  value: T;
  createdAt: string;
}

export class LlmCache<T = unknown> {
  private ready: Promise<void> | undefined;

  constructor(readonly dir: string) {}

  /** File name for a key: SHA-256 of the JSON-encoded key parts. */
  fileFor(key: readonly (string | number)[]): string {
    return join(this.dir, `${sha256Hex(JSON.stringify(key))}.json`);
  }

  private ensureDir(): Promise<void> {
    this.ready ??= mkdir(this.dir, { recursive: true }).then(() => undefined);
    return this.ready;
  }

  /** Cached value, or undefined when absent or unreadable (a corrupt file counts as a miss). */
  async get(key: readonly (string | number)[]): Promise<T | undefined> {
    let text: string;
    try {
      text = await readFile(this.fileFor(key), 'utf8');
    } catch {
      return undefined;
    }
    try {
      const entry = JSON.parse(text) as CacheEntry<T>;
      if (JSON.stringify(entry.key) !== JSON.stringify(key)) return undefined;
      return entry.value;
    } catch {
      return undefined;
    }
  }

  /** Store a value atomically (write to a unique temp file, then rename over the target). */
  async set(key: readonly (string | number)[], value: T): Promise<void> {
    await this.ensureDir();
    const target = this.fileFor(key);
    const tmp = `${target}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    const entry: CacheEntry<T> = { key, value, createdAt: new Date().toISOString() };
    try {
      await writeFile(tmp, JSON.stringify(entry), 'utf8');
      await rename(tmp, target);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
  }
}

/**
 * Decoding parquet rows in a worker thread with a memory limit and a time
 * limit, so that a damaged file (issue 19: about one byte-flip in 400 made
 * hyparquet throw outside its promise chain or allocate without end) is an
 * error naming the file and row group, never a dead or hung process.
 */
import { Worker } from 'node:worker_threads';
import type { DecodeReply, DecodeRequest } from './parquet-decode-worker.js';

export interface IsolationLimits {
  /** Most milliseconds one slice may take to decode (default 120 s). */
  timeoutMs?: number;
  /** Heap of the decoding worker in MiB (default 4096). */
  heapMb?: number;
}

// Under tsx (tests, development) this module is .ts and so is its worker,
// which must register tsx itself: Node 20 does not apply loader hooks to a
// worker's entry module.
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER_ENTRY = new URL(`./parquet-decode-worker.${FROM_SOURCE ? 'ts' : 'js'}`, import.meta.url).href;
const WORKER_BOOT = `
const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsx) (await import(workerData.tsx)).register();
  await import(workerData.entry);
})();`;

/** A worker decoding slices of one file; call close() when done. */
export class IsolatedParquetDecoder {
  private worker: Worker | undefined;

  constructor(
    private readonly file: string,
    private readonly limits: IsolationLimits = {},
  ) {}

  /** The rows [rowStart, rowEnd) as hyparquet objects; rejects with the reason the slice could not be decoded. */
  decode(request: DecodeRequest): Promise<Record<string, unknown>[]> {
    const worker = (this.worker ??= new Worker(WORKER_BOOT, {
      eval: true,
      workerData: { file: this.file, entry: WORKER_ENTRY, tsx: FROM_SOURCE ? import.meta.resolve('tsx/esm/api') : undefined },
      resourceLimits: { maxOldGenerationSizeMb: this.limits.heapMb ?? 4096 },
    }));
    const timeoutMs = this.limits.timeoutMs ?? 120_000;
    return new Promise((resolve, reject) => {
      const finish = (outcome: () => void) => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        outcome();
      };
      const fail = (reason: string) =>
        finish(() => {
          void this.close();
          reject(new Error(reason));
        });
      const onMessage = (reply: DecodeReply) =>
        'error' in reply ? fail(reply.error) : finish(() => resolve(reply.records));
      const onError = (error: Error & { code?: string }) =>
        fail(error.code === 'ERR_WORKER_OUT_OF_MEMORY' ? `decoding needed more than ${this.limits.heapMb ?? 4096} MiB (damaged page headers?)` : error.message);
      const onExit = (code: number) => fail(`the decoding worker exited with code ${code}`);
      const timer = setTimeout(() => fail(`decoding took more than ${timeoutMs / 1000} s (damaged page headers?)`), timeoutMs);
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      worker.postMessage(request);
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker) await worker.terminate();
  }
}

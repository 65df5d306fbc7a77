/**
 * Worker side of decodeRowsIsolated (parquet-isolated.ts): decodes slices of
 * one parquet file with hyparquet. A damaged file can make hyparquet's
 * decoders allocate without bound (a page header claiming 2^31 values) or
 * throw outside its promise chain; here that ends this worker, not the
 * process that reads the dataset.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { parquetMetadataAsync, parquetReadObjects, type FileMetaData } from 'hyparquet';
import { COMPRESSORS, openParquetFile } from './parquet.js';

export interface DecodeRequest {
  rowStart: number;
  rowEnd: number;
  useOffsetIndex: boolean;
}

export type DecodeReply = { records: Record<string, unknown>[] } | { error: string };

const { file } = workerData as { file: string };
const opened = openParquetFile(file);
let metadata: Promise<FileMetaData> | undefined;

parentPort?.on('message', async (request: DecodeRequest) => {
  let reply: DecodeReply;
  try {
    const { buffer } = await opened;
    metadata ??= parquetMetadataAsync(buffer);
    const records = await parquetReadObjects({
      file: buffer,
      metadata: await metadata,
      rowStart: request.rowStart,
      rowEnd: request.rowEnd,
      utf8: false,
      compressors: COMPRESSORS,
      useOffsetIndex: request.useOffsetIndex,
    });
    reply = { records };
  } catch (error) {
    reply = { error: error instanceof Error ? error.message : String(error) };
  }
  parentPort?.postMessage(reply);
});

process.on('uncaughtException', (error) => parentPort?.postMessage({ error: error.message } satisfies DecodeReply));

/** STVQA dataset I/O: the row schema, streaming readers, parquet/JSONL writers and `data inspect`. */
export * from './schema.js';
export * from './reader.js';
export * from './writer.js';
export { describeParquet, readParquetMetadata, huggingfaceFeatures, type ParquetColumn, type ParquetDescription } from './parquet.js';
export { inspectDataset, formatReport, renderHtml, writeHtml, type InspectOptions, type InspectReport } from './inspect.js';

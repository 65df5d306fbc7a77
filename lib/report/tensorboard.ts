/**
 * A TensorBoard event-file writer for scalars, with no dependency on
 * TensorFlow or protobuf libraries.
 *
 * An event file is a TFRecord stream: per record, the data length (u64 LE),
 * the masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the
 * data. Each record's data is an `Event` protobuf (tensorflow/core/util/event.proto):
 *   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
 *   Summary { repeated Value value = 1; }
 *   Value   { string tag = 1; float simple_value = 2; }
 * The first record carries file_version "brain.Event:2", which TensorBoard
 * reads as "summaries are v2 style".
 *
 * Events are buffered in memory and appended to the file by `flush()`; call
 * it once per training step so a killed process loses at most the step in
 * progress (complete records already handed to the OS survive the process).
 */
import { writingTo } from '../io/write-errors.js';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { maskedCrc32c } from './crc32c.js';

// ---------------------------------------------------------------------------
// Protobuf encoding (the three messages above; nothing general)

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

function key(field: number, wire: number): number {
  return (field << 3) | wire;
}

/** Base-128 varint of a non-negative safe integer (arithmetic, so values past 2^31 work). */
function varint(value: number): number[] {
  const bytes: number[] = [];
  let v = value;
  while (v >= 0x80) {
    bytes.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  bytes.push(v);
  return bytes;
}

function bytesField(field: number, payload: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([key(field, WIRE_BYTES), ...varint(payload.length)]), payload]);
}

function doubleField(field: number, value: number): Buffer {
  const out = Buffer.alloc(9);
  out[0] = key(field, WIRE_FIXED64);
  out.writeDoubleLE(value, 1);
  return out;
}

function floatField(field: number, value: number): Buffer {
  const out = Buffer.alloc(5);
  out[0] = key(field, WIRE_FIXED32);
  out.writeFloatLE(value, 1);
  return out;
}

function varintField(field: number, value: number): Buffer {
  return Buffer.from([key(field, WIRE_VARINT), ...varint(value)]);
}

export interface ScalarValue {
  tag: string;
  value: number;
}

export interface EventFields {
  /** Seconds since the epoch. */
  wallTime: number;
  step?: number;
  fileVersion?: string;
  scalars?: readonly ScalarValue[];
}

/** The `Event` protobuf bytes. */
export function encodeEvent(event: EventFields): Buffer {
  const parts: Buffer[] = [doubleField(1, event.wallTime)];
  if (event.step !== undefined && event.step !== 0) parts.push(varintField(2, event.step));
  if (event.fileVersion !== undefined) parts.push(bytesField(3, Buffer.from(event.fileVersion, 'utf8')));
  if (event.scalars !== undefined) {
    const values = event.scalars.map(({ tag, value }) =>
      bytesField(1, Buffer.concat([bytesField(1, Buffer.from(tag, 'utf8')), floatField(2, value)])),
    );
    parts.push(bytesField(5, Buffer.concat(values)));
  }
  return Buffer.concat(parts);
}

/** One TFRecord: length, masked CRC of the length, data, masked CRC of the data. */
export function tfRecord(data: Uint8Array): Buffer {
  const header = Buffer.alloc(12);
  header.writeBigUInt64LE(BigInt(data.length), 0);
  header.writeUInt32LE(maskedCrc32c(header.subarray(0, 8)), 8);
  const footer = Buffer.alloc(4);
  footer.writeUInt32LE(maskedCrc32c(data), 0);
  return Buffer.concat([header, data, footer]);
}

// ---------------------------------------------------------------------------
// The writer

/** Event files this process has named, so two writers on one directory in one second do not share a file. */
const claimedPaths = new Set<string>();
let writerCount = 0;

function eventFilePath(dir: string): string {
  const base = join(dir, `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${hostname()}`);
  let path = base;
  while (claimedPaths.has(path) || existsSync(path)) path = `${base}.${process.pid}.${++writerCount}`;
  claimedPaths.add(path);
  return path;
}

export class TensorBoardWriter {
  /** The event file (created, with its directory, by the first flush). */
  readonly path: string;
  private pending: Buffer[] = [];
  private handle: FileHandle | undefined;
  /** Appends run one after another, in the order flush() was called. */
  private writing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(readonly dir: string) {
    this.path = eventFilePath(dir);
    this.pending.push(tfRecord(encodeEvent({ wallTime: Date.now() / 1000, fileVersion: 'brain.Event:2' })));
  }

  /** Buffers one scalar. */
  scalar(tag: string, value: number, step: number): void {
    this.scalars({ [tag]: value }, step);
  }

  /** Buffers several scalars of one step as one event. */
  scalars(record: Readonly<Record<string, number>>, step: number): void {
    if (this.closed) throw new Error(`TensorBoardWriter(${this.dir}): write after close()`);
    if (!Number.isSafeInteger(step) || step < 0) throw new RangeError(`TensorBoard step must be a non-negative integer (got ${step})`);
    const scalars: ScalarValue[] = [];
    for (const [tag, value] of Object.entries(record)) {
      if (tag === '') throw new RangeError('TensorBoard tag must not be empty');
      if (typeof value !== 'number') throw new TypeError(`TensorBoard scalar "${tag}" is not a number (got ${typeof value})`);
      scalars.push({ tag, value });
    }
    if (scalars.length === 0) return;
    this.pending.push(tfRecord(encodeEvent({ wallTime: Date.now() / 1000, step, scalars })));
  }

  /** Appends the buffered events to the file. */
  flush(): Promise<void> {
    if (this.pending.length > 0) {
      const chunk = Buffer.concat(this.pending);
      this.pending = [];
      this.writing = this.writing.then(() => this.append(chunk));
    }
    return this.writing;
  }

  /** Flushes and closes the file; later writes throw. */
  async close(): Promise<void> {
    if (this.closed) return this.writing;
    this.closed = true;
    await this.flush();
    await this.handle?.close();
    this.handle = undefined;
  }

  private async append(chunk: Buffer): Promise<void> {
    if (!this.handle) {
      await mkdir(this.dir, { recursive: true });
      this.handle = await open(this.path, 'a');
    }
    await writingTo(this.path, () => (this.handle as NonNullable<typeof this.handle>).appendFile(chunk));
  }
}

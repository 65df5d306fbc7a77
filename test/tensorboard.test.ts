/**
 * The TensorBoard writer, read back by a decoder written here from the
 * TFRecord and protobuf wire-format definitions (not from the writer's code),
 * and by TensorBoard itself when Python has it.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c, maskedCrc32c } from '../lib/report/crc32c.js';
import { TensorBoardWriter } from '../lib/report/tensorboard.js';
import { readMetrics, Problems } from '../lib/report/run-data.js';
import { RunLog } from '../lib/rl/run-log.js';

/** Bit-at-a-time CRC-32C: slow and obviously the definition. */
function crc32cBitwise(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function mask(crc: number): number {
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
}

interface DecodedEvent {
  wallTime?: number;
  step: number;
  fileVersion?: string;
  values: { tag: string; value: number }[];
}

type Field = { field: number; wire: number; value: number | bigint | Uint8Array };

function readVarint(buf: Uint8Array, at: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    const byte = buf[at++];
    if (byte === undefined) throw new Error('varint runs past the end');
    result |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [result, at];
    shift += 7n;
  }
}

function decodeMessage(buf: Uint8Array): Field[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const fields: Field[] = [];
  let at = 0;
  while (at < buf.length) {
    const [key, next] = readVarint(buf, at);
    at = next;
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (wire === 0) {
      const [v, n] = readVarint(buf, at);
      fields.push({ field, wire, value: v });
      at = n;
    } else if (wire === 1) {
      fields.push({ field, wire, value: view.getFloat64(at, true) });
      at += 8;
    } else if (wire === 2) {
      const [len, n] = readVarint(buf, at);
      fields.push({ field, wire, value: buf.subarray(n, n + Number(len)) });
      at = n + Number(len);
    } else if (wire === 5) {
      fields.push({ field, wire, value: view.getFloat32(at, true) });
      at += 4;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  if (at !== buf.length) throw new Error('message overruns its bytes');
  return fields;
}

function decodeEvent(data: Uint8Array): DecodedEvent {
  const event: DecodedEvent = { step: 0, values: [] };
  for (const f of decodeMessage(data)) {
    if (f.field === 1 && f.wire === 1) event.wallTime = f.value as number;
    else if (f.field === 2 && f.wire === 0) event.step = Number(f.value);
    else if (f.field === 3 && f.wire === 2) event.fileVersion = Buffer.from(f.value as Uint8Array).toString('utf8');
    else if (f.field === 5 && f.wire === 2) {
      for (const v of decodeMessage(f.value as Uint8Array)) {
        if (v.field !== 1 || v.wire !== 2) throw new Error(`Summary field ${v.field}/${v.wire}`);
        let tag = '';
        let value = NaN;
        for (const x of decodeMessage(v.value as Uint8Array)) {
          if (x.field === 1 && x.wire === 2) tag = Buffer.from(x.value as Uint8Array).toString('utf8');
          else if (x.field === 2 && x.wire === 5) value = x.value as number;
          else throw new Error(`Summary.Value field ${x.field}/${x.wire}`);
        }
        event.values.push({ tag, value });
      }
    } else throw new Error(`Event field ${f.field}/${f.wire}`);
  }
  return event;
}

/** Every record of a TFRecord file, checking both CRCs of each. */
function readRecords(bytes: Buffer): Buffer[] {
  const records: Buffer[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (at + 12 > bytes.length) throw new Error(`truncated header at byte ${at}`);
    const lengthBytes = bytes.subarray(at, at + 8);
    const length = Number(bytes.readBigUInt64LE(at));
    if (bytes.readUInt32LE(at + 8) !== mask(crc32cBitwise(lengthBytes))) throw new Error(`bad length CRC at byte ${at}`);
    const data = bytes.subarray(at + 12, at + 12 + length);
    if (data.length !== length || at + 16 + length > bytes.length) throw new Error(`truncated record at byte ${at}`);
    if (bytes.readUInt32LE(at + 12 + length) !== mask(crc32cBitwise(data))) throw new Error(`bad data CRC at byte ${at}`);
    records.push(data);
    at += 16 + length;
  }
  return records;
}

const float32 = (v: number) => Math.fround(v);

t.test('CRC-32C matches the published check values (RFC 3720 B.4)', async (t) => {
  const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
  const vectors: [Uint8Array, number][] = [
    [Buffer.from('123456789'), 0xe3069283],
    [new Uint8Array(32), 0x8a9136aa],
    [new Uint8Array(32).fill(0xff), 0x62a8ab43],
    [ascending, 0x46dd794e],
    [new Uint8Array(0), 0],
  ];
  for (const [data, expected] of vectors) {
    t.equal(crc32c(data), expected, `table CRC of ${data.length} bytes`);
    t.equal(crc32cBitwise(data), expected, `bitwise CRC of ${data.length} bytes`);
    t.equal(maskedCrc32c(data), mask(expected));
  }
  const random = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 2654435761) >>> 24));
  t.equal(crc32c(random), crc32cBitwise(random));
});

t.test('scalars round-trip through the event file', async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), 'st-tb-')), 'tensorboard');
  const before = Date.now() / 1000;
  const writer = new TensorBoardWriter(dir);
  t.match(writer.path, /events\.out\.tfevents\.\d+\./);
  writer.scalar('reward/overall', 0.75, 1);
  writer.scalars({ 'actor/lr': 1e-6, 'actor/grad_norm': 3.25, 'val/accuracy/relation': 0.5 }, 2);
  writer.scalars({ 'timing/step': 12.5, 'reward/überall': -1 }, 300); // multi-byte varint step, non-ASCII tag
  await writer.flush();
  const afterFirstFlush = readFileSync(writer.path);
  writer.scalar('big/step', 42, 2 ** 40);
  await writer.close();
  t.throws(() => writer.scalar('late', 1, 5), /after close/);

  const bytes = readFileSync(writer.path);
  t.ok(bytes.subarray(0, afterFirstFlush.length).equals(afterFirstFlush), 'later flushes only append');
  t.equal(readRecords(afterFirstFlush).length, 4, 'a flushed file holds complete records only');
  const events = readRecords(bytes).map(decodeEvent);
  t.equal(events.length, 5);
  t.equal(events[0]!.fileVersion, 'brain.Event:2');
  t.same(events[0]!.values, []);
  for (const e of events) t.ok(e.wallTime! >= before - 1 && e.wallTime! <= Date.now() / 1000 + 1, 'wall time is now, in seconds');
  t.same(
    events.slice(1).map((e) => ({ step: e.step, values: e.values })),
    [
      { step: 1, values: [{ tag: 'reward/overall', value: 0.75 }] },
      {
        step: 2,
        values: [
          { tag: 'actor/lr', value: float32(1e-6) },
          { tag: 'actor/grad_norm', value: 3.25 },
          { tag: 'val/accuracy/relation', value: 0.5 },
        ],
      },
      { step: 300, values: [{ tag: 'timing/step', value: 12.5 }, { tag: 'reward/überall', value: -1 }] },
      { step: 2 ** 40, values: [{ tag: 'big/step', value: 42 }] },
    ],
  );
});

t.test('a run log names each metric the same in metrics.jsonl, TensorBoard and the report', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-tb-runlog-'));
  const log = await RunLog.open(dir);
  await log.metrics(1, 'train', { 'reward/overall': 0.5, 'actor/pg_loss': -0.25, 'sft/loss': 2 });
  await log.metrics(2, 'val', { 'val/accuracy': 0.75, ciou: 0.5 });
  await log.close();
  const [eventFile] = readdirSync(join(dir, 'tensorboard'));
  const tags = readRecords(readFileSync(join(dir, 'tensorboard', eventFile!))).map(decodeEvent).flatMap((e) => e.values.map((v) => `${e.step} ${v.tag}`));
  const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(Object.keys(lines[0]!).filter((k) => !['step', 'split', 'time'].includes(k)), ['reward/overall', 'actor/pg_loss', 'sft/loss']);
  t.same(tags, ['1 reward/overall', '1 actor/pg_loss', '1 sft/loss', '2 val/accuracy', '2 val/ciou'], 'train names unprefixed; a bare validation name gains val/');
  const curves = (await readMetrics(join(dir, 'metrics.jsonl'), new Problems())).curves;
  t.same([...curves.keys()], ['reward/overall', 'actor/pg_loss', 'sft/loss', 'val/accuracy', 'val/ciou'], 'the report plots them under the same names');
});

t.test('a corrupted byte is caught by the reader', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-tb-'));
  const writer = new TensorBoardWriter(dir);
  writer.scalar('x', 1, 1);
  await writer.close();
  const bytes = readFileSync(writer.path);
  bytes[bytes.length - 6]! ^= 0x01;
  t.throws(() => readRecords(bytes), /bad data CRC/);
});

t.test('writers on one directory get distinct files; bad input is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-tb-'));
  const a = new TensorBoardWriter(dir);
  const b = new TensorBoardWriter(dir);
  t.not(a.path, b.path);
  a.scalar('a', 1, 0);
  b.scalar('b', 2, 0);
  await Promise.all([a.close(), b.close()]);
  t.equal(readdirSync(dir).length, 2);
  t.throws(() => new TensorBoardWriter(dir).scalar('x', 1, -1), /non-negative integer/);
  t.throws(() => new TensorBoardWriter(dir).scalar('x', 1, 1.5), /non-negative integer/);
  t.throws(() => new TensorBoardWriter(dir).scalar('', 1, 1), /empty/);
});

const tensorboardProbe = spawnSync('python3', ['-c', 'import tensorboard'], { encoding: 'utf8' });
const noTensorBoard =
  tensorboardProbe.status === 0
    ? false
    : tensorboardProbe.error
      ? `python3 cannot run (${tensorboardProbe.error.message})`
      : `python3 cannot import tensorboard (${tensorboardProbe.stderr.trim().split('\n').pop()})`;
if (noTensorBoard) t.comment(`skipping the EventFileLoader check: ${noTensorBoard}`);

t.test('TensorBoard reads the file (EventFileLoader)', { skip: noTensorBoard }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-tb-'));
  const writer = new TensorBoardWriter(dir);
  writer.scalars({ 'reward/overall': 0.5, 'actor/lr': 1e-6 }, 3);
  writer.scalar('reward/overall', 0.625, 4);
  await writer.close();
  const script = join(dir, 'read.py');
  writeFileSync(
    script,
    [
      'import json, sys',
      'from tensorboard.backend.event_processing.event_file_loader import EventFileLoader',
      'out = []',
      'for e in EventFileLoader(sys.argv[1]).Load():',
      '    out.append({"step": e.step, "version": e.file_version,',
      '                "values": [[v.tag, float(v.tensor.float_val[0]) if v.HasField("tensor") else v.simple_value] for v in e.summary.value]})',
      'print(json.dumps(out))',
    ].join('\n'),
  );
  const r = spawnSync('python3', [script, writer.path], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const events = JSON.parse(r.stdout) as { step: number; version: string; values: [string, number][] }[];
  t.equal(events[0]!.version, 'brain.Event:2');
  t.same(
    events.slice(1).map((e) => [e.step, e.values]),
    [
      [3, [['reward/overall', 0.5], ['actor/lr', float32(1e-6)]]],
      [4, [['reward/overall', 0.625]]],
    ],
  );
});

/**
 * safetensors files (https://github.com/huggingface/safetensors), the weight
 * format of Hugging Face model directories.
 *
 * Reading is native (native/engine/safetensors.cpp): the file is memory-mapped
 * and its header validated before anything is read (dtypes known, shapes
 * non-negative, offsets inside the data section, sized numel x itemsize, no
 * two tensors overlapping), on a worker thread. Every rejection names the file
 * and, where there is one, the tensor.
 *
 * Writing (`encodeSafetensors`) is this module's small TypeScript writer,
 * used by tests and tools to make files; a native checkpoint writer may take
 * its place for model weights later.
 */
import { endianness } from 'node:os';

import { native } from '../native/binding.js';

/** The dtypes the engine reads. (F8_*, F4, F6_*, U16-U64 and C64 files are rejected as unsupported.) */
export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const SAFETENSORS_DTYPES: readonly SafetensorsDType[] = [
  'F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL',
];

/**
 * The typed array a dtype is read into. F16 and BF16 are widened to fp32
 * (exactly: every half and bfloat16 value is a float32), their `dtype` still
 * says what the file holds.
 */
export interface DTypeArrays {
  F64: Float64Array;
  F32: Float32Array;
  F16: Float32Array;
  BF16: Float32Array;
  I64: BigInt64Array;
  I32: Int32Array;
  I16: Int16Array;
  I8: Int8Array;
  U8: Uint8Array;
  BOOL: Uint8Array;
}

export type TensorData = DTypeArrays[SafetensorsDType];

export interface TensorHeader {
  dtype: SafetensorsDType;
  /** Dimensions, outermost first; [] is a scalar (one element). */
  shape: number[];
}

export interface Tensor extends TensorHeader {
  data: TensorData;
}

export interface SafetensorsHeader {
  /** The header's "__metadata__" ({} when absent). */
  metadata: Record<string, string>;
  /** In file order (by data offset). */
  tensors: Record<string, TensorHeader>;
}

export interface SafetensorsContents {
  metadata: Record<string, string>;
  /** In file order, or in the order of the names asked for. */
  tensors: Record<string, Tensor>;
}

export interface ModelWeightInfo extends TensorHeader {
  /** The file holding the tensor: `<dir>/model.safetensors` or `<dir>/<shard>`. */
  file: string;
}

/**
 * Reads a safetensors file: its metadata and tensors (all of them, or those
 * named; a name the file lacks rejects with "<path>: no tensor named '<name>'").
 * Data is copied out of the mapping, so the arrays outlive the file.
 */
export async function readSafetensors(path: string, names?: readonly string[]): Promise<SafetensorsContents> {
  return native().readSafetensors(path, names === undefined ? undefined : [...names]);
}

/** The header of a safetensors file (metadata, dtypes and shapes) without reading the data. */
export async function inspectSafetensors(path: string): Promise<SafetensorsHeader> {
  return native().inspectSafetensors(path);
}

/**
 * The weights of a Hugging Face model directory: `model.safetensors`, or the
 * shards of `model.safetensors.index.json` ("weight_map": tensor -> shard;
 * each shard is opened and validated, and each listed tensor must be in its
 * shard). Keyed by tensor name, in name order.
 */
export async function inspectModelWeights(dir: string): Promise<Record<string, ModelWeightInfo>> {
  return native().inspectModelWeights(dir);
}

// ---------------------------------------------------------------------------
// Writer

/**
 * A tensor to write. F16 and BF16 take either the raw 16-bit patterns
 * (Uint16Array) or float32 values (Float32Array), rounded to nearest even.
 */
export type EncodableTensor =
  | { dtype: 'F64'; shape: readonly number[]; data: Float64Array }
  | { dtype: 'F32'; shape: readonly number[]; data: Float32Array }
  | { dtype: 'F16' | 'BF16'; shape: readonly number[]; data: Uint16Array | Float32Array }
  | { dtype: 'I64'; shape: readonly number[]; data: BigInt64Array }
  | { dtype: 'I32'; shape: readonly number[]; data: Int32Array }
  | { dtype: 'I16'; shape: readonly number[]; data: Int16Array }
  | { dtype: 'I8'; shape: readonly number[]; data: Int8Array }
  | { dtype: 'U8' | 'BOOL'; shape: readonly number[]; data: Uint8Array };

type ArrayConstructorLike = { name: string; BYTES_PER_ELEMENT: number };

const ENCODE_ARRAYS: Record<SafetensorsDType, readonly ArrayConstructorLike[]> = {
  F64: [Float64Array],
  F32: [Float32Array],
  F16: [Uint16Array, Float32Array],
  BF16: [Uint16Array, Float32Array],
  I64: [BigInt64Array],
  I32: [Int32Array],
  I16: [Int16Array],
  I8: [Int8Array],
  U8: [Uint8Array],
  BOOL: [Uint8Array],
};

const ITEM_SIZE: Record<SafetensorsDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 -> bfloat16 bits, round to nearest even (NaN stays a quiet NaN of the same sign). */
export function f32ToBf16Bits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0]!;
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) & 0x8000) | 0x7fc0;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 -> IEEE half bits, round to nearest even, with subnormals and overflow to infinity. */
export function f32ToF16Bits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 | (mantissa >>> 13) : 0);
  const e = exponent - 112; // rebiased for half
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal
    mantissa |= 0x800000;
    const shift = 14 - e;
    let half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) === 1)) half += 1;
    return sign | half; // a carry makes the smallest normal, as it should
  }
  let half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half += 1; // may carry into infinity
  return sign | half;
}

function tensorBytes(tensor: EncodableTensor): Uint8Array {
  const { dtype, data } = tensor;
  if (dtype === 'F16' || dtype === 'BF16') {
    if (data instanceof Float32Array) {
      const bits = new Uint16Array(data.length);
      const convert = dtype === 'F16' ? f32ToF16Bits : f32ToBf16Bits;
      for (let i = 0; i < data.length; i++) bits[i] = convert(data[i]!);
      return new Uint8Array(bits.buffer);
    }
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Serialises tensors as a safetensors file, as the reference writer lays it
 * out: the 8-byte little-endian header length, the JSON header ("__metadata__"
 * first when given, then the tensors sorted by name, their data in the same
 * order, back to back) padded with spaces to a multiple of 8 bytes, then the
 * data. Throws a TypeError/RangeError naming the tensor for a wrong dtype,
 * array type, shape or length.
 */
export function encodeSafetensors(
  tensors: Readonly<Record<string, EncodableTensor>>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  if (endianness() !== 'LE') throw new Error('encodeSafetensors: only little-endian hosts are supported');
  const names = Object.keys(tensors).sort();
  const entries: string[] = [];
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata))
      if (typeof value !== 'string')
        throw new TypeError(`encodeSafetensors: metadata '${key}' must be a string (got ${typeof value})`);
    const fields = Object.keys(metadata).map((key) => `${JSON.stringify(key)}:${JSON.stringify(metadata[key])}`);
    entries.push(`"__metadata__":{${fields.join(',')}}`);
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__') throw new RangeError(`encodeSafetensors: '__metadata__' cannot name a tensor`);
    const tensor = tensors[name]!;
    const where = `encodeSafetensors: tensor '${name}'`;
    const allowed = ENCODE_ARRAYS[tensor.dtype as SafetensorsDType];
    if (allowed === undefined)
      throw new TypeError(`${where}: unknown dtype '${String(tensor.dtype)}' (expected one of ${SAFETENSORS_DTYPES.join(', ')})`);
    if (!allowed.some((type) => tensor.data instanceof (type as unknown as new () => object)))
      throw new TypeError(`${where}: ${tensor.dtype} data must be a ${allowed.map((type) => type.name).join(' or ')}`);
    let numel = 1;
    for (const d of tensor.shape) {
      if (!Number.isSafeInteger(d) || d < 0)
        throw new RangeError(`${where}: shape [${tensor.shape.join(', ')}] must hold non-negative integers`);
      numel *= d;
    }
    if (tensor.data.length !== numel)
      throw new RangeError(`${where}: data holds ${tensor.data.length} elements but shape [${tensor.shape.join(', ')}] needs ${numel}`);
    const bytes = tensorBytes(tensor);
    const size = numel * ITEM_SIZE[tensor.dtype];
    entries.push(
      `${JSON.stringify(name)}:{"dtype":"${tensor.dtype}","shape":[${tensor.shape.join(',')}],"data_offsets":[${offset},${offset + size}]}`,
    );
    chunks.push(bytes);
    offset += size;
  }
  let header = new TextEncoder().encode(`{${entries.join(',')}}`);
  const padding = (8 - (header.length % 8)) % 8;
  if (padding > 0) {
    const padded = new Uint8Array(header.length + padding).fill(0x20);
    padded.set(header);
    header = padded;
  }
  const out = new Uint8Array(8 + header.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  let at = 8 + header.length;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

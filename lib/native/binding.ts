/**
 * The compiled engine (native/), loaded once through node-gyp-build from
 * build/Release or a prebuild, or from the file SPATIALTHINKER_ADDON names
 * (an absolute path, or relative to the working directory: e.g. the CUDA
 * emulation build's build-emu/Release/spatialthinker_native.node, which
 * `npm run test:cuda-emulated` uses). Weights and activations never cross
 * into JavaScript: only typed arrays of inputs and results do.
 */
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CudaDeviceInfo {
  index: number;
  name: string;
  computeCapability: string;
  totalMemory: number;
  freeMemory: number;
  multiprocessors: number;
}

export interface RuntimeInfo {
  /** Worker threads of the engine's CPU pool (SPATIALTHINKER_THREADS overrides). */
  threads: number;
  /** The widest CPU kernels the matrix products use on this machine, chosen at run time (SPATIALTHINKER_CPU_ISA caps it). */
  cpuIsa: 'avx512' | 'avx2' | 'portable';
  cuda: {
    /** Whether this build contains the CUDA backend. */
    compiled: boolean;
    architectures: string;
    runtimeVersion: number;
    driverVersion: number;
    /** Whether a usable GPU was found; `reason` says why not. */
    available: boolean;
    reason?: string;
    devices: CudaDeviceInfo[];
    /** cuBLAS, which the CUDA backend's matrix products load at run time. */
    cublas: { found: boolean; library?: string; version?: string; error?: string };
  };
}

export type Device = 'cpu' | 'cuda';

export interface NativeBoxPairs {
  predBoxes: Float64Array;
  predCounts: Int32Array;
  gtBoxes: Float64Array;
  gtCounts: Int32Array;
  device?: Device;
}

export interface NativeBinding {
  runtimeInfo(): RuntimeInfo;
  /** Time spent in CPU matrix products since the last reset (benchmarks). */
  engineCounters(reset?: boolean): { matmulSeconds: number };
  ciouMatrices(args: NativeBoxPairs): Promise<Float64Array>;
  linearSumAssignment(args: {
    costs: Float64Array;
    rows: Int32Array;
    cols: Int32Array;
    device?: Device;
  }): Promise<{ rowToCol: Int32Array; totals: Float64Array }>;
  /** One CPU matrix product y = x w^T + bias, for kernel tests and benchmarks: `repeat` runs on the same operands, their mean and fastest time. */
  linear(args: {
    x: Float32Array;
    w: Float32Array;
    bias?: Float32Array;
    m: number;
    k: number;
    n: number;
    repeat?: number;
  }): Promise<{ y: Float32Array; seconds: number; bestSeconds: number }>;
  /**
   * One op of the engine's backend interface on the chosen backend, for
   * kernel tests: float tensors are copied in, outputs copied out (outputs
   * not passed in start as NaN; `outputs` names the optional ones to make).
   * See native/addon/ops_workers.cpp for each op's fields.
   */
  runOp(args: {
    op: string;
    device?: Device;
    tensors?: Record<string, Float32Array>;
    ints?: Record<string, Int32Array>;
    scalars?: Record<string, number>;
    outputs?: string[];
    sequences?: { qOffset: number; qLen: number; keySlots: Int32Array; causal?: boolean }[];
  }): Promise<{ outputs: Record<string, Float32Array>; scalar?: number; backend: string }>;
  spatialScores(
    args: NativeBoxPairs & { similarity: Float64Array; semanticWeight?: number; iouWeight?: number },
  ): Promise<{ scores: Float64Array; gtToPred: Int32Array; gtMciou: Float64Array }>;
}

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

let cached: NativeBinding | undefined;

/** The native module; throws a message that says how to build it when it is missing. */
export function native(): NativeBinding {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const chosen = process.env['SPATIALTHINKER_ADDON'];
  if (chosen) {
    const path = resolve(chosen);
    try {
      cached = require(path) as NativeBinding;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`spatialthinker: could not load the native engine SPATIALTHINKER_ADDON names (${path}): ${reason}`);
    }
    return cached;
  }
  const load = require('node-gyp-build') as (dir: string) => NativeBinding;
  try {
    cached = load(packageRoot);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `spatialthinker: the native engine is not built (${reason}). ` +
        `Run \`npm run build:native\` in ${packageRoot} (needs cmake >= 3.25 and a C++17 compiler).`,
    );
  }
  return cached;
}

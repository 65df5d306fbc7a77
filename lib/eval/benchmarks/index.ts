/** The benchmarks of the paper's tables that have a loader, by command-line name. */
import type { BenchmarkDefinition } from '../types.js';
import { THREEDSR_BENCH } from './3dsrbench.js';
import { BLINK_COUNTING, BLINK_DEPTH, BLINK_MULTI_VIEW, BLINK_OBJECT, BLINK_SPATIAL } from './blink.js';
import { CV_BENCH_2D, CV_BENCH_3D } from './cv-bench.js';
import { HALLUSIONBENCH } from './hallusionbench.js';
import { MMVP } from './mmvp.js';
import { REALWORLDQA } from './realworldqa.js';
import { ROBOSPATIAL, ROBOSPATIAL_RGB } from './robospatial.js';
import { SPATIALBENCH } from './spatialbench.js';
import { SPATIAL_REASONER_EVAL } from './spatialreasoner.js';
import { STVQA_VAL } from './stvqa.js';

export { genericBenchmark, type GenericBenchmarkOptions } from './generic.js';
export { REALWORLDQA_LETTER_ONLY } from './realworldqa.js';

export const BENCHMARKS: readonly BenchmarkDefinition[] = [
  CV_BENCH_2D,
  CV_BENCH_3D,
  BLINK_SPATIAL,
  BLINK_DEPTH,
  BLINK_COUNTING,
  BLINK_OBJECT,
  BLINK_MULTI_VIEW,
  THREEDSR_BENCH,
  MMVP,
  SPATIAL_REASONER_EVAL,
  SPATIALBENCH,
  STVQA_VAL,
  REALWORLDQA,
  ROBOSPATIAL,
  ROBOSPATIAL_RGB,
  HALLUSIONBENCH,
];

/**
 * The benchmarks behind the paper's 14-benchmark average that have a loader
 * (MindCube-tiny, MM-Star, VStarBench and MME-RealWorld-Lite have none in
 * the reference either).
 */
export const PAPER_BENCHMARKS: readonly string[] = [
  '3dsrbench',
  'cv-bench-2d',
  'cv-bench-3d',
  'blink-spatial',
  'blink-depth',
  'mmvp',
  'spatialreasoner',
  'spatialbench',
  'stvqa',
  'realworldqa',
  'robospatial',
  'hallusionbench',
];

export function benchmarkByName(name: string): BenchmarkDefinition | undefined {
  return BENCHMARKS.find((b) => b.name === name);
}

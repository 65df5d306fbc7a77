/**
 * The paper's published accuracies (%), from the third-party translation of
 * arXiv 2511.07403v2 restated in shared/spec/method.md §6: Tables 1–3 in
 * full, and the sub-task cells of the partial Tables 9–12. A dash in the
 * paper is absent here.
 */

/** One reported column of the paper. */
export interface PaperMetric {
  key: string;
  title: string;
  /** Where the paper reports it. */
  table: string;
}

/** Columns of Tables 1–3, in their order. */
export const PAPER_METRICS: readonly PaperMetric[] = [
  { key: '3dsrbench', title: '3DSRBench', table: 'Table 1' },
  { key: 'cv-bench-2d', title: 'CV-Bench 2D', table: 'Table 1' },
  { key: 'cv-bench-3d', title: 'CV-Bench 3D', table: 'Table 1' },
  { key: 'cv-bench', title: 'CV-Bench Avg', table: 'Table 1' },
  { key: 'blink-spatial', title: 'BLINK Spatial Rel.', table: 'Table 1' },
  { key: 'blink-depth', title: 'BLINK Rel. Depth', table: 'Table 1' },
  { key: 'blink', title: 'BLINK Avg', table: 'Table 1' },
  { key: 'mmvp', title: 'MMVP', table: 'Table 2' },
  { key: 'spatialreasoner', title: 'SpatialReasonerEval', table: 'Table 2' },
  { key: 'spatialbench', title: 'SpatialBench', table: 'Table 2' },
  { key: 'stvqa', title: 'STVQA-7K val', table: 'Table 2' },
  { key: 'mindcube-tiny', title: 'MindCube-tiny', table: 'Table 2' },
  { key: 'mmstar', title: 'MM-Star', table: 'Table 3' },
  { key: 'vstar', title: 'VStarBench', table: 'Table 3' },
  { key: 'realworldqa', title: 'RealWorldQA', table: 'Table 3' },
  { key: 'mme-realworld-lite', title: 'MME-RealWorld-Lite', table: 'Table 3' },
  { key: 'robospatial', title: 'RoboSpatial-Home', table: 'Table 3' },
  { key: 'hallusionbench', title: 'HallusionBench', table: 'Table 3' },
];

/** Sub-task columns reported for some models only. */
export const PAPER_SUBTASK_METRICS: readonly PaperMetric[] = [
  { key: 'cv-bench-count', title: 'CV-Bench Count', table: 'Tables 9, 11' },
  { key: 'cv-bench-relation', title: 'CV-Bench Relation', table: 'Tables 9, 11' },
  { key: 'cv-bench-depth', title: 'CV-Bench Depth', table: 'Tables 9, 11' },
  { key: 'cv-bench-distance', title: 'CV-Bench Distance', table: 'Tables 9, 11' },
  { key: '3dsrbench-height', title: '3DSRBench Height', table: 'Table 12' },
  { key: '3dsrbench-location', title: '3DSRBench Location', table: 'Table 12' },
  { key: '3dsrbench-orientation', title: '3DSRBench Orientation', table: 'Table 12' },
  { key: '3dsrbench-multi_object', title: '3DSRBench Multi-object', table: 'Table 12' },
  { key: 'blink-multi-view', title: 'BLINK Multi-view', table: 'Table 10' },
];

/** The 14 entries of the paper's average (Table 4): CV-Bench and BLINK count once each, by their Avg. */
export const PAPER_AVERAGE_KEYS: readonly string[] = [
  '3dsrbench', 'cv-bench', 'blink', 'mmvp', 'spatialreasoner', 'spatialbench', 'stvqa',
  'mindcube-tiny', 'mmstar', 'vstar', 'realworldqa', 'mme-realworld-lite', 'robospatial', 'hallusionbench',
];

// One row per model, values in PAPER_METRICS order; null where the paper has a dash.
const TABLE_ROWS: readonly (readonly [string, readonly (number | null)[]])[] = [
  ["GPT-5-0807"                   , [68.2, 81.4, 90.3, 85.8, 90.9, 81.4, 86.1, 61.7, 90.5, 62.6, 89.7, 42.5, 58.9, 73.3, 78.7, 57.0, 71.5, 73.8]],
  ["GPT-4o-0513"                  , [44.3, 75.8, 83.0, 79.4, 82.5, 78.2, 80.4, 70.7, 85.8, 67.0, 77.0, 34.9, 64.7, 66.0, 75.4, 51.6, 68.4, 55.0]],
  ["Claude-4-Sonnet-0514"         , [61.9, 73.3, 84.2, 78.7, 79.0, 78.2, 78.6, 71.3, 85.7, 60.9, 80.5, 44.8, 64.4, 60.7, 64.0, 46.9, 69.7, 71.2]],
  ["Claude-3.5-Sonnet-0620"       , [48.2, 60.2, 71.5, 65.9, 58.7, 67.7, 63.2, 71.3, 84.1, 63.2, null, null, 65.1, 51.8, 60.1, 45.2, 57.0, 55.5]],
  ["Qwen2.5-VL-3B"                , [44.0, 59.9, 60.2, 60.0, 66.4, 54.0, 60.2, 67.0, 68.0, 49.9, 74.3, 36.4, 55.9, 74.9, 58.2, 41.9, 58.7, 46.3]],
  ["Qwen2.5-VL-7B"                , [48.4, 69.1, 68.0, 68.6, 84.0, 52.4, 68.2, 72.3, 70.6, 62.5, 77.5, 35.3, 63.9, 75.9, 68.4, 44.1, 70.6, 52.9]],
  ["Qwen3-VL-30B"                 , [60.4, 79.0, 89.6, 84.3, 86.0, 75.8, 80.9, 77.9, 88.2, 68.1, 83.7, 39.0, 64.3, 81.2, 64.8, 45.8, 53.1, 61.5]],
  ["VLAA-Thinker-7B"              , [52.2, 60.8, 60.3, 60.6, 81.2, 71.0, 76.1, 75.3, 61.2, 66.2, 76.2, 36.7, 63.8, 58.1, 66.4, 44.6, 68.9, 68.9]],
  ["LLaVA-NeXT-8B"                , [48.4, 62.2, 65.3, 63.8, null, null, null, null, null, null, null, null, null, null, null, null, null, null]],
  ["Cambrian-1-8B"                , [42.2, 72.3, 72.0, 72.2, 69.9, 73.4, 71.7, null, null, null, null, null, null, null, null, null, null, null]],
  ["RoboPoint-13B"                , [null, null, 61.2, null, 60.8, 61.3, 61.1, null, null, null, null, null, null, null, null, null, null, null]],
  ["SpatialBot-3B"                , [41.1, null, 69.1, null, 67.8, 67.7, 67.8, null, null, null, null, null, null, null, null, null, null, null]],
  ["SpaceLLaVA-13B"               , [42.0, null, 68.5, null, 72.7, 62.9, 67.8, null, null, null, null, null, null, null, null, null, null, null]],
  ["SATORI-R1"                    , [48.0, 54.6, 69.4, 62.0, 77.0, 58.9, 68.0, 67.7, 70.5, 60.3, 51.2, 36.0, null, null, null, null, null, null]],
  ["Spatial-RGPT-7B (with depth)" , [48.4, null, 60.7, null, 65.7, 72.3, 69.0, null, null, null, null, null, null, null, null, null, null, null]],
  ["SpaceThinker"                 , [51.1, 65.1, 65.9, 65.5, 73.4, 59.9, 66.7, 63.0, 69.6, 57.9, 75.4, 36.0, 54.5, 56.5, 61.6, null, 52.6, 65.4]],
  ["SpaceOm"                      , [52.2, 72.1, 69.3, 70.7, 81.1, 65.3, 73.2, 66.3, 68.9, 58.6, 66.0, 33.5, 57.7, 56.5, 53.3, null, 68.9, 62.9]],
  ["Qwen2.5-VL-3B + SFT"          , [50.8, 53.9, 68.4, 61.1, 65.0, 66.9, 66.0, 62.7, 67.5, 56.3, 85.6, 35.9, 53.9, 73.3, 64.8, 43.0, 69.8, 58.9]],
  ["Qwen2.5-VL-3B + Vanilla GRPO" , [50.1, 70.6, 66.6, 68.6, 73.4, 55.6, 64.5, 68.3, 69.3, 56.9, 86.7, 38.8, 56.7, 74.3, 64.4, 46.7, 64.0, 59.0]],
  ["SpatialThinker-3B"            , [52.9, 71.0, 76.3, 73.6, 81.8, 66.9, 74.4, 69.0, 76.5, 61.5, 92.5, 40.5, 57.6, 78.0, 66.3, 46.5, 70.6, 62.5]],
  ["Qwen2.5-VL-7B + SFT"          , [53.6, 56.1, 71.3, 63.7, 75.5, 64.5, 70.0, 68.3, 70.8, 63.5, 84.5, 42.2, 63.2, 78.0, 65.4, 47.4, 72.4, 66.2]],
  ["Qwen2.5-VL-7B + Vanilla GRPO" , [54.7, 68.9, 76.5, 72.7, 80.4, 75.0, 77.7, 74.3, 79.6, 64.2, 87.1, 44.0, 63.4, 73.9, 66.6, 46.3, 76.2, 60.7]],
  ["SpatialThinker-7B"            , [56.4, 77.7, 78.7, 78.2, 86.0, 72.6, 79.3, 78.0, 82.7, 66.4, 92.8, 45.1, 65.9, 81.7, 69.2, 48.3, 76.3, 66.4]],
  ["SpatialThinker-30B"           , [62.1, 80.3, 93.6, 87.0, 88.1, 79.8, 84.0, 79.7, 92.6, 69.5, 93.0, 45.4, 66.9, 85.9, 74.9, 49.2, 78.1, 75.2]],
  ["SpatialReasoner"              , [null, null, null, null, null, null, null, 64.0, 76.4, 59.2, 74.0, 34.6, null, null, null, null, null, null]],
  ["Visionary-R1"                 , [null, null, null, null, null, null, null, 70.3, 72.9, 59.8, 74.4, 36.0, null, null, null, null, null, null]],
];

const SUBTASK_ROWS: Readonly<Record<string, Readonly<Record<string, number>>>> = {
  // Table 9, KL k3 (0.01) row: the final SpatialThinker-3B recipe.
  'SpatialThinker-3B': { 'cv-bench-count': 68.5, 'cv-bench-relation': 73.5, 'cv-bench-depth': 79.7, 'cv-bench-distance': 72.8 },
  // Tables 10-12 (partial).
  'SpatialThinker-7B': {
    'cv-bench-count': 68.7, 'cv-bench-relation': 86.7, 'cv-bench-depth': 81.2, 'cv-bench-distance': 76.2,
    '3dsrbench-height': 52.0, '3dsrbench-location': 70.3, '3dsrbench-orientation': 45.5, '3dsrbench-multi_object': 50.9,
    'blink-multi-view': 52.6,
  },
  'SpatialThinker-30B': {
    'cv-bench-count': 67.4, 'cv-bench-relation': 93.2, 'cv-bench-depth': 96.1, 'cv-bench-distance': 91.1,
    '3dsrbench-height': 62.6, '3dsrbench-location': 74.9, '3dsrbench-orientation': 50.5, '3dsrbench-multi_object': 54.3,
  },
  'GPT-5-0807': {
    'cv-bench-count': 68.3, 'cv-bench-relation': 94.5, 'cv-bench-depth': 92.2, 'cv-bench-distance': 88.6,
    '3dsrbench-height': 72.9, '3dsrbench-location': 79.5, '3dsrbench-orientation': 59.0, '3dsrbench-multi_object': 60.6,
  },
  'GPT-4o-0513': { 'blink-multi-view': 54.1 },
  'Claude-3.5-Sonnet-0620': { 'blink-multi-view': 51.9 },
};

/** Model name -> metric key -> accuracy (%). */
export const PAPER_RESULTS: ReadonlyMap<string, ReadonlyMap<string, number>> = new Map(
  TABLE_ROWS.map(([model, values]) => {
    const row = new Map<string, number>();
    values.forEach((v, i) => {
      if (v !== null) row.set(PAPER_METRICS[i]!.key, v);
    });
    for (const [key, v] of Object.entries(SUBTASK_ROWS[model] ?? {})) row.set(key, v);
    return [model, row];
  }),
);

/** The rows to compare a model trained from a Qwen2.5-VL base with: the base, its SFT and vanilla-GRPO baselines, SpatialThinker. */
export const PAPER_FAMILIES: Readonly<Record<'3b' | '7b', readonly string[]>> = {
  '3b': ['Qwen2.5-VL-3B', 'Qwen2.5-VL-3B + SFT', 'Qwen2.5-VL-3B + Vanilla GRPO', 'SpatialThinker-3B'],
  '7b': ['Qwen2.5-VL-7B', 'Qwen2.5-VL-7B + SFT', 'Qwen2.5-VL-7B + Vanilla GRPO', 'SpatialThinker-7B'],
};

/** The paper family of a Qwen2.5-VL checkpoint, from its text hidden size (2048: 3B, 3584: 7B). */
export function familyOfHiddenSize(hiddenSize: number): '3b' | '7b' | undefined {
  return hiddenSize === 2048 ? '3b' : hiddenSize === 3584 ? '7b' : undefined;
}

/** The paper's value of a metric for a model, or undefined. */
export function paperValue(model: string, key: string): number | undefined {
  return PAPER_RESULTS.get(model)?.get(key);
}

/** Builders for completions and ground truths used across the reward tests. */
export interface SceneObject {
  id: string;
  bbox: unknown[];
}

export function sceneJson(objects: unknown[], relationships: unknown[] = []): string {
  return JSON.stringify({ objects, relationships });
}

export function completion(
  scene: string,
  answer: string,
  parts: { observe?: string; think?: string } = {},
): string {
  return (
    `<observe>${parts.observe ?? 'I see the objects.'}</observe>\n` +
    `<scene>${scene}</scene>\n` +
    `<think>${parts.think ?? 'Reasoning over the graph.'}</think>\n` +
    `<answer>${answer}</answer>`
  );
}

export function groundTruth(objects: SceneObject[], relationships: unknown[], answer: string): string {
  return `<scene>${sceneJson(objects, relationships)}</scene>\n<answer>${answer}</answer>`;
}

/** The worked example of shared/spec/method.md §2.12 (image 640 x 480). */
export const WORKED = {
  image: { width: 640, height: 480 },
  groundTruth: groundTruth(
    [
      { id: 'man.1', bbox: [100, 50, 300, 400] },
      { id: 'bench.2', bbox: [50, 300, 600, 470] },
    ],
    [{ subject: 'man.1', predicate: 'sitting on', object: 'bench.2' }],
    '(A) sitting on',
  ),
  completion: completion(
    sceneJson(
      [
        { id: 'man.1', bbox: [110, 60, 290, 410] },
        { id: 'bench.1', bbox: [40, 310, 590, 460] },
        { id: 'dog.1', bbox: [0, 0, 50, 50] },
      ],
      [{ subject: 'man.1', predicate: 'sitting on', object: 'bench.1' }],
    ),
    ' (a) Sitting on ',
  ),
};

/** Deterministic pseudo-random numbers for reproducible test data (the project's one seeded generator). */
export { mulberry32 as rng } from '../lib/random.js';

/** Each value rounded to the nearest bf16 (ties to even), as the CUDA backend stores it; NaN stays NaN. */
export function toBf16(values: Float32Array): Float32Array {
  const out = new Float32Array(values);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    if (Number.isNaN(out[i])) continue;
    const b = bits[i] as number;
    bits[i] = (Math.floor((b + 0x7fff + (Math.floor(b / 65536) & 1)) / 65536) * 65536) >>> 0;
  }
  return out;
}

/**
 * A gold reasoning trace written from a row's ground truth, the SFT warm
 * start's target: observe (the objects the question is about), scene (the
 * ground-truth sub-graph verbatim), think (their boxes and relations, then
 * the choice), answer — the four blocks the spatial reward's format check
 * wants, in order.
 */
import { parseGroundTruth } from '../rewards/ground-truth.js';
import { firstBlock } from '../rewards/text.js';
import type { StvqaRow } from '../data/schema.js';

interface Relationship {
  subject: string;
  predicate: string;
  object: string;
}

function relationships(scene: Record<string, unknown>): Relationship[] {
  const list = scene['relationships'];
  if (!Array.isArray(list)) return [];
  return list.filter(
    (r): r is Relationship =>
      typeof r === 'object' && r !== null && typeof r.subject === 'string' && typeof r.predicate === 'string' && typeof r.object === 'string',
  );
}

function humanLabel(id: string): string {
  return (id.split('.')[0] ?? id).replaceAll('_', ' ');
}

function listing(items: readonly string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

/** The trace for a ground truth `<scene>...</scene>\n<answer>...</answer>` (throws GroundTruthError when malformed). */
export function goldTrace(groundTruth: string): string {
  const parsed = parseGroundTruth(groundTruth);
  const sceneText = (firstBlock(groundTruth, 'scene') ?? '{}').trim();
  const labels = [...new Set(parsed.objects.map((o) => humanLabel(o.id)))];
  const observe =
    labels.length > 0 ? `The question is about the ${listing(labels)}. I locate ${labels.length === 1 ? 'it' : 'them'} in the image.` : 'The question is about the scene as a whole.';
  // The boxes are in the scene block already: the think block reasons over relations.
  const facts = relationships(parsed.scene).map((r) => `${r.subject} is ${r.predicate} ${r.object}.`);
  const think = [...facts, `So the answer is ${parsed.answer}.`].join(' ');
  return `<observe>\n${observe}\n</observe>\n<scene>\n${sceneText}\n</scene>\n<think>\n${think}\n</think>\n<answer>\n${parsed.answer}\n</answer>`;
}

/** The SFT target of a row: its gold trace, or the text of a named column. */
export function sftTarget(row: StvqaRow, source: string): string {
  if (source === 'gold_trace') return goldTrace(row.answer_option_text);
  const value = (row as unknown as Record<string, unknown>)[source];
  if (typeof value !== 'string' || value.length === 0) throw new Error(`no SFT target text in field "${source}"`);
  return value;
}

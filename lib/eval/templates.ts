/**
 * The evaluation prompts of the reference (`evaluation/templates.py`,
 * `format_instruction` in `evaluation/evals.py`; shared/spec/method.md §5.2).
 * The images go before this text in the user turn; the text has no image
 * marker.
 */
import type { BenchmarkDefinition, TemplateName } from './types.js';

/**
 * The short SpatialThinker instruction. Its last line keeps the literal,
 * unsubstituted `{Width} x {Height}` placeholder, as the reference sends it;
 * the actual size follows on the next line.
 */
export const SPATIAL_THINKER_TEMPLATE =
  'You FIRST observe the image in <observe> </observe> tags, then visualise the relevant scene graph in <scene> </scene> tags, ' +
  'followed by thinking about the reasoning process as an internal monologue within <think> </think> tags and then provide the final answer. ' +
  'The final answer MUST BE put within <answer> </answer> tags, and only return the final choice including the correct option and answer ' +
  'within the answer tags, e.g., <answer> ({correct_option}) {correct_answer} </answer>.\n\nImage size: {Width} x {Height}';

/** The vanilla-GRPO style instruction (`--template reasoning`). */
export const REASONING_INSTRUCTION =
  'You FIRST think about the reasoning process as an internal monologue and then provide the final answer. ' +
  'The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put within <answer> </answer> tags, ' +
  'and only return the final choice including the correct option and answer within the answer tags, e.g., <answer> ({correct_option}) {correct_answer} </answer>.';

export interface ImageSize {
  width: number;
  height: number;
}

/** The template applied to a question; `imageSize` is the first image's stored size (PIL's `.size`). */
export function applyTemplate(template: TemplateName, question: string, imageSize: ImageSize | undefined): string {
  switch (template) {
    case 'spatial_thinker': {
      if (!imageSize) throw new RangeError('the spatial_thinker template needs the size of the first image');
      return `${SPATIAL_THINKER_TEMPLATE}\n(${imageSize.width} x ${imageSize.height})\n\nNow answer the following question:\n${question}`;
    }
    case 'reasoning':
      return `${REASONING_INSTRUCTION}\nQuestion: ${question}`;
    case 'no_reasoning':
      return `Question: ${question}`;
  }
}

/** The full prompt text of a benchmark question: dataset-specific rewriting, the template, then any suffix. */
export function renderPrompt(benchmark: Pick<BenchmarkDefinition, 'prepareQuestion' | 'promptSuffix'>, question: string, template: TemplateName, imageSize: ImageSize | undefined): string {
  const prepared = benchmark.prepareQuestion ? benchmark.prepareQuestion(question, template) : question;
  return applyTemplate(template, prepared, imageSize) + (benchmark.promptSuffix ?? '');
}

/** SpatialBench and MMVP: end the question with a period, then ask for answer tags. */
export function askForAnswerTags(question: string): string {
  return `${question.endsWith('.') ? question : `${question}.`} Please give the final answer within answer tags.`;
}

/**
 * Prompt assembly for Qwen2.5-VL (shared/spec/qwen25vl.md §2, §3.5; method.md §1.2):
 * render the chat template, expand the k-th `<|image_pad|>` to imageTokenCounts[k] copies
 * (grid_t·grid_h·grid_w / merge² for image k, as the Hugging Face processor does), tokenise.
 */
import { ChatTemplate, type ChatMessage, type ContentPart } from './chat-template.js';
import type { Tokenizer } from './tokenizer.js';

export interface PromptTokenIds {
  /** Id of `<|image_pad|>` (151655 for Qwen2.5-VL; config.json image_token_id). */
  imageTokenId: number;
  /** Id of `<|vision_start|>` (151652; config.json vision_start_token_id). */
  visionStartId: number;
  /** Id of `<|vision_end|>` (151653; config.json vision_end_token_id). */
  visionEndId: number;
}

export interface BuildPromptOptions extends Partial<PromptTokenIds> {
  /** Append `<|im_start|>assistant\n`. Default true (a prompt for generation). */
  addGenerationPrompt?: boolean;
  /** Extra template variables (e.g. `{ add_vision_id: true }`). */
  variables?: Record<string, unknown>;
}

export interface ImageSpan {
  /** Index in inputIds of the image's first `<|image_pad|>`. */
  start: number;
  /** Number of `<|image_pad|>` tokens (= imageTokenCounts[k]). */
  length: number;
}

export interface BuiltPrompt {
  /** The rendered prompt with every `<|image_pad|>` already expanded. */
  text: string;
  inputIds: Int32Array;
  /** One span per image, in prompt order. */
  imageSpans: ImageSpan[];
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function requireId(tokenizer: Tokenizer, token: string): number {
  const id = tokenizer.tokenToId(token);
  if (id === undefined) throw new Error(`the tokenizer has no ${token} token`);
  return id;
}

/** Resolves the ids, defaulting to the tokenizer's Qwen2.5-VL special tokens. */
export function promptTokenIds(tokenizer: Tokenizer, given: Partial<PromptTokenIds> = {}): PromptTokenIds {
  return {
    imageTokenId: given.imageTokenId ?? requireId(tokenizer, '<|image_pad|>'),
    visionStartId: given.visionStartId ?? requireId(tokenizer, '<|vision_start|>'),
    visionEndId: given.visionEndId ?? requireId(tokenizer, '<|vision_end|>'),
  };
}

/**
 * Renders `messages` with `template`, expands the image placeholders and tokenises.
 * Throws when the number of `<|image_pad|>` placeholders in the rendered text differs from
 * imageTokenCounts.length ("the prompt has 2 images but 1 image was given"), when a count is
 * not a positive integer, or when an image's tokens are not enclosed in
 * `<|vision_start|>` … `<|vision_end|>` (the M-RoPE position ids rely on that layout).
 */
export function buildPrompt(
  tokenizer: Tokenizer,
  template: ChatTemplate | string,
  messages: readonly ChatMessage[],
  imageTokenCounts: readonly number[],
  options: BuildPromptOptions = {},
): BuiltPrompt {
  const ids = promptTokenIds(tokenizer, options);
  const imageToken = tokenizer.idToToken(ids.imageTokenId);
  if (imageToken === undefined) throw new Error(`imageTokenId ${ids.imageTokenId} is not in the vocabulary`);
  imageTokenCounts.forEach((n, k) => {
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`image ${k} has token count ${n}; expected a positive integer`);
  });

  const tpl = typeof template === 'string' ? new ChatTemplate(template) : template;
  const rendered = tpl.render(messages, {
    addGenerationPrompt: options.addGenerationPrompt ?? true,
    variables: options.variables ?? {},
  });

  const pieces = rendered.split(imageToken);
  const placeholders = pieces.length - 1;
  if (placeholders !== imageTokenCounts.length) {
    const given = imageTokenCounts.length;
    throw new Error(`the prompt has ${plural(placeholders, 'image')} but ${plural(given, 'image')} ${given === 1 ? 'was' : 'were'} given`);
  }
  let text = pieces[0]!;
  for (let k = 0; k < placeholders; k++) text += imageToken.repeat(imageTokenCounts[k]!) + pieces[k + 1]!;

  const inputIds = Int32Array.from(tokenizer.encode(text));

  // Locate each image's run and check the <|vision_start|> … <|vision_end|> frame.
  const imageSpans: ImageSpan[] = [];
  let k = 0;
  for (let i = 0; i < inputIds.length; i++) {
    if (inputIds[i] !== ids.imageTokenId) continue;
    const length = imageTokenCounts[k];
    if (length === undefined) throw new Error(`the prompt tokenises to more ${imageToken} tokens than the images need`);
    const end = i + length;
    for (let j = i; j < end; j++) {
      if (inputIds[j] !== ids.imageTokenId) throw new Error(`image ${k}: expected ${length} ${imageToken} tokens at ${i}, found fewer`);
    }
    if (inputIds[i - 1] !== ids.visionStartId || inputIds[end] !== ids.visionEndId) {
      throw new Error(`image ${k} is not enclosed in vision start/end tokens (${ids.visionStartId} … ${ids.visionEndId})`);
    }
    imageSpans.push({ start: i, length });
    k++;
    i = end - 1;
  }
  if (k !== imageTokenCounts.length) throw new Error(`the prompt tokenises to ${k} image runs, expected ${imageTokenCounts.length}`);
  return { text, inputIds, imageSpans };
}

/**
 * The user turn the SpatialThinker loader builds from an STVQA-7K `problem` (method.md §1.2):
 * every `<image>` is removed, a single `"<image> "` is prepended and the result is split on
 * `<image>`, giving [image, text] where the text keeps the leading space
 * (" You are a vision-language assistant …"). No system message: the template adds the default.
 */
export function datasetProblemToMessages(problem: string): ChatMessage[] {
  const prompt = '<image> ' + problem.replaceAll('<image>', '');
  const content: ContentPart[] = [];
  prompt.split('<image>').forEach((piece, i) => {
    if (i !== 0) content.push({ type: 'image' });
    if (piece.length > 0) content.push({ type: 'text', text: piece });
  });
  return [{ role: 'user', content }];
}

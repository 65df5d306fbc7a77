/**
 * Text and images in, text out: a Model with its directory's tokenizer, chat
 * template and image processor. This is what `spatialthinker generate`, the
 * trainer's rollouts and evaluation call.
 */
import { generateOptionsProblem } from './generate-options.js';
import { loadChatTemplate, type ChatMessage, type ChatTemplate } from '../tokenizer/chat-template.js';
import { buildPrompt } from '../tokenizer/prompt.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { loadImage, type RgbImage } from '../vision/image.js';
import { ImageProcessor } from '../vision/processor.js';
import { Model, type Completion, type GenerateOptions, type LoadOptions, type PromptInput } from './model.js';

export interface CompletionLogprobs {
  /** The completion's token ids (text is encoded without special tokens). */
  tokens: Int32Array;
  /** log p(token_j | request, tokens_<j), one per token. */
  logprobs: Float32Array;
}

export interface TextLogprobsOptions {
  /** Logits are divided by this before the softmax (default 1, the model's own distribution). */
  temperature?: number;
  signal?: AbortSignal;
}

export interface VisionRequest {
  /** Images in prompt order: decoded images, or paths / bytes to decode. */
  images?: readonly (RgbImage | string | Uint8Array)[];
  /** One user turn: the images, then this text. */
  text?: string;
  /** Or the whole conversation (image parts in `images` order). */
  messages?: readonly ChatMessage[];
}

export interface PreparedPrompt {
  input: PromptInput;
  text: string;
  images: RgbImage[];
}

export interface TextCompletion extends Completion {
  text: string;
}

export interface TextGenerateOptions extends Omit<GenerateOptions, 'onToken'> {
  /** Completions end before the first of these strings (it is not included). */
  stop?: readonly string[];
  /** Streams text as it is decoded. */
  onText?: (prompt: number, sample: number, text: string) => void;
}

export class VisionLanguageModel {
  private constructor(
    readonly model: Model,
    readonly tokenizer: Tokenizer,
    readonly template: ChatTemplate,
    readonly processor: ImageProcessor,
  ) {}

  static async load(dir: string, options: LoadOptions = {}): Promise<VisionLanguageModel> {
    options.onProgress?.({ phase: 'tokenizer', done: 0, total: 1 });
    const tokenizer = await Tokenizer.fromDirectory(dir);
    const [template, processor] = await Promise.all([loadChatTemplate(dir, tokenizer.config), ImageProcessor.fromDirectory(dir)]);
    options.onProgress?.({ phase: 'tokenizer', done: 1, total: 1 });
    const model = await Model.load(dir, options);
    return new VisionLanguageModel(model, tokenizer, template, processor);
  }

  async prepare(request: VisionRequest): Promise<PreparedPrompt> {
    const images = await Promise.all((request.images ?? []).map((i) => (typeof i === 'string' || i instanceof Uint8Array ? loadImage(i) : i)));
    const messages: ChatMessage[] = request.messages
      ? [...request.messages]
      : [{ role: 'user', content: [...images.map(() => ({ type: 'image' as const })), { type: 'text' as const, text: request.text ?? '' }] }];
    const processed = images.length > 0 ? await this.processor.process(images) : undefined;
    const config = this.model.config;
    const built = buildPrompt(this.tokenizer, this.template, messages, processed?.imageTokens ?? [], {
      imageTokenId: config.imageTokenId,
      visionStartId: config.visionStartTokenId,
      visionEndId: config.visionEndTokenId,
    });
    return {
      input: { ids: built.inputIds, ...(processed ? { images: { pixels: processed.pixelValues, gridThw: processed.gridThw } } : {}) },
      text: built.text,
      images,
    };
  }

  async generate(requests: readonly VisionRequest[], options: TextGenerateOptions = {}): Promise<TextCompletion[]> {
    const invalid = generateOptionsProblem(options);
    if (invalid) throw new RangeError(`generate: ${invalid}`);
    const prompts = await Promise.all(requests.map((r) => this.prepare(r)));
    const stops = options.stop ?? [];
    const stopTokenIds = options.stopTokenIds ?? [...new Set([...this.model.config.eosTokenIds, ...this.tokenizer.eosTokenIds])];
    // Per completion: streamed text so far, to spot stop strings early.
    const streams = new Map<string, { decoder: ReturnType<Tokenizer['createDecoder']>; text: string; stopped: boolean }>();
    const onToken =
      stops.length > 0 || options.onText
        ? (prompt: number, sample: number, token: number, stop: () => void) => {
            const key = `${prompt}/${sample}`;
            let s = streams.get(key);
            if (!s) streams.set(key, (s = { decoder: this.tokenizer.createDecoder({ skipSpecialTokens: true }), text: '', stopped: false }));
            if (s.stopped || token >= this.tokenizer.vocabSize) return;
            const piece = s.decoder.push(token);
            s.text += piece;
            if (stops.some((stop) => s.text.includes(stop))) {
              s.stopped = true;
              stop();
            }
            if (piece) options.onText?.(prompt, sample, piece);
          }
        : undefined;
    const completions = await this.model.generate(
      prompts.map((p) => p.input),
      { ...options, stopTokenIds, ...(onToken ? { onToken } : {}) },
    );
    if (!this.warnedNonFinite && completions.some((c) => c.logprobs.some((v) => Number.isNaN(v) || v === Infinity))) await this.warnNonFinite();
    return completions.map((c) => this.finish(c, stops));
  }

  private warnedNonFinite = false;

  /**
   * Non-finite log-probs mean the logits were NaN: the sampled tokens are
   * meaningless (NaN weights sampled token 0 without a word). Warns once per
   * model, naming the first parameter holding NaN or Inf when there is one.
   */
  private async warnNonFinite(): Promise<void> {
    this.warnedNonFinite = true;
    let culprit: string | undefined;
    for (const [name, data] of Object.entries(await this.model.parameters())) {
      if (data.some((v) => !Number.isFinite(v))) {
        culprit = name;
        break;
      }
    }
    process.emitWarning(
      `generation from ${this.model.dir} produced non-finite logits, so its tokens are meaningless: ` +
        (culprit ? `weight tensor "${culprit}" holds NaN or Inf` : 'the weights are finite, so an input or activation overflowed'),
      { code: 'SPATIALTHINKER_NONFINITE_LOGITS' },
    );
  }

  /**
   * The log-probs of a completion given a request (the same request generate
   * takes): text is encoded without special tokens; token ids are scored as
   * they are. An aborted call resolves with empty arrays.
   */
  async logprobs(request: VisionRequest, completion: string | Int32Array | readonly number[], options: TextLogprobsOptions = {}): Promise<CompletionLogprobs> {
    const prompt = await this.prepare(request);
    const tokens = typeof completion === 'string' ? Int32Array.from(this.tokenizer.encode(completion)) : Int32Array.from(completion);
    const [logprobs] = await this.model.logprobs([prompt.input], [tokens], {
      ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return logprobs ? { tokens, logprobs } : { tokens: new Int32Array(0), logprobs: new Float32Array(0) };
  }

  /** Decodes a completion, cutting it before the first stop string. */
  private finish(c: Completion, stops: readonly string[]): TextCompletion {
    const full = this.decodeKnown(c.tokens);
    let cut = -1;
    for (const stop of stops) {
      const at = full.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut < 0) return { ...c, text: full };
    // Keep the tokens up to the one that completed the stop string.
    let keep = c.tokens.length;
    for (let n = 1; n <= c.tokens.length; n++) {
      const prefix = this.decodeKnown(c.tokens.subarray(0, n));
      if (prefix.length >= cut + 1 && stops.some((s) => prefix.includes(s))) {
        keep = n;
        break;
      }
    }
    return {
      ...c,
      text: full.slice(0, cut),
      tokens: c.tokens.slice(0, keep),
      logprobs: c.logprobs.slice(0, keep),
      positions: c.positions.slice(0, Math.max(0, keep - 1)),
      finishReason: 'stop',
    };
  }

  /**
   * Text of sampled ids. The embedding may have more rows than the tokenizer
   * has ids (Qwen pads 151,665 to 151,936) and an untrained model can sample
   * those: they decode to nothing, as in vLLM.
   */
  decodeKnown(tokens: Int32Array): string {
    const size = this.tokenizer.vocabSize;
    return this.tokenizer.decode(Array.from(tokens).filter((id) => id < size), { skipSpecialTokens: true });
  }

  dispose(): Promise<void> {
    return this.model.dispose();
  }
}

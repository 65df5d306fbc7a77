/**
 * Hugging Face chat templates rendered with @huggingface/jinja.
 *
 * Template lookup for a model directory (`loadChatTemplate`), first match wins:
 *   1. dir/chat_template.json, its "chat_template" string (the processor template of the
 *      Qwen2.5-VL hub checkpoints);
 *   2. dir/chat_template.jinja (what newer transformers versions save);
 *   3. tokenizer_config.json "chat_template": a string, or a list of {name, template} (or a
 *      {name: template} object) from which "default" is taken;
 *   4. the project's own Qwen2.5-VL template (QWEN2_5_VL_CHAT_TEMPLATE).
 * Because the directory's own template wins, a real Qwen2.5-VL checkpoint directory renders
 * with exactly the template it ships; the built-in one only fills in for directories without
 * one (such as a bare tokenizer copied next to converted weights).
 *
 * Rendering mirrors transformers' `apply_chat_template(tokenize=False)`: the template sees
 * `messages`, `add_generation_prompt`, the special-token strings of tokenizer_config.json
 * (`bos_token`, `eos_token`, `pad_token`, `unk_token`) and any extra keyword (e.g.
 * `add_vision_id`); @huggingface/jinja applies trim_blocks / lstrip_blocks like transformers and
 * provides `raise_exception` and `strftime_now`.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { QWEN2_5_VL_CHAT_TEMPLATE } from './qwen2_5_vl_chat_template.js';
import type { TokenizerConfigJson } from './tokenizer.js';

export type ChatRole = 'system' | 'user' | 'assistant';
export interface ImagePart {
  type: 'image';
}
export interface TextPart {
  type: 'text';
  text: string;
}
export type ContentPart = ImagePart | TextPart;
export interface ChatMessage {
  role: ChatRole;
  content: string | ContentPart[];
}

/** Where a template came from. */
export type ChatTemplateOrigin =
  | 'chat_template.json'
  | 'chat_template.jinja'
  | 'tokenizer_config.json'
  | 'builtin-qwen2.5-vl'
  | 'inline';

export interface RenderOptions {
  /** Append the assistant header (`<|im_start|>assistant\n`). Default false, as in transformers. */
  addGenerationPrompt?: boolean;
  /** Extra template variables (e.g. `{ add_vision_id: true }`); they override the defaults. */
  variables?: Record<string, unknown>;
}

const ROLES: ReadonlySet<string> = new Set(['system', 'user', 'assistant']);

// One line: JSON.parse and the template parser quote text around an error, newlines included.
function errorMessage(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s*[\r\n]+\s*/g, ' ');
}

function tokenString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

/** The special-token strings transformers passes to every chat template. */
export function specialTokenVariables(config: TokenizerConfigJson | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!config) return out;
  for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token'] as const) {
    const value = tokenString(config[key]);
    if (value !== undefined) out[key] = value;
  }
  return out;
}

/** Checks the message list and returns plain copies for the template. */
export function validateMessages(messages: readonly ChatMessage[]): ChatMessage[] {
  if (!Array.isArray(messages)) throw new TypeError('messages must be an array');
  return messages.map((m, i) => {
    if (m === null || typeof m !== 'object') throw new TypeError(`message ${i} must be an object`);
    if (typeof m.role !== 'string' || !ROLES.has(m.role)) {
      throw new TypeError(`message ${i} has role ${JSON.stringify(m.role)}; expected system, user or assistant`);
    }
    if (typeof m.content === 'string') return { role: m.role, content: m.content };
    if (!Array.isArray(m.content)) throw new TypeError(`message ${i} content must be a string or an array of parts`);
    const list: readonly unknown[] = m.content;
    const parts = list.map((p, j): ContentPart => {
      const part = (p !== null && typeof p === 'object' ? p : {}) as { type?: unknown; text?: unknown };
      if (part.type === 'image') return { type: 'image' };
      if (part.type === 'text' && typeof part.text === 'string') return { type: 'text', text: part.text };
      throw new TypeError(`message ${i} part ${j} must be {type: 'image'} or {type: 'text', text: string}`);
    });
    return { role: m.role, content: parts };
  });
}

/**
 * Bounds on one render. A template comes from the model directory, which may
 * not be trusted: `range(100000000)` or a loop doubling a string would
 * otherwise exhaust the heap and abort the process. Real chat templates take
 * a few thousand steps and produce a few times their messages' text.
 */
export const TEMPLATE_LIMITS = Object.freeze({
  /** Interpreter steps (expressions and statements evaluated). */
  steps: 250_000,
  /** Items one range() call may produce. */
  rangeItems: 100_000,
  /** Characters all evaluated strings may add up to, beyond 16 x the messages' own text. */
  characters: 64 << 20,
});

export class ChatTemplateLimitError extends Error {
  override name = 'ChatTemplateLimitError';
}

type RuntimeValue = ReturnType<Interpreter['evaluate']>;

/**
 * An interpreter that counts its steps (every expression, statement and block,
 * so a loop with an empty body counts too) and the characters of the strings
 * it makes. The counted methods are wrapped on the instance: evaluateBlock is
 * private in the library's typings.
 */
function boundedInterpreter(env: Environment, characterBudget: number): Interpreter {
  const interpreter = new Interpreter(env);
  const hooks = interpreter as unknown as Record<'evaluate' | 'evaluateBlock', (...args: unknown[]) => RuntimeValue>;
  let steps = 0;
  let characters = 0;
  const step = () => {
    if (++steps > TEMPLATE_LIMITS.steps) throw new ChatTemplateLimitError(`rendering took more than ${TEMPLATE_LIMITS.steps} steps`);
  };
  const counted = (value: RuntimeValue): RuntimeValue => {
    if (typeof value.value === 'string') {
      characters += value.value.length;
      if (characters > characterBudget)
        throw new ChatTemplateLimitError(`rendering produced more than ${characterBudget} characters`);
    }
    return value;
  };
  for (const name of ['evaluate', 'evaluateBlock'] as const) {
    const original = hooks[name].bind(interpreter);
    hooks[name] = (...args: unknown[]) => {
      step();
      return counted(original(...args));
    };
  }
  return interpreter;
}

function boundedRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (![start, stop, step].every(Number.isFinite)) throw new Error('range() arguments must be finite numbers');
  if (step === 0) throw new Error('range() step must not be zero');
  const items = Math.max(0, Math.ceil((stop - start) / step));
  if (items > TEMPLATE_LIMITS.rangeItems)
    throw new ChatTemplateLimitError(`range() of ${items} items (at most ${TEMPLATE_LIMITS.rangeItems})`);
  return Array.from({ length: items }, (_, i) => start + i * step);
}

// The directives @huggingface/jinja's own strftime_now supports.
function strftimeNow(format: string): string {
  const date = new Date();
  const pad2 = (n: number) => String(n).padStart(2, '0');
  return String(format).replace(/%[YmdbBHM%]/g, (token) => {
    switch (token) {
      case '%Y': return String(date.getFullYear());
      case '%m': return pad2(date.getMonth() + 1);
      case '%d': return pad2(date.getDate());
      case '%b': return new Intl.DateTimeFormat(undefined, { month: 'short' }).format(date);
      case '%B': return new Intl.DateTimeFormat(undefined, { month: 'long' }).format(date);
      case '%H': return pad2(date.getHours());
      case '%M': return pad2(date.getMinutes());
      default: return '%';
    }
  });
}

/** Template.render with the library's globals, but a bounded range() and interpreter. */
function renderBounded(template: Template, context: Record<string, unknown>, characterBudget: number): string {
  const globals = new Environment();
  const builtins: Record<string, unknown> = {
    false: false,
    true: true,
    none: null,
    False: false,
    True: true,
    None: null,
    raise_exception: (message: unknown) => {
      throw new Error(String(message));
    },
    range: boundedRange,
    strftime_now: strftimeNow,
  };
  for (const [key, value] of Object.entries(builtins)) globals.set(key, value);
  // The render's variables live in a child scope, so they may shadow a builtin.
  const env = new Environment(globals);
  for (const [key, value] of Object.entries(context)) env.set(key, value);
  return String(boundedInterpreter(env, characterBudget).run(template.parsed).value);
}

function textLength(messages: readonly ChatMessage[]): number {
  let n = 0;
  for (const m of messages) {
    if (typeof m.content === 'string') n += m.content.length;
    else for (const part of m.content) if (part.type === 'text') n += part.text.length;
  }
  return n;
}

export class ChatTemplate {
  readonly source: string;
  readonly origin: ChatTemplateOrigin;
  /** The file the template was read from, when it came from one. */
  readonly path: string | undefined;
  /** Variables every render gets (special-token strings); RenderOptions.variables override them. */
  readonly defaults: Readonly<Record<string, unknown>>;
  readonly #compiled: Template;

  constructor(
    source: string,
    { origin = 'inline', path, defaults = {} }: { origin?: ChatTemplateOrigin; path?: string; defaults?: Record<string, unknown> } = {},
  ) {
    if (typeof source !== 'string' || source.length === 0) {
      throw new Error(`chat template ${path ?? origin} is empty`);
    }
    this.source = source;
    this.origin = origin;
    this.path = path;
    this.defaults = Object.freeze({ ...defaults });
    try {
      this.#compiled = new Template(source);
    } catch (err) {
      throw new Error(`cannot parse chat template ${path ?? origin}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** The project's Qwen2.5-VL template (shared/spec/qwen25vl.md §2). */
  static qwen25vl(defaults: Record<string, unknown> = {}): ChatTemplate {
    return new ChatTemplate(QWEN2_5_VL_CHAT_TEMPLATE, { origin: 'builtin-qwen2.5-vl', defaults });
  }

  render(messages: readonly ChatMessage[], { addGenerationPrompt = false, variables = {} }: RenderOptions = {}): string {
    const checked = validateMessages(messages);
    const context: Record<string, unknown> = {
      ...this.defaults,
      ...variables,
      messages: checked,
      add_generation_prompt: addGenerationPrompt,
    };
    try {
      return renderBounded(this.#compiled, context, TEMPLATE_LIMITS.characters + 16 * textLength(checked));
    } catch (err) {
      throw new Error(`cannot render chat template ${this.path ?? this.origin}: ${errorMessage(err)}`, { cause: err });
    }
  }
}

/** Renders `template` (a ChatTemplate or Jinja source) with `messages`. */
export function renderChatTemplate(
  template: ChatTemplate | string,
  messages: readonly ChatMessage[],
  options: RenderOptions = {},
): string {
  const t = typeof template === 'string' ? new ChatTemplate(template) : template;
  return t.render(messages, options);
}

/**
 * The template held by a tokenizer_config.json, or undefined when it has none. A list of
 * {name, template} (or a {name: template} object) yields its "default" entry.
 */
export function chatTemplateFromTokenizerConfig(config: TokenizerConfigJson | undefined, where = 'tokenizer_config.json'): string | undefined {
  const value = config?.chat_template;
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  let named: Map<string, unknown>;
  if (Array.isArray(value)) {
    named = new Map(
      value.map((entry, i) => {
        if (entry === null || typeof entry !== 'object' || typeof (entry as { name?: unknown }).name !== 'string') {
          throw new Error(`chat template list in ${where}: entry ${i} has no name`);
        }
        const e = entry as { name: string; template?: unknown };
        return [e.name, e.template];
      }),
    );
  } else if (typeof value === 'object') {
    named = new Map(Object.entries(value as Record<string, unknown>));
  } else {
    throw new Error(`chat_template in ${where} must be a string or a list of {name, template}`);
  }
  if (!named.has('default')) {
    throw new Error(`${where} has chat templates ${JSON.stringify([...named.keys()])} but none named "default"`);
  }
  const template = named.get('default');
  if (typeof template !== 'string') throw new Error(`the "default" chat template in ${where} is not a string`);
  return template;
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read chat template ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * Finds the chat template of a model directory (order in the module comment). When
 * `tokenizerConfig` is not given, dir/tokenizer_config.json is read if it exists.
 */
export async function loadChatTemplate(dir: string, tokenizerConfig?: TokenizerConfigJson): Promise<ChatTemplate> {
  const configPath = join(dir, 'tokenizer_config.json');
  let config = tokenizerConfig;
  if (config === undefined) {
    const text = await readOptional(configPath);
    if (text !== undefined) {
      try {
        config = JSON.parse(text) as TokenizerConfigJson;
      } catch (err) {
        throw new Error(`cannot read chat template ${configPath}: invalid JSON: ${errorMessage(err)}`, { cause: err });
      }
    }
  }
  const defaults = specialTokenVariables(config);

  const jsonPath = join(dir, 'chat_template.json');
  const jsonText = await readOptional(jsonPath);
  if (jsonText !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(jsonText);
    } catch (err) {
      throw new Error(`cannot read chat template ${jsonPath}: invalid JSON: ${errorMessage(err)}`, { cause: err });
    }
    const source = (parsed as { chat_template?: unknown } | null)?.chat_template;
    if (typeof source !== 'string') throw new Error(`cannot read chat template ${jsonPath}: no "chat_template" string`);
    return new ChatTemplate(source, { origin: 'chat_template.json', path: jsonPath, defaults });
  }

  const jinjaPath = join(dir, 'chat_template.jinja');
  const jinja = await readOptional(jinjaPath);
  if (jinja !== undefined) return new ChatTemplate(jinja, { origin: 'chat_template.jinja', path: jinjaPath, defaults });

  const fromConfig = chatTemplateFromTokenizerConfig(config, configPath);
  if (fromConfig !== undefined) return new ChatTemplate(fromConfig, { origin: 'tokenizer_config.json', path: configPath, defaults });

  return ChatTemplate.qwen25vl(defaults);
}

/**
 * The configuration reference, generated from the schema: docs/config.md
 * (every key with its type, default and meaning) and docs/config.schema.json
 * (a JSON Schema editors validate YAML against). `npm run docs:config` writes
 * both; a test checks the committed files are current.
 */
import { z } from 'zod';
import { trainConfigSchema } from './config.js';
import { ALIASES, NOT_APPLICABLE } from './config-compat.js';
import { KEY_DOCS } from './config-docs.js';

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  default?: unknown;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  items?: JsonSchema;
  prefixItems?: JsonSchema[];
  additionalProperties?: JsonSchema | boolean;
  description?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
};

/** Sections the reference documents key by key; other objects are one row. */
const OPAQUE = new Set(['worker.rollout.val_override_config', 'worker.reward.weights']);

/** The meaning of a dotted key, or undefined when none is written. */
export function keyMeaning(key: string): string | undefined {
  if (KEY_DOCS[key] !== undefined) return KEY_DOCS[key];
  if (NOT_APPLICABLE[key] !== undefined) return `Accepted, not applicable here: ${NOT_APPLICABLE[key]}.`;
  const alias = ALIASES.find((a) => a.from === key);
  if (alias) return `Read as ${alias.to} (${alias.why}).`;
  return undefined;
}

function rawSchema(): JsonSchema {
  return z.toJSONSchema(trainConfigSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
}

interface Row {
  key: string;
  schema: JsonSchema;
  required: boolean;
}

/** The documented keys in schema order: a key listed as not applicable stands for its whole section. */
function rows(schema: JsonSchema = rawSchema()): Row[] {
  const out: Row[] = [];
  const walk = (node: JsonSchema, path: string[], required: boolean) => {
    const key = path.join('.');
    const isSection = node.type === 'object' && node.properties !== undefined;
    if (path.length > 0 && (!isSection || OPAQUE.has(key) || keyMeaning(key) !== undefined)) {
      out.push({ key, schema: node, required });
      return;
    }
    for (const [name, child] of Object.entries(node.properties ?? {})) walk(child, [...path, name], (node.required ?? []).includes(name) && !('default' in child));
  };
  walk(schema, [], true);
  return out;
}

/** Keys of the schema with no meaning written (the reference's test lists them). */
export function undocumentedKeys(): string[] {
  return rows().filter((r) => keyMeaning(r.key) === undefined).map((r) => r.key);
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' \| ');
  if (s.anyOf) return s.anyOf.map(typeOf).join(' \| ');
  if (Array.isArray(s.type)) return s.type.join(' \| ');
  if (s.type === 'array') return s.prefixItems ? `[${s.prefixItems.map(typeOf).join(', ')}]` : `${s.items ? typeOf(s.items) : 'any'}[]`;
  if (s.type === 'integer' || s.type === 'number') {
    const low = s.exclusiveMinimum !== undefined ? `> ${s.exclusiveMinimum}` : s.minimum !== undefined && s.minimum > -MAX_SAFE ? `>= ${s.minimum}` : '';
    const high = s.maximum !== undefined && s.maximum < MAX_SAFE ? `<= ${s.maximum}` : '';
    const range = [low, high].filter(Boolean).join(', ');
    return range ? `${s.type} (${range})` : s.type;
  }
  if (s.type === 'object') return 'mapping';
  return s.type ?? 'any';
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** docs/config.md. */
export function configReferenceMarkdown(): string {
  const lines = [
    '# Configuration reference',
    '',
    '<!-- Generated from lib/rl/config.ts by `npm run docs:config`; do not edit by hand. -->',
    '',
    'The trainer reads EasyR1\'s configuration layout (`spatialthinker train --config run.yaml section.key=value ...`).',
    'Every EasyR1 key is accepted: those marked "accepted, not applicable here" are listed once in the run\'s log',
    'and in `--print-config`, and change nothing. Values that ask for what is not built (LoRA, Jinja prompt files, ...)',
    'are refused by name. A JSON Schema for editors is in [config.schema.json](config.schema.json).',
  ];
  let section = '';
  for (const row of rows()) {
    const top = row.key.split('.').slice(0, row.key.startsWith('worker.') ? 2 : 1).join('.');
    if (top !== section) {
      section = top;
      lines.push('', `## ${section}`, '', '| key | type | default | meaning |', '| --- | --- | --- | --- |');
    }
    const fallback = row.required ? 'required' : 'unset';
    const value = 'default' in row.schema ? `\`${JSON.stringify(row.schema.default)}\`` : fallback;
    lines.push(`| \`${row.key}\` | ${cell(typeOf(row.schema))} | ${cell(value)} | ${cell(keyMeaning(row.key) ?? '')} |`);
  }
  return lines.join('\n') + '\n';
}

/** docs/config.schema.json: the input schema with each key's meaning as its description. */
export function configJsonSchema(): string {
  const schema = rawSchema();
  const describe = (node: JsonSchema, path: string[]) => {
    for (const [name, child] of Object.entries(node.properties ?? {})) {
      const key = [...path, name].join('.');
      const meaning = keyMeaning(key);
      if (meaning !== undefined) child.description = meaning;
      describe(child, [...path, name]);
    }
  };
  describe(schema, []);
  return JSON.stringify({ ...schema, title: 'spatialthinker train/sft configuration (EasyR1 layout)' }, null, 2) + '\n';
}

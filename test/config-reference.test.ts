import t from 'tap';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { configJsonSchema, configReferenceMarkdown, undocumentedKeys } from '../lib/rl/config-reference.js';

t.test('every key of the schema has a meaning', async (t) => {
  t.same(undocumentedKeys(), [], 'write the missing ones in lib/rl/config-docs.ts');
});

t.test('docs/config.md and docs/config.schema.json are current (npm run docs:config)', async (t) => {
  t.equal(readFileSync('docs/config.md', 'utf8'), configReferenceMarkdown(), 'docs/config.md');
  t.equal(readFileSync('docs/config.schema.json', 'utf8'), configJsonSchema(), 'docs/config.schema.json');
});

t.test('the JSON Schema knows every key of the reference config, with meanings', async (t) => {
  const schema = JSON.parse(configJsonSchema()) as { properties: Record<string, unknown> };
  const reference = parseYaml(readFileSync('test/fixtures/spatialthinker-config.yaml', 'utf8')) as Record<string, unknown>;
  type Node = { properties?: Record<string, Node>; additionalProperties?: unknown; description?: string; anyOf?: Node[] };
  const check = (value: unknown, node: Node | undefined, path: string[]) => {
    if (path.length > 0) t.ok(node, `${path.join('.')} is in the schema`);
    if (!node || typeof value !== 'object' || value === null || Array.isArray(value)) return;
    if (!node.properties) return;
    for (const [k, v] of Object.entries(value)) check(v, node.properties[k], [...path, k]);
  };
  check(reference, schema as Node, []);
  const md = configReferenceMarkdown();
  t.match(md, /\| `trainer\.save_limit` \| integer \(>= -1\) \| `3` \| Checkpoints kept, the newest; -1 or 0: all\. \|/);
  t.match(md, /\| `trainer\.n_gpus_per_node` \| .* Accepted, not applicable here: data-parallel training is not built/);
});

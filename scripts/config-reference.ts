/** Writes docs/config.md and docs/config.schema.json from the configuration schema (`npm run docs:config`). */
import { writeFileSync } from 'node:fs';
import { configJsonSchema, configReferenceMarkdown, undocumentedKeys } from '../lib/rl/config-reference.js';

const missing = undocumentedKeys();
if (missing.length > 0) {
  process.stderr.write(`keys with no meaning in lib/rl/config-docs.ts: ${missing.join(', ')}\n`);
  process.exit(1);
}
writeFileSync('docs/config.md', configReferenceMarkdown());
writeFileSync('docs/config.schema.json', configJsonSchema());
process.stdout.write('wrote docs/config.md and docs/config.schema.json\n');

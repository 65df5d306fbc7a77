/**
 * Values of a run's config.yaml by dotted path, for the report's captions
 * (decoding, batch sizes). The file is the block YAML that runs write (one
 * `key: value` per line, nesting by indentation), so this reads that, not YAML
 * in general: flow collections and multi-line strings come back as written.
 */
export function configValue(yaml: string | undefined, path: string): string | undefined {
  if (yaml === undefined) return undefined;
  const target = path.split('.');
  const stack: { indent: number; key: string }[] = [];
  for (const line of yaml.split('\n')) {
    const match = /^( *)([A-Za-z_][\w.-]*):(?:\s+(.*?))?\s*$/.exec(line);
    if (!match) continue;
    const indent = match[1]!.length;
    while (stack.length > 0 && stack[stack.length - 1]!.indent >= indent) stack.pop();
    stack.push({ indent, key: match[2]! });
    if (stack.length === target.length && stack.every((s, i) => s.key === target[i])) {
      const value = match[3];
      if (value === undefined || value === '') return undefined;
      return value.replace(/^(['"])(.*)\1$/, '$2');
    }
  }
  return undefined;
}

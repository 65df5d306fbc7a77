/**
 * Imported for its effect by tests that write parquet. tap's TypeScript
 * loader (a ts-node fork) resolves package `exports` with an old copy of
 * Node's resolver that lacks subpath patterns like "./src/*.js", which
 * hyparquet-writer needs for its `hyparquet/src/*.js` imports. This resolves
 * those with Node's own resolver (a no-op under tsx or plain node, where the
 * library runs).
 */
import { register } from 'node:module';

register(
  'data:text/javascript,' +
    encodeURIComponent(`
      import { createRequire } from 'node:module';
      import { pathToFileURL } from 'node:url';
      export async function resolve(specifier, context, next) {
        if (specifier.startsWith('hyparquet/src/') && context.parentURL)
          return { url: pathToFileURL(createRequire(context.parentURL).resolve(specifier)).href, format: 'module', shortCircuit: true };
        return next(specifier, context);
      }`),
);

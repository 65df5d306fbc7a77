'use strict';
// require('spatialthinker'): the package is an ES module. Node versions that
// can require() an ES module get it; the others get one line that says how to
// load it, instead of "No exports main defined" or ERR_REQUIRE_ESM.
try {
  module.exports = require('../dist/index.js');
} catch (error) {
  const code = error && error.code;
  if (code !== 'ERR_REQUIRE_ESM' && code !== 'ERR_REQUIRE_ASYNC_MODULE') throw error;
  throw new Error(
    "spatialthinker is an ES module: use `import { ... } from 'spatialthinker'`, " +
      "or `const st = await import('spatialthinker')` from CommonJS",
    { cause: error },
  );
}

// Prints the sources of a CPU-only build, one per line, for binding.gyp (which
// cannot glob): every .cpp under native/, with each CUDA source's
// *_disabled.cpp twin instead of the .cu.
const { readdirSync } = require('node:fs');
const { join, relative } = require('node:path');

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.cpp') ? [join(dir, e.name)] : [],
  );
}

const root = join(__dirname, '..');
// native/tests/ holds C++ test programs, not addon sources.
for (const file of walk(__dirname).sort()) if (!file.includes(`${join(__dirname, 'tests')}`)) console.log(relative(root, file));

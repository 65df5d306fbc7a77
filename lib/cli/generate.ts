/** `spatialthinker generate`: one image and a question through a model directory. */
import { parseArgs } from './args.js';
import { VisionLanguageModel } from '../engine/pipeline.js';
import { generateOptionsProblem, threadsProblem } from '../engine/generate-options.js';
import { drawBoxes, sceneBoxes } from '../report/boxes.js';
import { UsageError } from './errors.js';
import { modelDirectory } from './model-arg.js';

const HELP = `usage: spatialthinker generate --model DIR --question TEXT [--image IMG ...] [options]

Prints the completion of a Qwen2.5-VL model directory (config.json,
safetensors, tokenizer.json, tokenizer_config.json, preprocessor_config.json)
for the images and question, streaming it as it is generated.

options:
  --model DIR|ID         the model directory, or a Hub id (Org/Name) in the local
                         Hugging Face cache (required)
  --image IMG            an image (JPEG, PNG, WebP); repeat for several
  --question TEXT        the user's text (required)
  --max-new-tokens N     default 1024
  --temperature T        default 0 (greedy); > 0 samples
  --top-p P, --top-k K   nucleus / top-k sampling limits
  --seed N               sampling seed (default 0)
  --samples N            completions to draw (default 1)
  --stop TEXT            stop before this string (repeatable)
  --boxes OUT.png        draw each completion's predicted <scene> boxes on the
                         first image (as the model saw it, enlarged to 512 px):
                         OUT.png, or OUT-0.png, OUT-1.png, ... with --samples N
  --threads N            engine threads (default: all cores)
  --device NAME          the engine backend: cpu (default) or cuda
`;

/** OUT.png for sample i: OUT-i.png (the index before the extension, or appended when there is none). */
function samplePath(path: string, index: number): string {
  const dot = path.lastIndexOf('.');
  return dot > path.lastIndexOf('/') + 1 ? `${path.slice(0, dot)}-${index}${path.slice(dot)}` : `${path}-${index}`;
}

export async function generateCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      image: { type: 'string', multiple: true },
      question: { type: 'string' },
      'max-new-tokens': { type: 'string', default: '1024' },
      temperature: { type: 'string', default: '0' },
      'top-p': { type: 'string', default: '1' },
      'top-k': { type: 'string', default: '0' },
      seed: { type: 'string', default: '0' },
      samples: { type: 'string', default: '1' },
      stop: { type: 'string', multiple: true },
      boxes: { type: 'string' },
      threads: { type: 'string' },
      device: { type: 'string', default: 'cpu' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (!values.model || values.question === undefined) throw new UsageError(`--model and --question are required (--help shows the usage)`);
  const number = (name: string, text: string, integer: boolean) => {
    const n = Number(text);
    if (text.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < 0)
      throw new UsageError(`--${name} must be a non-negative ${integer ? 'integer' : 'number'} (got "${text}")`);
    return n;
  };
  // The engine's thread pool reads this when it starts, on the first native call.
  if (values.threads !== undefined) {
    const threads = number('threads', values.threads, true);
    const problem = threadsProblem(threads);
    if (problem) throw new UsageError(`--${problem}`);
    process.env['SPATIALTHINKER_THREADS'] = String(threads);
  }
  const temperature = number('temperature', values.temperature, false);
  const samples = number('samples', values.samples, true);
  const sampling = {
    topP: number('top-p', values['top-p'], false),
    topK: number('top-k', values['top-k'], true),
    seed: number('seed', values.seed, true),
    samples,
    maxNewTokens: number('max-new-tokens', values['max-new-tokens'], true),
  };
  const invalid = generateOptionsProblem(sampling);
  if (invalid) {
    const flag = { samples: '--samples', maxNewTokens: '--max-new-tokens', topK: '--top-k', topP: '--top-p', temperature: '--temperature' };
    throw new UsageError(invalid.replace(/^\w+/, (name) => flag[name as keyof typeof flag] ?? name));
  }
  const device = values.device;
  if (device !== 'cpu' && device !== 'cuda') throw new UsageError(`--device must be cpu or cuda, not "${device}"`);
  const vlm = await VisionLanguageModel.load(modelDirectory(values.model, '--model'), { device });
  try {
    const request = { images: values.image ?? [], text: values.question };
    const streaming = samples === 1 && process.stdout.isTTY;
    const [first, ...rest] = await vlm.generate([request], {
      greedy: temperature === 0,
      temperature: temperature === 0 ? 1 : temperature,
      ...sampling,
      ...(values.stop ? { stop: values.stop } : {}),
      ...(streaming ? { onText: (_p: number, _s: number, text: string) => process.stdout.write(text) } : {}),
    });
    const completions = [first, ...rest].filter((c) => c !== undefined);
    if (streaming) process.stdout.write('\n');
    else
      completions.forEach((c, i) => process.stdout.write((samples > 1 ? `--- sample ${i} (${c.finishReason})\n` : '') + c.text + '\n'));
    const last = completions[0];
    process.stderr.write(`${last?.tokens.length ?? 0} tokens, finished by ${last?.finishReason ?? '?'}\n`);
    if (values.boxes) {
      const prepared = await vlm.prepare(request);
      const image = prepared.images[0];
      if (!image) throw new UsageError('--boxes needs an --image to draw on');
      for (const [i, completion] of completions.entries()) {
        const out = completions.length === 1 ? values.boxes : samplePath(values.boxes, i);
        const boxes = sceneBoxes(completion.text);
        await drawBoxes(image, boxes, out);
        process.stderr.write(`drew ${boxes.length} predicted boxes on ${out}\n`);
      }
    }
  } finally {
    await vlm.dispose();
  }
}

import t from 'tap';
import { gradeAnswer, normalizePrm } from '../lib/eval/grade-answer.js';
import { parseListLiteral } from '../lib/eval/fields.js';
import { answerKeyLetter, extractFinalAnswer, resolveOption, scoreCompletion, type AnswerKey } from '../lib/eval/matching.js';

t.test('extraction (method.md §5.4 steps 1-4)', async (t) => {
  const cases: [string, string | null][] = [
    ['<think>x</think><answer>(B) behind</answer>', '(B) behind'],
    ['text <answer>  B \n</answer> more', 'B'],
    ['no tags, just (B) behind', 'no tags, just (B) behind'],
    ['I compared them. Answer: (C)', '(C)'],
    ['Answer: first guess. Then: Answer: (D) top', '(D) top'],
    ['<answer>Answer: (A) left</answer>', '(A) left'],
    ['(A) left</answer> trailing', '(A) left'],
    ['reasoning <answer>(A) left', '(A) left'],
    ['<answer>A</answer> then <answer>B</answer>', 'B'],
    ['<answer>A</answer> then <answer>B', 'B'],
    ['<answer></answer>', ''],
    ['', null],
    ['Answer:', null],
  ];
  for (const [completion, want] of cases) t.equal(extractFinalAnswer(completion), want, JSON.stringify(completion));
  t.equal(extractFinalAnswer(undefined), null, 'a failed generation');
});

const mc = (answer: string, choices = ['behind', 'in front of', 'beside']): AnswerKey => ({ kind: 'multiple-choice', answer, choices });

t.test('multiple choice: corrected vs reference matching', async (t) => {
  // [ground truth, completion, corrected, reference]
  const cases: [string, string, boolean, boolean][] = [
    ['(C)', '<answer>C</answer>', true, false], // bare letter: the reference maps it to A
    ['(C)', '<answer>(C)</answer>', true, false],
    ['(C)', '<answer>C.</answer>', true, false],
    ['(C)', '<answer>c)</answer>', true, false],
    ['(C)', '<answer>(C) beside</answer>', true, true],
    ['(C)', '<answer>(C) beside.</answer>', true, false], // trailing period: no exact option text in the reference
    ['(C)', '<answer>(C) Beside </answer>', true, true],
    ['(C)', '<answer>beside</answer>', true, true],
    ['(C)', '<answer>{beside}</answer>', true, true],
    ['(C)', 'beside', true, true], // missing tags: the whole reply is the answer
    ['(C)', 'Let me look. Answer: C', true, false], // Answer: prefix
    ['(C)', 'The answer is C', false, false],
    ['(C)', '<answer>(A) behind</answer>', false, false],
    ['(C)', '', false, false],
    ['(A)', '<answer>(D) on top</answer>', false, true], // a label beyond the options: the reference says A
    ['(A)', '<answer>nonsense</answer>', false, true],
    ['(A)', '<answer>(B) behind</answer>', true, true], // the option text wins over the label, as in the reference
    ['(A)', '<answer>(B) beside-ish</answer>', false, true], // labelled B with a paraphrase: B (corrected), A (reference)
    ['A', '<answer>A</answer>', true, true],
    ['B', '<answer>in front of</answer>', true, true],
  ];
  for (const [gt, completion, corrected, reference] of cases) {
    t.equal(scoreCompletion(mc(gt), completion, 'corrected').correct, corrected, `corrected: gt ${gt}, ${JSON.stringify(completion)}`);
    t.equal(scoreCompletion(mc(gt), completion, 'reference').correct, reference, `reference: gt ${gt}, ${JSON.stringify(completion)}`);
  }
  const unmatched = scoreCompletion(mc('(C)'), '<answer>somewhere</answer>', 'corrected');
  t.same(unmatched, { extracted: 'somewhere', prediction: null, groundTruth: 'C', correct: false }, 'an answer that names no option has no prediction');
  t.same(scoreCompletion(mc('(C)'), '<answer>somewhere</answer>', 'reference'), { extracted: 'somewhere', prediction: 'A', groundTruth: 'C', correct: false });
  t.same(scoreCompletion(mc('(C)'), 'Answer:', 'reference'), { extracted: null, prediction: null, groundTruth: '(C)', correct: false }, 'failed extraction keeps the raw answer');
});

t.test('options that are letters (BLINK Relative_Depth)', async (t) => {
  const key = mc('(A)', ['A', 'B']);
  t.equal(scoreCompletion(key, '<answer>A</answer>', 'corrected').correct, true);
  t.equal(scoreCompletion(key, '<answer>B</answer>', 'corrected').correct, false);
  t.equal(scoreCompletion(key, '<answer>(B)</answer>', 'corrected').correct, false);
  t.equal(scoreCompletion(key, '<answer>(B)</answer>', 'reference').correct, true, 'the reference strips "(B)" to nothing and falls back to A');
  t.equal(scoreCompletion(mc('(B)', ['A', 'B']), '<answer>b</answer>', 'reference').correct, true);
});

t.test('reference: a multi-character ground truth keeps its first letter', async (t) => {
  // answer "A. behind" -> "a"; the prediction "behind" maps to A.
  t.equal(scoreCompletion(mc('A. behind'), '<answer>behind</answer>', 'reference').correct, true);
  t.equal(answerKeyLetter(mc('A. behind')), undefined, 'corrected matching refuses such an answer key (the loader reports it)');
  t.throws(() => scoreCompletion(mc('A. behind'), '<answer>behind</answer>', 'corrected'), /names none of the options/);
});

t.test('yes/no (HallusionBench)', async (t) => {
  const yes: AnswerKey = { kind: 'yes-no', answer: '1', choices: ['Yes', 'No'] };
  const no: AnswerKey = { kind: 'yes-no', answer: '0' };
  t.equal(scoreCompletion(yes, '<answer>(A) Yes</answer>', 'corrected').correct, true);
  t.equal(scoreCompletion(yes, '<answer>yes</answer>', 'reference').correct, true);
  t.equal(scoreCompletion(no, '<answer>No.</answer>', 'corrected').correct, true);
  t.equal(scoreCompletion(no, '<answer>No.</answer>', 'reference').correct, false, 'trailing period -> A in the reference');
  t.equal(scoreCompletion(no, '<answer>B</answer>', 'corrected').correct, true);
  t.equal(scoreCompletion(no, '<answer>B</answer>', 'reference').correct, false);
  t.equal(scoreCompletion({ kind: 'yes-no', answer: '1.' }, '<answer>Yes</answer>', 'corrected').correct, true, '"1." is yes');
  t.equal(answerKeyLetter({ kind: 'yes-no', answer: '2' }), undefined);
});

t.test('open answers use the reference tests in both modes', async (t) => {
  const open = (answer: string): AnswerKey => ({ kind: 'open', answer });
  const cases: [string, string, boolean][] = [
    ['A', '<answer>A</answer>', true],
    ['A', '<answer>a</answer>', true],
    ['A', '<answer>(A) the truck</answer>', true], // the parenthesised letter
    ['A', '<answer>A. the truck</answer>', false],
    ['a', '<answer>(a) Left</answer>', true],
    ['yes', '<answer>Yes.</answer>', true], // trailing period dropped
    ['2', '<answer>2.0</answer>', true], // grade_answer: integer forms
    ['2', '<answer>two</answer>', false],
    ['3', '<answer>3 meters</answer>', true], // grade_answer: units
    [' 3 ', '<answer>3</answer>', true],
    ['left', '<answer>right</answer>', false],
  ];
  for (const [gt, completion, want] of cases)
    for (const mode of ['corrected', 'reference'] as const) t.equal(scoreCompletion(open(gt), completion, mode).correct, want, `${mode}: ${gt} vs ${completion}`);
});

t.test('resolveOption and answerKeyLetter', async (t) => {
  const options = ['left of', 'right of', 'behind'];
  t.equal(resolveOption('(b)', options), 'B');
  t.equal(resolveOption('B: right of', options), 'B');
  t.equal(resolveOption('Left  Of', options), 'A');
  t.equal(resolveOption('(D)', options), null);
  t.equal(resolveOption('I', options), null, 'a one-letter word outside the options');
  t.equal(resolveOption('A man', ['a man', 'a dog']), 'A', 'text that starts like a label still matches as text');
  t.equal(resolveOption('', options), null);
  t.equal(answerKeyLetter(mc('(B)')), 'B');
  t.equal(answerKeyLetter(mc(' b. ')), 'B');
  t.equal(answerKeyLetter(mc('beside')), 'C', 'an option text');
  t.equal(answerKeyLetter(mc('(E)')), undefined, 'beyond the options');
});

t.test('grade_answer port', async (t) => {
  const equal: [string, string][] = [
    ['3', '3.0'],
    ['1,000', '1000'],
    ['\\frac{1}{2}', '0.5'],
    ['1/2', '0.5'],
    ['5 cm', '5'],
    ['(1,2)', '(1, 2)'],
    ['\\text{yes}', 'yes'],
    ['50%', '50'],
    ['x = 4', '4'],
    ['Left', 'left'],
  ];
  for (const [a, b] of equal) t.ok(gradeAnswer(a, b), `${a} == ${b}`);
  const different: [string, string][] = [
    ['3', '4'],
    ['2', '2.5'],
    ['yes', 'no'],
    ['(1,2)', '(1,3)'],
    ['', 'a'],
    ['a', ''],
  ];
  for (const [a, b] of different) t.notOk(gradeAnswer(a, b), `${a} != ${b}`);
  t.equal(normalizePrm('The 3 meters'), 'the3');
  t.equal(normalizePrm('3 Meters'), '3meters', 'units are matched case-sensitively, as in Python');
  t.equal(normalizePrm('1e3'), '1000');
});

t.test('list literals (SpatialReasonerEval choices)', async (t) => {
  t.same(parseListLiteral("['the car', 'the tree']"), ['the car', 'the tree']);
  t.same(parseListLiteral('["the dog\'s bowl", \'the lamp\']'), ["the dog's bowl", 'the lamp']);
  t.same(parseListLiteral("['it\\'s', 'a\\nb', '\\u00e9']"), ["it's", 'a\nb', 'é']);
  t.same(parseListLiteral(' [1, 2.5] '), ['1', '2.5']);
  t.same(parseListLiteral("['a',]"), ['a']);
  t.same(parseListLiteral('[]'), []);
  t.equal(parseListLiteral('a, b'), undefined);
  t.equal(parseListLiteral("['a' 'b']"), undefined);
  t.equal(parseListLiteral("['unterminated]"), undefined);
});

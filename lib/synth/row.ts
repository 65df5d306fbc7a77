/** A synthesised question as an STVQA-7K row (method.md §4.2). */
import { renderProblem, questionWithOptions } from './prompt.js';
import { optionLetter, answerText, type Category, type Level, type Question } from './questions.js';
import type { NormalisedGraph } from './scene-graph.js';
import { questionSubgraph, sceneJson } from './subgraph.js';

/**
 * The STVQA schema. `images` holds a path (relative to the directory of the file the row is
 * written to) until a writer embeds the image bytes (Parquet, as the hub dataset stores them).
 */
export interface SynthRow {
  image_id: string;
  images: { path: string };
  problem: string;
  question_only: string;
  question_with_options: string;
  options: string[];
  /** `<scene>{json}</scene>\n<answer>B</answer>` */
  answer: string;
  answer_only: string;
  /** `<scene>{json}</scene>\n<answer>behind</answer>` */
  answer_text: string;
  answer_text_only: string;
  /** `<scene>{json}</scene>\n<answer>(B) behind</answer>`: the training ground truth. */
  answer_option_text: string;
  answer_option_text_only: string;
  category: Category;
  level: Level;
  rating: number;
}

/** What a row needs besides its question: the image and the ground-truth scene JSON. */
export interface RowContext {
  imageId: string;
  width: number;
  height: number;
  /** The question's sub-graph as Python-style JSON (`sceneJson(questionSubgraph(...))`). */
  scene: string;
  imagePath: string;
}

/** The row of a question about a graph's image. */
export function buildRow(question: Question, graph: NormalisedGraph, imagePath: string): SynthRow {
  return rowFromContext(question, {
    imageId: graph.imageId,
    width: graph.width,
    height: graph.height,
    scene: sceneJson(questionSubgraph(graph, question.question)),
    imagePath,
  });
}

export function rowFromContext(question: Question, context: RowContext): SynthRow {
  const scene = `<scene>${context.scene}</scene>`;
  const letter = optionLetter(question);
  const text = answerText(question);
  const optionText = `(${letter}) ${text}`;
  return {
    image_id: context.imageId,
    images: { path: context.imagePath },
    problem: renderProblem(context.width, context.height, question.question, question.options),
    question_only: question.question,
    question_with_options: questionWithOptions(question.question, question.options),
    options: [...question.options],
    answer: `${scene}\n<answer>${letter}</answer>`,
    answer_only: letter,
    answer_text: `${scene}\n<answer>${text}</answer>`,
    answer_text_only: text,
    answer_option_text: `${scene}\n<answer>${optionText}</answer>`,
    answer_option_text_only: optionText,
    category: question.category,
    level: question.level,
    rating: question.rating,
  };
}

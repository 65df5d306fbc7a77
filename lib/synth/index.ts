/** Synthesis of STVQA-style spatial multiple-choice questions from scene graphs: templates, and optional LLM stages. */
export * from './scene-graph.js';
export * from './predicates.js';
export * from './vocabulary.js';
export * from './questions.js';
export * from './subgraph.js';
export * from './prompt.js';
export { PROMPT_TEMPLATE } from './prompt-template.js';
export * from './row.js';
export * from './balance.js';
export * from './synthesize.js';
export * from './vg150.js';
// Optional LLM stages (an OpenAI-compatible endpoint): shared client, cache, validation, generation.
export * from './llm.js';
export * from './llm-cache.js';
export * from './llm-validate.js';
export * from './llm-generate-prompt.js';
export * from './llm-generate-parse.js';
export * from './llm-generate.js';

/** Tokenizer, chat template and prompt assembly for Qwen2.5-VL. */
export * from './tokenizer.js';
export * from './chat-template.js';
export * from './prompt.js';
export { QWEN2_5_VL_CHAT_TEMPLATE } from './qwen2_5_vl_chat_template.js';
export * from './tiny.js';
export { trainBpe, type TrainBpeOptions, type TrainBpeStats, type TrainedBpe } from './train-bpe.js';

/** Image loading and the Qwen2.5-VL image processor. */
export { checkRgbImage, loadImage, type RgbImage } from './image.js';
export {
  ImageProcessor,
  QWEN2VL_PROCESSOR_DEFAULTS,
  type ImageProcessorConfig,
  type ProcessedImages,
} from './processor.js';
export { resizeBicubicU8, resizeRgb } from './resize.js';
export { SMART_RESIZE_DEFAULTS, roundHalfEven, smartResize, type Size, type SmartResizeOptions } from './smart-resize.js';

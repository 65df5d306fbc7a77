/** Reporting: TensorBoard event files, the HTML run report, boxes drawn over images. */
export { TensorBoardWriter } from './tensorboard.js';
export { crc32c, maskedCrc32c } from './crc32c.js';
export { buildRunReport, renderRunReport, writeRunReport, type RunReport, type RunReportOptions } from './run-report.js';
export { ReportError } from './run-data.js';
export { sceneBoxes, boxesSvg, drawBoxes, type LabelledBox } from './boxes.js';

/** The shapes world: procedural 3D scenes of coloured shapes, their renderings and Visual Genome-form scene graphs. */
export { DEFAULT_CAMERA, makeCamera, project, horizonRow, groundDepthAtRow, type Camera, type CameraOptions, type Point, type Vec3 } from './camera.js';
export { SHAPE_KINDS, CIRCLE_POINTS, convexHull, insideConvex, polygonArea, projectedBounds, silhouette, type ShapeKind, type Solid, type XywhBox } from './geometry.js';
export {
  COLOUR_NAMES,
  DEFAULT_WORLD,
  SHAPE_COLOURS,
  SHAPE_SIZES,
  SIZE_NAMES,
  layoutFromSpecs,
  paintersOrder,
  randomLayout,
  visibleFraction,
  worldConfig,
  type ColourName,
  type PlacedShape,
  type ShapeSpec,
  type ShapesLayout,
  type SizeName,
  type WorldConfig,
  type WorldOptions,
} from './world.js';
export { LIGHT, renderShapesPng, shapesSvg, writeShapesPng, type RenderOptions } from './render.js';
export { DEFAULT_TRUTH_MARGINS, depthOf, sideOf, sizeOf, type TruthMargins } from './truth.js';
export { FAMILY_PREDICATES, RELATION_FAMILIES, pixelBox, shapesSceneGraph, type RelationFamily, type ShapesGraphOptions } from './scene-graph.js';
export {
  SHAPES_CATEGORIES,
  SHAPES_MARGINS,
  generateShapesScenes,
  shapesBalance,
  shapesVocabulary,
  writeShapesSplits,
  type ShapesScene,
  type ShapesSceneOptions,
  type ShapesSplitOptions,
  type ShapesSplitSummary,
  type ShapesSplits,
} from './dataset.js';

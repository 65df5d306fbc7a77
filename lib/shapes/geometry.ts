/**
 * The four solids of the shapes world, standing on the ground, and what the camera sees of
 * them: the exact projected bounding box, the silhouette (a convex polygon), and the pieces
 * the renderer shades (cube faces, a cylinder's top).
 *
 * Every solid is convex, so its silhouette is the convex hull of the projections of its
 * surface, and its box is the box of that hull:
 * - cube: the hull of its 8 corners (box and silhouette exact);
 * - cylinder: the hull of its top and bottom circles; cone: of its base circle and apex;
 * - sphere: its contour circle (where the rays from the camera touch it).
 * Circles are sampled for the silhouette (chords: it lies inside the true outline by at most
 * r (1 - cos(pi / CIRCLE_POINTS)), under 0.1 px at these image sizes), while the box uses
 * the circles' and the sphere's exact extreme rows and columns (camera.ts), so it is the
 * true box of the curved outline, not of the polygon.
 */
import {
  circleBounds,
  dot,
  project,
  sphereBounds,
  sphereContour,
  type Camera,
  type Point,
  type Span,
  type Vec3,
} from './camera.js';

export type ShapeKind = 'cube' | 'sphere' | 'cylinder' | 'cone';

export const SHAPE_KINDS: readonly ShapeKind[] = ['cube', 'sphere', 'cylinder', 'cone'];

/** Points per circle of a silhouette. */
export const CIRCLE_POINTS = 48;

/** A solid on the ground: its kind, ground position, extent and turn about the vertical. */
export interface Solid {
  kind: ShapeKind;
  /** Ground position of its vertical axis. */
  x: number;
  z: number;
  /** Width and height, world units: a cube's side, a sphere's diameter, a cylinder's or cone's base diameter and height. */
  extent: number;
  /** Turn about the vertical axis, radians (only a cube shows it). */
  yaw: number;
}

/** [x, y, w, h] in pixels (Visual Genome's box form). */
export type XywhBox = [number, number, number, number];

/** Radius of the smallest vertical cylinder about the solid's axis that contains it. */
export function footprintRadius(s: Pick<Solid, 'kind' | 'extent'>): number {
  return s.kind === 'cube' ? (s.extent * Math.SQRT2) / 2 : s.extent / 2;
}

/** The solid's exact extent along world x (or z) on the ground: [centre - h, centre + h]. */
export function halfExtentAlongAxis(s: Pick<Solid, 'kind' | 'extent' | 'yaw'>): number {
  if (s.kind !== 'cube') return s.extent / 2;
  return (s.extent / 2) * (Math.abs(Math.cos(s.yaw)) + Math.abs(Math.sin(s.yaw)));
}

export function volume(s: Pick<Solid, 'kind' | 'extent'>): number {
  const r = s.extent / 2;
  switch (s.kind) {
    case 'cube':
      return s.extent ** 3;
    case 'sphere':
      return (4 / 3) * Math.PI * r ** 3;
    case 'cylinder':
      return Math.PI * r * r * s.extent;
    case 'cone':
      return (Math.PI * r * r * s.extent) / 3;
  }
}

/** A cube's 8 corners: bottom 4 then top 4, counter-clockwise seen from above. */
export function cubeCorners(s: Solid): Vec3[] {
  const h = s.extent / 2;
  const c = Math.cos(s.yaw);
  const sn = Math.sin(s.yaw);
  const out: Vec3[] = [];
  for (const y of [0, s.extent])
    for (const [dx, dz] of [
      [-h, -h],
      [h, -h],
      [h, h],
      [-h, h],
    ] as const)
      out.push([s.x + dx * c - dz * sn, y, s.z + dx * sn + dz * c]);
  return out;
}

/** A cube face: corner indices (outward counter-clockwise) and its outward normal. */
export interface CubeFace {
  corners: readonly [number, number, number, number];
  normal: Vec3;
}

export function cubeFaces(s: Solid): CubeFace[] {
  const c = Math.cos(s.yaw);
  const sn = Math.sin(s.yaw);
  return [
    { corners: [0, 1, 5, 4], normal: [sn, 0, -c] }, // the side facing -z before the turn
    { corners: [1, 2, 6, 5], normal: [c, 0, sn] },
    { corners: [2, 3, 7, 6], normal: [-sn, 0, c] },
    { corners: [3, 0, 4, 7], normal: [-c, 0, -sn] },
    { corners: [4, 5, 6, 7], normal: [0, 1, 0] },
    { corners: [3, 2, 1, 0], normal: [0, -1, 0] },
  ];
}

/** Whether the camera sees the outside of a planar face through `point` with outward `normal`. */
export function facesCamera(camera: Camera, point: Vec3, normal: Vec3): boolean {
  const p = camera.position;
  return dot(normal, [p[0] - point[0], p[1] - point[1], p[2] - point[2]]) > 1e-9;
}

/** `count` points around a horizontal circle. */
export function circlePoints(centre: Vec3, r: number, count: number): Vec3[] {
  const out: Vec3[] = [];
  for (let k = 0; k < count; k++) {
    const t = (2 * Math.PI * k) / count;
    out.push([centre[0] + r * Math.cos(t), centre[1], centre[2] + r * Math.sin(t)]);
  }
  return out;
}

/** 3D points whose projections' convex hull is the silhouette (circles sampled). */
export function outlinePoints(camera: Camera, s: Solid): Vec3[] {
  const r = s.extent / 2;
  switch (s.kind) {
    case 'cube':
      return cubeCorners(s);
    case 'sphere':
      return sphereContour(camera, [s.x, r, s.z], r, CIRCLE_POINTS);
    case 'cylinder':
      return [...circlePoints([s.x, 0, s.z], r, CIRCLE_POINTS), ...circlePoints([s.x, s.extent, s.z], r, CIRCLE_POINTS)];
    case 'cone':
      return [...circlePoints([s.x, 0, s.z], r, CIRCLE_POINTS), [s.x, s.extent, s.z]];
  }
}

/** The silhouette: a convex polygon in pixels, counter-clockwise in (u, v) axes. */
export function silhouette(camera: Camera, s: Solid): Point[] {
  return convexHull(outlinePoints(camera, s).map((p) => project(camera, p)));
}

/** The exact projected bounding box [u0, v0, u1, v1] of a solid. */
export function projectedBounds(camera: Camera, s: Solid): [number, number, number, number] {
  const r = s.extent / 2;
  const spans: { u: Span; v: Span }[] = [];
  const points: Point[] = [];
  switch (s.kind) {
    case 'cube':
      points.push(...cubeCorners(s).map((p) => project(camera, p)));
      break;
    case 'sphere':
      spans.push(sphereBounds(camera, [s.x, r, s.z], r));
      break;
    case 'cylinder':
      spans.push(circleBounds(camera, [s.x, 0, s.z], r), circleBounds(camera, [s.x, s.extent, s.z], r));
      break;
    case 'cone':
      spans.push(circleBounds(camera, [s.x, 0, s.z], r));
      points.push(project(camera, [s.x, s.extent, s.z]));
      break;
  }
  let u0 = Infinity;
  let v0 = Infinity;
  let u1 = -Infinity;
  let v1 = -Infinity;
  for (const { u, v } of spans) {
    u0 = Math.min(u0, u[0]);
    u1 = Math.max(u1, u[1]);
    v0 = Math.min(v0, v[0]);
    v1 = Math.max(v1, v[1]);
  }
  for (const [u, v] of points) {
    u0 = Math.min(u0, u);
    u1 = Math.max(u1, u);
    v0 = Math.min(v0, v);
    v1 = Math.max(v1, v);
  }
  return [u0, v0, u1, v1];
}

/** Andrew's monotone chain: the convex hull, counter-clockwise in (u, v), no collinear points. */
export function convexHull(points: readonly Point[]): Point[] {
  const sorted = points.slice().sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (sorted.length <= 2) return sorted;
  const turn = (o: Point, a: Point, b: Point) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower: Point[] = [];
  for (const p of sorted) {
    while (lower.length >= 2 && turn(lower[lower.length - 2] as Point, lower[lower.length - 1] as Point, p) <= 0) lower.pop();
    lower.push(p);
  }
  const upper: Point[] = [];
  for (let i = sorted.length - 1; i >= 0; i--) {
    const p = sorted[i] as Point;
    while (upper.length >= 2 && turn(upper[upper.length - 2] as Point, upper[upper.length - 1] as Point, p) <= 0) upper.pop();
    upper.push(p);
  }
  lower.pop();
  upper.pop();
  return lower.concat(upper);
}

/** Whether p lies inside (or on) a convex polygon given counter-clockwise. */
export function insideConvex(polygon: readonly Point[], p: Point): boolean {
  const n = polygon.length;
  if (n < 3) return false;
  for (let i = 0; i < n; i++) {
    const a = polygon[i] as Point;
    const b = polygon[(i + 1) % n] as Point;
    if ((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]) < 0) return false;
  }
  return true;
}

/** Area of a simple polygon (shoelace), pixels squared. */
export function polygonArea(polygon: readonly Point[]): number {
  let twice = 0;
  for (let i = 0; i < polygon.length; i++) {
    const a = polygon[i] as Point;
    const b = polygon[(i + 1) % polygon.length] as Point;
    twice += a[0] * b[1] - b[0] * a[1];
  }
  return Math.abs(twice) / 2;
}

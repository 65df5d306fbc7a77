/**
 * The fixed pinhole camera of the shapes world and exact projections of the curved
 * primitives its solids are made of.
 *
 * World frame: x to the right, y up, z away from the camera (depth); the ground is y = 0.
 * The camera stands at (0, elevation, 0) and looks along +z, pitched down by `pitch`, with
 * no yaw or roll. Its image x axis is therefore parallel to world x: a ground point's image
 * row depends only on its depth z (farther is higher in the image), and lines of constant
 * depth are horizontal in the image.
 *
 * Pixel convention: (u, v) with the origin at the top-left corner of the image, v down;
 * pixel (i, j) covers [i, i + 1) x [j, j + 1), so the principal point is (W / 2, H / 2).
 */

export type Vec3 = readonly [number, number, number];
export type Point = readonly [number, number];

export interface CameraOptions {
  /** Height of the camera above the ground, world units. */
  elevation: number;
  /** Downward tilt of the optical axis, degrees. */
  pitchDeg: number;
  /** Horizontal field of view, degrees. */
  fovDeg: number;
}

export const DEFAULT_CAMERA: Readonly<CameraOptions> = Object.freeze({ elevation: 5, pitchDeg: 32, fovDeg: 48 });

export interface Camera extends CameraOptions {
  width: number;
  height: number;
  /** Focal length in pixels. */
  focal: number;
  /** World position of the centre of projection. */
  position: Vec3;
  sinPitch: number;
  cosPitch: number;
}

export function makeCamera(width: number, height: number, options: Partial<CameraOptions> = {}): Camera {
  const o = { ...DEFAULT_CAMERA, ...options };
  for (const [name, value] of [
    ['width', width],
    ['height', height],
  ] as const)
    if (!Number.isSafeInteger(value) || value < 8) throw new RangeError(`image ${name} must be an integer >= 8, got ${String(value)}`);
  if (!(Number.isFinite(o.elevation) && o.elevation > 0)) throw new RangeError(`camera elevation must be > 0, got ${String(o.elevation)}`);
  if (!(Number.isFinite(o.pitchDeg) && o.pitchDeg >= 0 && o.pitchDeg < 80))
    throw new RangeError(`camera pitchDeg must be in [0, 80), got ${String(o.pitchDeg)}`);
  if (!(Number.isFinite(o.fovDeg) && o.fovDeg > 5 && o.fovDeg < 150))
    throw new RangeError(`camera fovDeg must be in (5, 150), got ${String(o.fovDeg)}`);
  const pitch = (o.pitchDeg * Math.PI) / 180;
  return {
    ...o,
    width,
    height,
    focal: width / 2 / Math.tan((o.fovDeg * Math.PI) / 360),
    position: [0, o.elevation, 0],
    sinPitch: Math.sin(pitch),
    cosPitch: Math.cos(pitch),
  };
}

/** A direction from world to camera axes: [right, up, forward]. */
export function cameraDirection(c: Camera, d: Vec3): Vec3 {
  return [d[0], d[1] * c.cosPitch + d[2] * c.sinPitch, -d[1] * c.sinPitch + d[2] * c.cosPitch];
}

/** A world point in camera axes: [right, up, forward (depth along the optical axis)]. */
export function toCamera(c: Camera, p: Vec3): Vec3 {
  return cameraDirection(c, [p[0] - c.position[0], p[1] - c.position[1], p[2] - c.position[2]]);
}

/** Pixel coordinates of a world point in front of the camera. */
export function project(c: Camera, p: Vec3): Point {
  const q = toCamera(c, p);
  if (!(q[2] > 1e-9)) throw new RangeError(`point [${p.join(', ')}] is not in front of the camera`);
  return [c.width / 2 + (c.focal * q[0]) / q[2], c.height / 2 - (c.focal * q[1]) / q[2]];
}

/** The image row of the horizon (the ground's vanishing line); negative when above the image. */
export function horizonRow(c: Camera): number {
  return c.height / 2 - (c.focal * c.sinPitch) / c.cosPitch;
}

/** The world depth z of the ground point seen at image row v (v below the horizon). */
export function groundDepthAtRow(c: Camera, v: number): number {
  // The ray through row v leaves the camera at angle a below the optical axis.
  const a = Math.atan((v - c.height / 2) / c.focal);
  const below = a + Math.atan2(c.sinPitch, c.cosPitch);
  if (!(below > 0)) return Infinity;
  return c.elevation / Math.tan(below);
}

/** Interval [min, max] of a pixel axis. */
export type Span = [number, number];

/**
 * The extreme values over t of (n0 + n1 cos t + n2 sin t) / (d0 + d1 cos t + d2 sin t),
 * with the denominator positive for all t. Setting the derivative to zero gives
 * P sin t + Q cos t + K = 0 with P = n0 d1 - n1 d0, Q = n2 d0 - n0 d2, K = n2 d1 - n1 d2,
 * whose two roots are the minimum and the maximum.
 */
export function ratioExtremes(n: Vec3, d: Vec3): Span {
  const [n0, n1, n2] = n;
  const [d0, d1, d2] = d;
  const value = (t: number) => (n0 + n1 * Math.cos(t) + n2 * Math.sin(t)) / (d0 + d1 * Math.cos(t) + d2 * Math.sin(t));
  const P = n0 * d1 - n1 * d0;
  const Q = n2 * d0 - n0 * d2;
  const K = n2 * d1 - n1 * d2;
  const R = Math.hypot(P, Q);
  if (R < 1e-12) {
    const v = value(0);
    return [v, v]; // constant ratio: a degenerate circle
  }
  const phi = Math.atan2(P, Q);
  const delta = Math.acos(Math.max(-1, Math.min(1, -K / R)));
  const a = value(phi + delta);
  const b = value(phi - delta);
  return [Math.min(a, b), Math.max(a, b)];
}

/**
 * Exact pixel bounds of the image of a horizontal circle (centre `centre`, radius r) lying
 * wholly in front of the camera: the image is a conic, and its extreme columns and rows
 * are the extremes of two ratios of trigonometric polynomials.
 */
export function circleBounds(c: Camera, centre: Vec3, r: number): { u: Span; v: Span } {
  const q = toCamera(c, centre);
  const a = cameraDirection(c, [r, 0, 0]); // the circle's cos t axis
  const b = cameraDirection(c, [0, 0, r]); // its sin t axis
  const depth: Vec3 = [q[2], a[2], b[2]];
  if (!(q[2] - Math.hypot(a[2], b[2]) > 1e-9)) throw new RangeError('circle is not wholly in front of the camera');
  const [x0, x1] = ratioExtremes([q[0], a[0], b[0]], depth);
  const [y0, y1] = ratioExtremes([q[1], a[1], b[1]], depth);
  const cx = c.width / 2;
  const cy = c.height / 2;
  return { u: [cx + c.focal * x0, cx + c.focal * x1], v: [cy - c.focal * y1, cy - c.focal * y0] };
}

/**
 * Exact pixel bounds of the image of a sphere: the extreme columns are the planes through
 * the centre of projection that contain the image's vertical axis and touch the sphere,
 * x = k z with (Sz^2 - R^2) k^2 - 2 Sx Sz k + (Sx^2 - R^2) = 0; rows likewise with y.
 */
export function sphereBounds(c: Camera, centre: Vec3, radius: number): { u: Span; v: Span } {
  const [sx, sy, sz] = toCamera(c, centre);
  const denominator = sz * sz - radius * radius;
  if (!(sz > radius) || !(denominator > 1e-12)) throw new RangeError('sphere is not wholly in front of the camera');
  const roots = (s: number): Span => {
    const root = radius * Math.sqrt(Math.max(0, s * s + sz * sz - radius * radius));
    return [(s * sz - root) / denominator, (s * sz + root) / denominator];
  };
  const [x0, x1] = roots(sx);
  const [y0, y1] = roots(sy);
  const cx = c.width / 2;
  const cy = c.height / 2;
  return { u: [cx + c.focal * x0, cx + c.focal * x1], v: [cy - c.focal * y1, cy - c.focal * y0] };
}

/**
 * Points of a sphere's outline as the camera sees it: the circle where the cone of rays
 * from the centre of projection touches the sphere (centre S + (R^2 / d^2)(C - S), radius
 * R sqrt(1 - R^2 / d^2), perpendicular to C - S), `count` points around it.
 */
export function sphereContour(c: Camera, centre: Vec3, radius: number, count: number): Vec3[] {
  const toEye: Vec3 = [c.position[0] - centre[0], c.position[1] - centre[1], c.position[2] - centre[2]];
  const d = Math.hypot(...toEye);
  if (!(d > radius)) throw new RangeError('the camera is inside a sphere');
  const n: Vec3 = [toEye[0] / d, toEye[1] / d, toEye[2] / d];
  const offset = (radius * radius) / d;
  const rho = radius * Math.sqrt(1 - (radius * radius) / (d * d));
  // An orthonormal basis of the contour's plane.
  const helper: Vec3 = Math.abs(n[1]) < 0.9 ? [0, 1, 0] : [1, 0, 0];
  const e1 = normalise(cross(n, helper));
  const e2 = cross(n, e1);
  const out: Vec3[] = [];
  for (let k = 0; k < count; k++) {
    const t = (2 * Math.PI * k) / count;
    const cs = Math.cos(t) * rho;
    const sn = Math.sin(t) * rho;
    out.push([
      centre[0] + n[0] * offset + e1[0] * cs + e2[0] * sn,
      centre[1] + n[1] * offset + e1[1] * cs + e2[1] * sn,
      centre[2] + n[2] * offset + e1[2] * cs + e2[2] * sn,
    ]);
  }
  return out;
}

export function cross(a: Vec3, b: Vec3): Vec3 {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

export function dot(a: Vec3, b: Vec3): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

export function normalise(a: Vec3): Vec3 {
  const n = Math.hypot(...a);
  return [a[0] / n, a[1] / n, a[2] / n];
}

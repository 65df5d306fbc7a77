/**
 * Rendering a shapes-world layout: an SVG drawn by the painter's algorithm (sky where the
 * horizon is in view, which the default camera's pitch leaves just above the image; ground
 * shaded darker towards the camera with a perspective grid; translucent shadows; then the
 * objects far to near so that nearer ones cover farther ones), rasterised to an RGB PNG by
 * sharp (librsvg).
 *
 * Shading is Lambertian under one light from the upper left, in front: a cube shows its
 * visible faces (back faces culled) each in its own shade; a sphere is a radial gradient
 * with its highlight towards the light; cylinders and cones get a horizontal gradient
 * across their side and a cylinder a lighter top. Every object has a thin darker outline so
 * that small ones stay distinct at 168 px.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import sharp from 'sharp';
import { dot, horizonRow, normalise, project, type Camera, type Point, type Vec3 } from './camera.js';
import { CIRCLE_POINTS, circlePoints, convexHull, cubeCorners, cubeFaces, facesCamera } from './geometry.js';
import { SHAPE_COLOURS, type PlacedShape, type ShapesLayout } from './world.js';

export interface RenderOptions {
  /** Draw the ground's perspective grid (default true). */
  grid?: boolean;
  /** Draw contact shadows (default true). */
  shadows?: boolean;
  /** PNG zlib level 0-9 (default 6). */
  compressionLevel?: number;
}

type Rgb = readonly [number, number, number];

/** Direction towards the light, world axes: up, to the left, towards the camera. */
export const LIGHT: Vec3 = normalise([-0.55, 1, -0.7]);

const AMBIENT = 0.42;
const SKY_TOP: Rgb = [150, 184, 222];
const SKY_HORIZON: Rgb = [214, 226, 236];
const GROUND_FAR: Rgb = [196, 196, 186];
const GROUND_NEAR: Rgb = [150, 146, 134];

function shade(colour: Rgb, factor: number): Rgb {
  return colour.map((c) => Math.max(0, Math.min(255, Math.round(c * factor)))) as unknown as Rgb;
}

function tint(colour: Rgb, towards: Rgb, amount: number): Rgb {
  return colour.map((c, i) => Math.round(c + ((towards[i] as number) - c) * amount)) as unknown as Rgb;
}

function hex(c: Rgb): string {
  return `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

function n2(v: number): string {
  // Two decimals, no "-0.00": the SVG text (and so the PNG) is a pure function of the layout.
  const s = v.toFixed(2);
  return s === '-0.00' ? '0.00' : s;
}

function points(poly: readonly Point[]): string {
  return poly.map(([u, v]) => `${n2(u)},${n2(v)}`).join(' ');
}

function light(normal: Vec3): number {
  return AMBIENT + (1 - AMBIENT) * Math.max(0, dot(normalise(normal), LIGHT));
}

/** The SVG document of a layout. */
export function shapesSvg(layout: ShapesLayout, options: RenderOptions = {}): string {
  const { width: W, height: H, camera } = layout;
  const defs: string[] = [];
  const body: string[] = [];
  const horizon = horizonRow(camera);
  defs.push(
    `<linearGradient id="sky" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="${hex(SKY_TOP)}"/><stop offset="1" stop-color="${hex(SKY_HORIZON)}"/></linearGradient>`,
    `<linearGradient id="ground" gradientUnits="userSpaceOnUse" x1="0" y1="${n2(Math.max(0, horizon))}" x2="0" y2="${H}"><stop offset="0" stop-color="${hex(GROUND_FAR)}"/><stop offset="1" stop-color="${hex(GROUND_NEAR)}"/></linearGradient>`,
  );
  if (horizon > 0) body.push(`<rect width="${W}" height="${n2(Math.min(H, horizon) + 0.5)}" fill="url(#sky)"/>`);
  const groundTop = Math.max(0, horizon);
  body.push(`<rect y="${n2(groundTop)}" width="${W}" height="${n2(H - groundTop)}" fill="url(#ground)"/>`);
  if (options.grid ?? true) body.push(groundGrid(camera));
  if (options.shadows ?? true) body.push(shadows(layout));
  layout.drawOrder.forEach((i, k) => body.push(drawShape(layout.objects[i] as PlacedShape, camera, k, defs)));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}"><defs>${defs.join('')}</defs>${body.join('')}</svg>`;
}

/** Faint lines of constant depth (horizontal) and constant x (converging to the vanishing point), 1 unit apart. */
function groundGrid(camera: Camera): string {
  // Only near the scene: farther, the lines crowd into moire at these image sizes.
  const lines: string[] = [];
  const far = 14;
  const nearest = Math.max(0.5, camera.elevation * 0.2);
  for (let z = Math.ceil(nearest); z <= far; z++) {
    const [, v] = project(camera, [0, 0, z]);
    if (v < 0 || v > camera.height) continue;
    lines.push(`M0 ${n2(v)}H${camera.width}`);
  }
  for (let x = -far; x <= far; x++) {
    const a = project(camera, [x, 0, nearest]);
    const b = project(camera, [x, 0, far]);
    lines.push(`M${n2(a[0])} ${n2(a[1])}L${n2(b[0])} ${n2(b[1])}`);
  }
  return `<path d="${lines.join('')}" stroke="#000" stroke-opacity="0.08" stroke-width="0.6" fill="none"/>`;
}

/** Shadows: each a ground disc pushed away from the light, drawn as a union in one translucent group (overlaps do not darken twice). */
function shadows(layout: ShapesLayout): string {
  const away: Vec3 = normalise([-LIGHT[0], 0, -LIGHT[2]]);
  const parts: string[] = [];
  for (const o of layout.objects) {
    const r = o.extent * 0.55;
    const shift = o.extent * 0.35;
    const disc = circlePoints([o.x + away[0] * shift, 0, o.z + away[2] * shift], r, 24).map((p) => project(layout.camera, p));
    parts.push(`<polygon points="${points(disc)}"/>`);
  }
  return `<g fill="#1e1a14" opacity="0.28">${parts.join('')}</g>`;
}

function drawShape(o: PlacedShape, camera: Camera, k: number, defs: string[]): string {
  const base: Rgb = SHAPE_COLOURS[o.colour];
  const stroke = `stroke="${hex(shade(base, 0.35))}" stroke-width="0.6" stroke-linejoin="round"`;
  switch (o.kind) {
    case 'cube': {
      const corners = cubeCorners(o);
      const faces: string[] = [];
      for (const face of cubeFaces(o)) {
        const a = corners[face.corners[0]] as Vec3;
        if (!facesCamera(camera, a, face.normal)) continue;
        const poly = face.corners.map((c) => project(camera, corners[c] as Vec3));
        faces.push(`<polygon points="${points(poly)}" fill="${hex(shade(base, light(face.normal)))}" ${stroke}/>`);
      }
      return faces.join('');
    }
    case 'sphere': {
      // Highlight where the surface normal points at the light, seen from the camera.
      const r = o.extent / 2;
      const centre: Vec3 = [o.x, r, o.z];
      const spot = project(camera, [o.x + LIGHT[0] * r * 0.6, r + LIGHT[1] * r * 0.6, o.z + LIGHT[2] * r * 0.6]);
      const [cu, cv] = project(camera, centre);
      const [, , bw, bh] = o.box;
      const radius = Math.max(bw, bh) * 0.62;
      defs.push(
        `<radialGradient id="s${k}" gradientUnits="userSpaceOnUse" cx="${n2(cu)}" cy="${n2(cv)}" r="${n2(radius)}" fx="${n2(spot[0])}" fy="${n2(spot[1])}">` +
          `<stop offset="0" stop-color="${hex(tint(base, [255, 255, 255], 0.55))}"/>` +
          `<stop offset="0.45" stop-color="${hex(shade(base, 0.95))}"/>` +
          `<stop offset="1" stop-color="${hex(shade(base, 0.4))}"/></radialGradient>`,
      );
      return `<polygon points="${points(o.outline)}" fill="url(#s${k})" ${stroke}/>`;
    }
    case 'cylinder':
    case 'cone': {
      defs.push(sideGradient(`s${k}`, o, camera, base));
      const side = `<polygon points="${points(o.outline)}" fill="url(#s${k})" ${stroke}/>`;
      if (o.kind === 'cone') return side;
      const top = convexHull(circlePoints([o.x, o.extent, o.z], o.extent / 2, CIRCLE_POINTS).map((p) => project(camera, p)));
      return `${side}<polygon points="${points(top)}" fill="${hex(shade(base, light([0, 1, 0]) * 1.05))}" ${stroke}/>`;
    }
  }
}

/**
 * Left-to-right shading of a round side. Seen along the ground heading (dx, dz) from the
 * camera, the visible side's normals sweep from the left edge's (-dz, dx) through the one
 * facing the camera (-dx, -dz) to the right edge's (dz, -dx): at sweep angle a in [0, pi]
 * the normal is cos(a) left + sin(a) towards-camera, seen at (1 - cos a) / 2 of the width.
 */
function sideGradient(id: string, o: PlacedShape, camera: Camera, base: Rgb): string {
  const [x, , w] = o.box;
  const length = Math.hypot(o.x - camera.position[0], o.z - camera.position[2]);
  const dx = (o.x - camera.position[0]) / length;
  const dz = (o.z - camera.position[2]) / length;
  const stops: string[] = [];
  const steps = 8;
  for (let s = 0; s <= steps; s++) {
    const a = (Math.PI * s) / steps;
    const normal: Vec3 = [Math.cos(a) * -dz + Math.sin(a) * -dx, 0, Math.cos(a) * dx + Math.sin(a) * -dz];
    stops.push(`<stop offset="${n2((1 - Math.cos(a)) / 2)}" stop-color="${hex(shade(base, light(normal)))}"/>`);
  }
  return `<linearGradient id="${id}" gradientUnits="userSpaceOnUse" x1="${n2(x)}" y1="0" x2="${n2(x + w)}" y2="0">${stops.join('')}</linearGradient>`;
}

/** The layout as an RGB PNG. */
export async function renderShapesPng(layout: ShapesLayout, options: RenderOptions = {}): Promise<Buffer> {
  const svg = shapesSvg(layout, options);
  return sharp(Buffer.from(svg), { density: 72 })
    .removeAlpha()
    .png({ compressionLevel: options.compressionLevel ?? 6 })
    .toBuffer();
}

/** Renders a layout and writes the PNG (creating the folder); returns the bytes written. */
export async function writeShapesPng(layout: ShapesLayout, path: string, options: RenderOptions = {}): Promise<number> {
  const png = await renderShapesPng(layout, options);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, png);
  return png.byteLength;
}

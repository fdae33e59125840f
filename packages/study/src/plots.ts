/**
 * Hand-written SVG charts (no plotting library) and their PNG renderings through resvg with a font
 * shipped in an npm package (no system fonts, no downloads).
 */

export interface Series {
  readonly label: string;
  readonly points: readonly { x: number; y: number }[];
  /** Fixed colour (the same variant keeps its colour across plots); default: the palette by index. */
  readonly color?: string;
  /** A shaded band around the line (e.g. min..max over seeds), same x as `points`. */
  readonly band?: readonly { x: number; lo: number; hi: number }[];
}

export interface ScatterPoint {
  readonly label: string;
  readonly x: number;
  readonly y: number;
  readonly xErr: number;
  readonly yErr: number;
  /** Reference points (e.g. the base model) are drawn as hollow squares. */
  readonly reference?: boolean;
  readonly group?: string;
  readonly color?: string;
  /** Drawn with a ring (e.g. on the Pareto front). */
  readonly ring?: boolean;
  /** Text written next to the point (default: none; the legend names the group). */
  readonly text?: string;
}

const W = 900;
const H = 560;
const M = { left: 80, right: 220, top: 56, bottom: 64 };
const FONT = 'Roboto, sans-serif';
/** Colour-blind-friendly palette (Okabe-Ito plus extras). */
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#A6761D', '#000000', '#999999', '#8C564B', '#7F3C8D', '#11A579'];

/** One colour per name, by its position in `names` (keep `names` the same list for every plot). */
export function colorMap(names: readonly string[]): (name: string) => string {
  return (name) => {
    const i = names.indexOf(name);
    return i < 0 ? '#777777' : PALETTE[i % PALETTE.length]!;
  };
}

/** A note in the middle of the plot area (e.g. why a chart shows nothing). */
function noteText(note: string): string {
  const pw = W - M.left - M.right;
  return `<text x="${M.left + pw / 2}" y="${M.top + 40}" text-anchor="middle" font-size="15" font-family="${FONT}" fill="#b00020">${escapeXml(note)}</text>`;
}

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

function fmt(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(1);
  return Number(v.toPrecision(3)).toString();
}

/** About `n` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) {
    const d = Math.abs(lo) * 0.05 || 1;
    lo -= d;
    hi += d;
  }
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

interface Frame {
  sx: (x: number) => number;
  sy: (y: number) => number;
  parts: string[];
}

function frame(title: string, xLabel: string, yLabel: string, xr: [number, number], yr: [number, number], xTicks = true): Frame {
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const pad = (r: [number, number]): [number, number] => {
    const d = r[1] - r[0] || Math.abs(r[0]) * 0.1 || 1;
    return [r[0] - d * 0.05, r[1] + d * 0.05];
  };
  const [x0, x1] = pad(xr);
  const [y0, y1] = pad(yr);
  const sx = (x: number) => M.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => M.top + ph - ((y - y0) / (y1 - y0)) * ph;
  const parts: string[] = [];
  parts.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  parts.push(`<text x="${W / 2}" y="30" text-anchor="middle" font-size="20" font-family="${FONT}" fill="#111">${escapeXml(title)}</text>`);
  parts.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333" stroke-width="1"/>`);
  for (const t of xTicks ? niceTicks(x0, x1) : []) {
    if (t < x0 || t > x1) continue;
    const X = sx(t).toFixed(1);
    parts.push(`<line x1="${X}" y1="${M.top}" x2="${X}" y2="${M.top + ph}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${X}" y="${M.top + ph + 20}" text-anchor="middle" font-size="13" font-family="${FONT}" fill="#333">${escapeXml(fmt(t))}</text>`);
  }
  for (const t of niceTicks(y0, y1)) {
    if (t < y0 || t > y1) continue;
    const Y = sy(t).toFixed(1);
    parts.push(`<line x1="${M.left}" y1="${Y}" x2="${M.left + pw}" y2="${Y}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${M.left - 8}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end" font-size="13" font-family="${FONT}" fill="#333">${escapeXml(fmt(t))}</text>`);
  }
  parts.push(`<text x="${M.left + pw / 2}" y="${H - 18}" text-anchor="middle" font-size="15" font-family="${FONT}" fill="#111">${escapeXml(xLabel)}</text>`);
  parts.push(`<text transform="translate(22 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="15" font-family="${FONT}" fill="#111">${escapeXml(yLabel)}</text>`);
  return { sx, sy, parts };
}

function legend(items: readonly { label: string; color: string; marker: 'line' | 'dot' | 'square' }[]): string[] {
  const x = W - M.right + 16;
  const out: string[] = [];
  items.forEach((it, i) => {
    const y = M.top + 10 + i * 22;
    if (it.marker === 'line') out.push(`<line x1="${x}" y1="${y}" x2="${x + 22}" y2="${y}" stroke="${it.color}" stroke-width="3"/>`);
    else if (it.marker === 'dot') out.push(`<circle cx="${x + 11}" cy="${y}" r="5" fill="${it.color}"/>`);
    else out.push(`<rect x="${x + 6}" y="${y - 5}" width="10" height="10" fill="none" stroke="${it.color}" stroke-width="2"/>`);
    out.push(`<text x="${x + 30}" y="${y + 5}" font-size="13" font-family="${FONT}" fill="#111">${escapeXml(it.label)}</text>`);
  });
  return out;
}

function wrap(parts: readonly string[]): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">\n${parts.join('\n')}\n</svg>\n`;
}

function extent(vals: readonly number[]): [number, number] {
  const finite = vals.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return [0, 1];
  return [Math.min(...finite), Math.max(...finite)];
}

/** Line chart: one polyline per series (e.g. mean training loss per step and variant). */
export function lineChartSvg(title: string, xLabel: string, yLabel: string, series: readonly Series[], note?: string): string {
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  const ys = series.flatMap((s) => [...s.points.map((p) => p.y), ...(s.band ?? []).flatMap((b) => [b.lo, b.hi])]);
  const f = frame(title, xLabel, yLabel, extent(xs), extent(ys));
  const colorOf = (s: Series, i: number) => s.color ?? PALETTE[i % PALETTE.length]!;
  series.forEach((s, i) => {
    const band = (s.band ?? []).filter((b) => Number.isFinite(b.lo) && Number.isFinite(b.hi));
    if (band.length > 1) {
      const upper = band.map((b) => `${f.sx(b.x).toFixed(1)},${f.sy(b.hi).toFixed(1)}`);
      const lower = [...band].reverse().map((b) => `${f.sx(b.x).toFixed(1)},${f.sy(b.lo).toFixed(1)}`);
      f.parts.push(`<polygon points="${[...upper, ...lower].join(' ')}" fill="${colorOf(s, i)}" fill-opacity="0.15" stroke="none"/>`);
    }
  });
  if (note) f.parts.push(noteText(note));
  series.forEach((s, i) => {
    const color = colorOf(s, i);
    const pts = s.points.filter((p) => Number.isFinite(p.y)).map((p) => `${f.sx(p.x).toFixed(1)},${f.sy(p.y).toFixed(1)}`);
    if (pts.length === 1) {
      const [px, py] = pts[0]!.split(',');
      f.parts.push(`<circle cx="${px}" cy="${py}" r="3" fill="${color}"/>`);
    } else if (pts.length > 1) f.parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.join(' ')}"/>`);
  });
  f.parts.push(...legend(series.map((s, i) => ({ label: s.label, color: colorOf(s, i), marker: 'line' as const }))));
  return wrap(f.parts);
}

/** Scatter with error bars on both axes (mean ± std), labelled points; references as hollow squares. */
export function scatterSvg(title: string, xLabel: string, yLabel: string, points: readonly ScatterPoint[], o: { note?: string; front?: readonly { x: number; y: number }[] } = {}): string {
  const xs = points.flatMap((p) => [p.x - p.xErr, p.x + p.xErr]);
  const ys = points.flatMap((p) => [p.y - p.yErr, p.y + p.yErr]);
  const f = frame(title, xLabel, yLabel, extent(xs), extent(ys));
  const groups = [...new Set(points.map((p) => p.group ?? p.label))];
  const colorOf = (p: ScatterPoint) => p.color ?? PALETTE[groups.indexOf(p.group ?? p.label) % PALETTE.length]!;
  if (o.note) f.parts.push(noteText(o.note));
  if (o.front && o.front.length > 1) f.parts.push(`<polyline fill="none" stroke="#444" stroke-width="1.5" stroke-dasharray="6 4" points="${o.front.map((p) => `${f.sx(p.x).toFixed(1)},${f.sy(p.y).toFixed(1)}`).join(' ')}"/>`);
  // Labels are placed right of their point and pushed down when they would overlap an earlier one.
  const placed: { x: number; y: number }[] = [];
  for (const p of points) {
    if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) continue;
    const c = colorOf(p);
    const X = f.sx(p.x);
    const Y = f.sy(p.y);
    if (p.xErr > 0) f.parts.push(`<line x1="${f.sx(p.x - p.xErr).toFixed(1)}" y1="${Y.toFixed(1)}" x2="${f.sx(p.x + p.xErr).toFixed(1)}" y2="${Y.toFixed(1)}" stroke="${c}" stroke-width="1.5"/>`);
    if (p.yErr > 0) f.parts.push(`<line x1="${X.toFixed(1)}" y1="${f.sy(p.y - p.yErr).toFixed(1)}" x2="${X.toFixed(1)}" y2="${f.sy(p.y + p.yErr).toFixed(1)}" stroke="${c}" stroke-width="1.5"/>`);
    if (p.reference) f.parts.push(`<rect x="${(X - 6).toFixed(1)}" y="${(Y - 6).toFixed(1)}" width="12" height="12" fill="#fff" stroke="${c}" stroke-width="2"/>`);
    else f.parts.push(`<circle cx="${X.toFixed(1)}" cy="${Y.toFixed(1)}" r="5" fill="${c}"/>`);
    if (p.ring) f.parts.push(`<circle cx="${X.toFixed(1)}" cy="${Y.toFixed(1)}" r="9" fill="none" stroke="#111" stroke-width="1.5"/>`);
    const text = p.text ?? p.label;
    let ly = Y - 8;
    while (placed.some((q) => Math.abs(q.x - (X + 8)) < 70 && Math.abs(q.y - ly) < 13)) ly += 13;
    placed.push({ x: X + 8, y: ly });
    // A label pushed away from its point gets a thin leader line back to it.
    if (ly !== Y - 8) f.parts.push(`<line x1="${(X + 3).toFixed(1)}" y1="${(Y + 3).toFixed(1)}" x2="${(X + 8).toFixed(1)}" y2="${(ly - 4).toFixed(1)}" stroke="${c}" stroke-width="0.8"/>`);
    f.parts.push(`<text x="${(X + 8).toFixed(1)}" y="${ly.toFixed(1)}" font-size="11" font-family="${FONT}" fill="${c}">${escapeXml(text)}</text>`);
  }
  const seen = new Set<string>();
  const items: { label: string; color: string; marker: 'dot' | 'square' }[] = [];
  for (const p of points) {
    const g = p.group ?? p.label;
    if (seen.has(g)) continue;
    seen.add(g);
    items.push({ label: g, color: colorOf(p), marker: p.reference ? 'square' : 'dot' });
  }
  f.parts.push(...legend(items));
  return wrap(f.parts);
}

/** Vertical bar chart with error bars (e.g. accuracy per variant). */
export function barChartSvg(title: string, yLabel: string, bars: readonly { label: string; value: number; err: number; reference?: boolean; color?: string }[], note?: string): string {
  const ys = bars.flatMap((b) => [0, b.value + b.err]);
  const [lo, hi] = extent(ys);
  const f = frame(title, '', yLabel, [0, Math.max(1, bars.length)], [Math.min(0, lo), hi > 0 ? hi : 1], false);
  const slot = (f.sx(1) - f.sx(0)) * 0.7;
  bars.forEach((b, i) => {
    const cx = f.sx(i + 0.5);
    const c = b.color ?? (b.reference ? '#999999' : PALETTE[i % PALETTE.length]!);
    const y0 = f.sy(0);
    const y1 = f.sy(b.value);
    f.parts.push(`<rect x="${(cx - slot / 2).toFixed(1)}" y="${Math.min(y0, y1).toFixed(1)}" width="${slot.toFixed(1)}" height="${Math.abs(y0 - y1).toFixed(1)}" fill="${c}"/>`);
    if (b.err > 0) f.parts.push(`<line x1="${cx.toFixed(1)}" y1="${f.sy(b.value - b.err).toFixed(1)}" x2="${cx.toFixed(1)}" y2="${f.sy(b.value + b.err).toFixed(1)}" stroke="#111" stroke-width="1.5"/>`);
    f.parts.push(`<text transform="translate(${cx.toFixed(1)} ${(H - M.bottom + 14).toFixed(1)}) rotate(30)" font-size="12" font-family="${FONT}" fill="#222">${escapeXml(b.label)}</text>`);
    f.parts.push(`<text x="${cx.toFixed(1)}" y="${(Math.min(y0, y1) - 4).toFixed(1)}" text-anchor="middle" font-size="11" font-family="${FONT}" fill="#222">${escapeXml(fmt(b.value))}</text>`);
  });
  if (note) f.parts.push(noteText(note));
  return wrap(f.parts);
}

let fontFile: string | null | undefined;

/** The TTF used for PNG text: Roboto Regular from the `@expo-google-fonts/roboto` npm package. */
export function pngFontFile(): string | null {
  if (fontFile !== undefined) return fontFile;
  try {
    fontFile = require.resolve('@expo-google-fonts/roboto/400Regular/Roboto_400Regular.ttf');
  } catch {
    fontFile = null;
  }
  return fontFile;
}

/** Renders an SVG to PNG (resvg; text in Roboto from an npm package, never system fonts). */
export function svgToPng(svg: string, width = 1350): Buffer {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Resvg } = require('@resvg/resvg-js') as typeof import('@resvg/resvg-js');
  const font = pngFontFile();
  const r = new Resvg(svg, {
    fitTo: { mode: 'width', value: width },
    background: '#ffffff',
    font: { loadSystemFonts: false, fontFiles: font ? [font] : [], defaultFontFamily: 'Roboto', sansSerifFamily: 'Roboto' },
  });
  return r.render().asPng();
}

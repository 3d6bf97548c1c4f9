/**
 * The roofline chart: each kernel version as a point (arithmetic intensity, achieved GFLOP/s)
 * under the device's measured ceilings, on log-log axes. A kernel on the slanted roof is
 * limited by memory bandwidth, one on the flat roof by arithmetic; the distance below the
 * roof is what is left to gain. Written as SVG by hand (no plotting library), and rendered
 * to PNG by sharp.
 */
import sharp from "sharp";
import type { KernelResult } from "./kernels.js";
import type { DeviceLimits } from "./limits.js";

const WIDTH = 960;
const HEIGHT = 640;
const MARGIN = { left: 80, right: 230, top: 50, bottom: 60 };
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#e7ba52"];

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Powers of ten covering [lo, hi], padded by one decade each way at most. */
function decades(lo: number, hi: number): [number, number] {
  return [Math.floor(Math.log10(lo)), Math.ceil(Math.log10(hi))];
}

export interface RooflineOptions {
  title: string;
}

export function rooflineSvg(results: readonly KernelResult[], limits: DeviceLimits, options: RooflineOptions): string {
  // Only versions that were checked right and timed: a wrong one's speed means nothing.
  const points = results.filter((r) => r.status === "ok" && r.time && r.gflops > 0 && Number.isFinite(r.gflops) && r.intensity > 0 && Number.isFinite(r.intensity));
  const bw = limits.bandwidthGBps;
  const peak = limits.computeGFlops;
  const ridge = peak / bw;
  const f16 = limits.fmaF16?.value ?? 0;
  const xs = [...points.map((p) => p.intensity), ridge / 10, ridge * 10];
  const ys = [...points.map((p) => p.gflops), peak, f16 || peak];
  const [x0, x1] = decades(Math.min(...xs), Math.max(...xs));
  const [y0, y1] = decades(Math.min(...ys), Math.max(...ys) * 1.5);
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const sx = (x: number) => MARGIN.left + ((Math.log10(x) - x0) / (x1 - x0)) * plotW;
  const sy = (y: number) => MARGIN.top + plotH - ((Math.log10(y) - y0) / (y1 - y0)) * plotH;
  const fmt = (v: number) => (Math.abs(v) < 1e-9 ? "0" : v.toFixed(1));

  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`);
  parts.push(`<text x="${WIDTH / 2}" y="28" text-anchor="middle" font-size="16">${escapeXml(options.title)}</text>`);

  // Grid and axes.
  for (let e = x0; e <= x1; e++) {
    const x = sx(10 ** e);
    parts.push(`<line x1="${fmt(x)}" y1="${MARGIN.top}" x2="${fmt(x)}" y2="${MARGIN.top + plotH}" stroke="#ddd"/>`);
    parts.push(`<text x="${fmt(x)}" y="${MARGIN.top + plotH + 18}" text-anchor="middle">${10 ** e >= 1 ? 10 ** e : (10 ** e).toFixed(-e)}</text>`);
  }
  for (let e = y0; e <= y1; e++) {
    const y = sy(10 ** e);
    parts.push(`<line x1="${MARGIN.left}" y1="${fmt(y)}" x2="${MARGIN.left + plotW}" y2="${fmt(y)}" stroke="#ddd"/>`);
    parts.push(`<text x="${MARGIN.left - 8}" y="${fmt(y + 4)}" text-anchor="end">${10 ** e >= 1 ? 10 ** e : (10 ** e).toFixed(-e)}</text>`);
  }
  parts.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 15}" text-anchor="middle">arithmetic intensity (FLOP per byte moved, at least)</text>`);
  parts.push(`<text transform="translate(20 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">GFLOP/s achieved</text>`);

  // Ceilings, clipped to the plot.
  const xMin = 10 ** x0;
  const xMax = 10 ** x1;
  const yMin = 10 ** y0;
  const memoryStart = Math.max(xMin, yMin / bw);
  parts.push(
    `<polyline fill="none" stroke="#000" stroke-width="2" points="${fmt(sx(memoryStart))},${fmt(sy(memoryStart * bw))} ${fmt(sx(ridge))},${fmt(sy(peak))} ${fmt(sx(xMax))},${fmt(sy(peak))}"/>`,
  );
  parts.push(`<text x="${fmt(sx(xMax) - 4)}" y="${fmt(sy(peak) - 6)}" text-anchor="end">f32 FMA ${peak.toFixed(1)} GFLOP/s</text>`);
  parts.push(
    `<text transform="translate(${fmt(sx(memoryStart) + 8)} ${fmt(sy(memoryStart * bw) - 8)}) rotate(${fmt(-(Math.atan2(sy(memoryStart * bw) - sy(ridge * bw), sx(ridge) - sx(memoryStart)) * 180) / Math.PI)})">${bw.toFixed(1)} GB/s</text>`,
  );
  if (f16 > 0) {
    parts.push(`<line x1="${fmt(sx(f16 / bw))}" y1="${fmt(sy(f16))}" x2="${fmt(sx(xMax))}" y2="${fmt(sy(f16))}" stroke="#888" stroke-dasharray="6 4"/>`);
    parts.push(`<text x="${fmt(sx(xMax) - 4)}" y="${fmt(sy(f16) + 14)}" text-anchor="end" fill="#666">f16 FMA ${f16.toFixed(1)} GFLOP/s</text>`);
  }
  const read = limits.read.value;
  if (read < bw) {
    const start = Math.max(xMin, yMin / read);
    const end = Math.min(xMax, peak / read);
    parts.push(`<line x1="${fmt(sx(start))}" y1="${fmt(sy(start * read))}" x2="${fmt(sx(end))}" y2="${fmt(sy(end * read))}" stroke="#888" stroke-dasharray="6 4"/>`);
    parts.push(`<text x="${fmt(sx(start) + 8)}" y="${fmt(sy(start * read) + 16)}" fill="#666">read kernel ${read.toFixed(2)} GB/s</text>`);
  }

  // Points: kernels with numbered versions get a colour per version and a marker per kernel;
  // single-version kernels are grey and labelled. Hollow: a version the runtime does not pick here.
  const versioned = [...new Set(points.filter((p) => p.picked !== null).map((p) => `${p.op} ${p.version}`))];
  const ops = [...new Set(points.filter((p) => p.picked !== null).map((p) => p.op))];
  const colour = (p: KernelResult) => (p.picked === null ? "#444" : PALETTE[versioned.indexOf(`${p.op} ${p.version}`) % PALETTE.length]);
  const marker = (op: string | null, x: number, y: number, fill: string, stroke: string, title = "") => {
    const t = title ? `<title>${escapeXml(title)}</title>` : "";
    const shape = op === null ? 2 : ops.indexOf(op) % 3;
    const attrs = `fill="${fill}" stroke="${stroke}" stroke-width="2"`;
    if (shape === 0) return `<circle cx="${fmt(x)}" cy="${fmt(y)}" r="5" ${attrs}>${t}</circle>`;
    if (shape === 1) return `<rect x="${fmt(x - 4.5)}" y="${fmt(y - 4.5)}" width="9" height="9" ${attrs}>${t}</rect>`;
    return `<path d="M${fmt(x)} ${fmt(y - 6)} L${fmt(x + 6)} ${fmt(y)} L${fmt(x)} ${fmt(y + 6)} L${fmt(x - 6)} ${fmt(y)} Z" ${attrs}>${t}</path>`;
  };
  for (const p of points) {
    const label = `${p.op} ${p.version}, ${p.model} ${p.phase}, ${p.what} ${p.shape}: ${p.gflops.toFixed(3)} GFLOP/s, ${p.gbps.toFixed(3)} GB/s`;
    const [x, y] = [sx(p.intensity), sy(p.gflops)];
    parts.push(marker(p.picked === null ? null : p.op, x, y, p.picked === false ? "white" : colour(p), colour(p), label));
    if (p.picked === null) parts.push(`<text x="${fmt(x + 8)}" y="${fmt(y + 4)}" font-size="10" fill="#444">${escapeXml(p.op)}</text>`);
  }

  // Legend.
  const lx = MARGIN.left + plotW + 20;
  let ly = MARGIN.top + 10;
  for (const op of ops) {
    parts.push(`<text x="${lx}" y="${ly}" font-weight="bold">${escapeXml(op)}</text>`);
    for (const key of versioned.filter((k) => k.startsWith(`${op} `))) {
      ly += 18;
      const c = PALETTE[versioned.indexOf(key) % PALETTE.length];
      parts.push(marker(op, lx + 6, ly - 4, c, c));
      parts.push(`<text x="${lx + 18}" y="${ly}">${escapeXml(key.slice(op.length + 1))}</text>`);
    }
    ly += 26;
  }
  parts.push(marker(null, lx + 6, ly - 4, "#444", "#444"));
  parts.push(`<text x="${lx + 18}" y="${ly}">other kernels (one version)</text>`);
  ly += 22;
  parts.push(`<circle cx="${lx + 6}" cy="${ly - 4}" r="5" fill="white" stroke="#333" stroke-width="2"/>`);
  parts.push(`<text x="${lx + 18}" y="${ly}">hollow: not the runtime's pick</text>`);
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}

/** The SVG as a PNG image. */
export function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg)).png().toBuffer();
}

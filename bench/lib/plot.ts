// A small hand-written SVG line chart for benchmark results (no dependencies):
//   linePlotSVG({ title, xLabel, yLabel, series: [{ name, points: [[x, y], ...] }] })
export interface PlotSeries {
  name: string;
  points: [number, number][];
}

export interface LinePlot {
  title: string;
  xLabel: string;
  yLabel: string;
  series: PlotSeries[];
  /** Logarithmic axes (default false). */
  logX?: boolean;
  logY?: boolean;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function linePlotSVG(plot: LinePlot): string {
  const W = 720, H = 420, L = 70, R = 190, T = 40, B = 50;
  const pts = plot.series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  const xs = pts.map(([x]) => x);
  const ys = pts.map(([, y]) => y).filter((y) => !plot.logY || y > 0);
  const fx = (x: number): number => (plot.logX ? Math.log10(x) : x);
  const xMin = plot.logX ? Math.floor(fx(Math.min(...xs))) : Math.min(...xs, 0);
  const xMax = plot.logX ? Math.ceil(fx(Math.max(...xs))) : Math.max(...xs, 1);
  const fy = (y: number): number => (plot.logY ? Math.log10(y) : y);
  const yMin = plot.logY ? Math.floor(fy(Math.min(...ys, 1))) : 0;
  const yMax = plot.logY ? Math.ceil(fy(Math.max(...ys, 1))) : Math.max(...ys, 1) * 1.1;
  const px = (x: number): number => L + ((fx(x) - xMin) / (xMax - xMin || 1)) * (W - L - R);
  const py = (y: number): number => H - B - ((fy(y) - yMin) / (yMax - yMin || 1)) * (H - T - B);
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - R / 2}" y="22" text-anchor="middle" font-size="15">${esc(plot.title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${esc(plot.xLabel)}</text>`,
    `<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${esc(plot.yLabel)}</text>`];
  for (let i = 0; i <= 5; i++) {
    const xv = xMin + ((xMax - xMin) * i) / 5;
    const x = plot.logX ? 10 ** xv : xv;
    out.push(`<text x="${px(x)}" y="${H - B + 16}" text-anchor="middle">${+x.toPrecision(3)}</text>`);
    const v = yMin + ((yMax - yMin) * i) / 5;
    const y = plot.logY ? 10 ** v : v;
    out.push(`<line x1="${L}" y1="${py(y)}" x2="${W - R}" y2="${py(y)}" stroke="#ddd"/>`, `<text x="${L - 6}" y="${py(y) + 4}" text-anchor="end">${+y.toPrecision(3)}</text>`);
  }
  plot.series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const ok = s.points.filter(([x, y]) => Number.isFinite(y) && (!plot.logY || y > 0) && (!plot.logX || x > 0));
    out.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${ok.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>`);
    for (const [x, y] of ok) out.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${c}"/>`);
    out.push(`<rect x="${W - R + 12}" y="${T + i * 20}" width="12" height="12" fill="${c}"/>`, `<text x="${W - R + 30}" y="${T + i * 20 + 10}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

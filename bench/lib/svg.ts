/**
 * A minimal SVG line chart for benchmark plots: no plotting library in the
 * Node ecosystem is small enough to be worth a dependency for a few charts.
 */
export interface Series {
  name: string;
  points: { x: number; y: number; label?: string }[];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");

/** A tick value with as many decimals as ticks a fifth of `range` apart need (at most 4). */
function tick(value: number, range: number): string {
  const step = range / 5;
  const decimals = step > 0 ? Math.min(4, Math.max(0, 1 - Math.floor(Math.log10(step)))) : 1;
  return value.toFixed(decimals);
}

export function lineChart(series: Series[], o: ChartOptions): string {
  const W = o.width ?? 720;
  const H = o.height ?? 440;
  const m = { l: 70, r: 160, t: 40, b: 55 };
  const all = series.flatMap((s) => s.points);
  const span = (vals: number[]) => {
    const lo = Math.min(...vals);
    const hi = Math.max(...vals);
    const pad = (hi - lo || Math.abs(hi) || 1) * 0.08;
    return [lo - pad, hi + pad] as const;
  };
  const [x0, x1] = span(all.map((p) => p.x));
  const [y0, y1] = span(all.map((p) => p.y));
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = (y: number) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const ticks = (lo: number, hi: number) => Array.from({ length: 6 }, (_, i) => lo + ((hi - lo) * i) / 5);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${W / 2 - m.r / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`,
  ];
  for (const t of ticks(x0, x1)) {
    parts.push(`<line x1="${sx(t)}" x2="${sx(t)}" y1="${m.t}" y2="${H - m.b}" stroke="#eee"/>`);
    parts.push(`<text x="${sx(t)}" y="${H - m.b + 16}" text-anchor="middle">${tick(t, x1 - x0)}</text>`);
  }
  for (const t of ticks(y0, y1)) {
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/>`);
    parts.push(`<text x="${m.l - 6}" y="${sy(t) + 4}" text-anchor="end">${tick(t, y1 - y0)}</text>`);
  }
  parts.push(
    `<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#333"/>`,
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 14}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(16 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`,
  );
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    parts.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" ")}"/>`,
    );
    for (const p of pts) {
      parts.push(`<circle cx="${sx(p.x)}" cy="${sy(p.y)}" r="4" fill="${color}"/>`);
      if (p.label)
        parts.push(`<text x="${sx(p.x) + 6}" y="${sy(p.y) - 6}" fill="${color}">${esc(p.label)}</text>`);
    }
    parts.push(
      `<rect x="${W - m.r + 14}" y="${m.t + 18 * i}" width="12" height="12" fill="${color}"/>`,
      `<text x="${W - m.r + 32}" y="${m.t + 10 + 18 * i}">${esc(s.name)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}

/** Charts made by lineChart, one above the other in one SVG. */
export function stackCharts(charts: string[]): string {
  const size = (svg: string, attr: "width" | "height") =>
    Number(new RegExp(`${attr}="(\\d+)"`).exec(svg)?.[1] ?? 0);
  const width = Math.max(...charts.map((c) => size(c, "width")));
  let y = 0;
  const placed = charts.map((c) => {
    const at = y;
    y += size(c, "height");
    return c.replace("<svg ", `<svg y="${at}" `);
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}">`,
    ...placed,
    `</svg>`,
  ].join("\n");
}

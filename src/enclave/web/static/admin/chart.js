// A time-series chart on uPlot that follows the theme (colors from the CSS variables) and
// the width of its box (a ResizeObserver); one per card on the dashboard.
import { html, useEffect, useRef } from "../vendor/preact.js";
import uPlot from "../vendor/uplot.js";

// Series colors by CSS variable (defined in admin.css for both themes).
export const COLORS = ["--chart-1", "--chart-2", "--chart-3", "--chart-4"];

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function options(width, series, format, timeLabel) {
  const text = cssVar("--muted");
  const line = cssVar("--line");
  const axis = { stroke: text, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
  return {
    width,
    height: 200,
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    axes: [axis, { ...axis, size: 72, values: (u, ticks) => ticks.map(format) }],
    series: [
      {
        label: timeLabel,
        value: (u, value) => (value === null || value === undefined ? "–" : new Date(value * 1000).toLocaleString()),
      },
      ...series.map((item, i) => ({
        label: item.label,
        stroke: cssVar(item.color || COLORS[i % COLORS.length]),
        width: 2,
        // sparse series (percentiles: no value in a quiet bucket) show their points
        points: item.sparse ? { show: true, size: 6, fill: cssVar(item.color || COLORS[i % COLORS.length]) } : { show: false },
        spanGaps: true,
        value: (u, value) => (value === null || value === undefined ? "–" : format(value)),
      })),
    ],
  };
}

// series: [{label, color?, sparse?}]; data: [xs (seconds), ys...]; format: a y value -> text.
export function Chart({ series, data, format = String, testid, timeLabel = "Time" }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const element = box.current;
    const make = () => {
      plot.current?.destroy();
      plot.current = new uPlot(options(Math.max(element.clientWidth, 200), series, format, timeLabel), data, element);
    };
    make();
    let width = element.clientWidth;
    const resized = new ResizeObserver(() => {
      if (Math.abs(element.clientWidth - width) < 2) return;
      width = element.clientWidth;
      plot.current?.setSize({ width: Math.max(width, 200), height: 200 });
    });
    resized.observe(element);
    // A theme switch sets <html data-theme>: draw again with its colors.
    const themed = new MutationObserver(make);
    themed.observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
    return () => {
      resized.disconnect();
      themed.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [data, series, timeLabel]);
  return html`<div class="chart" ref=${box} data-testid=${testid}></div>`;
}

/* metaloop charts: small SVG charts for the dashboard and the report.
 *
 * Every label and tooltip is set with textContent (never parsed as markup), so any name or
 * value coming from a store is shown as text.  Charts draw into a container element,
 * replacing what was there; sizes are in viewBox units and scale with the container.
 */
(function (global) {
  "use strict";

  const NS = "http://www.w3.org/2000/svg";
  const W = 640;
  const H = 300;
  const M = { top: 22, right: 18, bottom: 44, left: 64 };

  function el(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function title(node, text) {
    node.appendChild(el("title", {}, text));
    return node;
  }

  function finite(v) {
    return typeof v === "number" && Number.isFinite(v);
  }

  function extent(values) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of values) {
      if (finite(v)) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    if (lo === Infinity) return [0, 1];
    if (lo === hi) {
      const pad = lo === 0 ? 1 : Math.abs(lo) * 0.05;
      return [lo - pad, hi + pad];
    }
    return [lo, hi];
  }

  function niceStep(span, count) {
    const raw = span / Math.max(count, 1);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const r = raw / mag;
    const f = r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10;
    return f * mag;
  }

  function ticks(lo, hi, count) {
    const step = niceStep(hi - lo, count);
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
      out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
      if (out.length > 50) break;
    }
    return out;
  }

  function fmt(v) {
    if (!finite(v)) return v === null || v === undefined ? "–" : String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
    return String(Number(v.toPrecision(5)));
  }

  /* A log axis's tick: 1e-6 rather than 1.000e-6. */
  function fmtShort(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) {
      const one = v.toExponential(0);
      const text = Math.abs(Number(one) - v) <= a * 1e-9 ? one : v.toExponential(2);
      return text.replace("e+", "e");
    }
    return fmt(v);
  }

  // Colours from dark violet (worst) to yellow (best); our own stops.
  const STOPS = [
    [72, 30, 112],
    [52, 96, 160],
    [30, 150, 140],
    [110, 190, 80],
    [236, 214, 40],
  ];

  function color(t) {
    if (!finite(t)) return "#b9b9b9";
    const x = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
    const i = Math.min(Math.floor(x), STOPS.length - 2);
    const f = x - i;
    const c = STOPS[i].map((a, k) => Math.round(a + (STOPS[i + 1][k] - a) * f));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  function normalizer(values) {
    const [lo, hi] = extent(values);
    return (v) => (finite(v) ? (hi > lo ? (v - lo) / (hi - lo) : 1) : null);
  }

  /* Colour positions by rank: the worst finite value 0, the best 1, ties share their mean
   * rank, evenly spaced whatever the values' spread (a converged run's points still differ);
   * non-finite values (failures) null. */
  function ranks(values) {
    const idx = [];
    values.forEach((v, i) => {
      if (finite(v)) idx.push(i);
    });
    idx.sort((a, b) => values[a] - values[b]);
    const out = values.map(() => null);
    const n = idx.length;
    for (let k = 0; k < n; ) {
      let m = k;
      while (m + 1 < n && values[idx[m + 1]] === values[idx[k]]) m++;
      const t = n > 1 ? (k + m) / 2 / (n - 1) : 1;
      for (let q = k; q <= m; q++) out[idx[q]] = t;
      k = m + 1;
    }
    return out;
  }

  /* The y scale of a fitness chart: null for linear, else {kind, f, ticks} where f maps a
   * value to the plotted coordinate.  mode "auto" takes a log scale when no value is negative
   * and the positive values span 2 decades or more; "log" always.  With every value > 0 the
   * scale is log10; otherwise symlog: sign(v) * log10(1 + |v| / c), c the smallest non-zero
   * |v|, so 0 and negative values keep their place (about linear within ±c). */
  function yScale(values, mode) {
    if (mode !== "log" && mode !== "auto") return null;
    let lo = Infinity;
    let hi = -Infinity;
    let small = Infinity;
    let negative = false;
    let nonPositive = false;
    let any = false;
    for (const v of values) {
      if (!finite(v)) continue;
      any = true;
      if (v > 0) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      } else nonPositive = true;
      if (v < 0) negative = true;
      if (v !== 0) small = Math.min(small, Math.abs(v));
    }
    if (!any) return null;
    const decades = hi >= lo ? Math.log10(hi / lo) : 0;
    if (mode === "auto" && (negative || decades < 2)) return null;
    if (!nonPositive) {
      return { kind: "log", f: Math.log10, ticks: (a, b) => decadeTicks(a, b, (k) => Math.pow(10, k)) };
    }
    const c = small === Infinity ? 1 : small;
    const f = (v) => Math.sign(v) * Math.log10(1 + Math.abs(v) / c);
    const ticks = (a, b) => {
      const out = [0];
      for (let k = 0; k < 400; k++) {
        const v = c * Math.pow(10, k);
        if (f(v) > Math.max(Math.abs(a), Math.abs(b)) + 1e-9) break;
        out.push(v, -v);
      }
      const inside = out.filter((v) => f(v) >= a - 1e-9 && f(v) <= b + 1e-9).sort((x, y) => x - y);
      const step = Math.ceil(inside.length / 9);
      return inside.filter((v, i) => v === 0 || i % step === 0);
    };
    return { kind: "symlog", f, ticks };
  }

  /* Ticks of a log10 axis over [a, b] (in decades): 10^k, thinned to about 8; with under two
   * decades also 2 and 5 times them. */
  function decadeTicks(a, b, value) {
    const out = [];
    const k0 = Math.ceil(a - 1e-9);
    const k1 = Math.floor(b + 1e-9);
    const step = Math.max(1, Math.ceil((k1 - k0 + 1) / 8));
    for (let k = k0; k <= k1; k += step) out.push(value(k));
    if (k1 - k0 < 2) {
      for (let k = Math.floor(a) - 1; k <= Math.ceil(b); k++) {
        for (const m of [2, 5]) {
          const v = m * value(k);
          const lv = Math.log10(v);
          if (lv >= a - 1e-9 && lv <= b + 1e-9) out.push(v);
        }
      }
    }
    return out.sort((x, y) => x - y);
  }

  function root(container, height, width) {
    const svg = el("svg", {
      viewBox: `0 0 ${width || W} ${height || H}`,
      class: "chart",
      role: "img",
      preserveAspectRatio: "xMidYMid meet",
    });
    container.replaceChildren(svg);
    return svg;
  }

  function empty(container, message) {
    const svg = root(container, 80);
    svg.appendChild(el("text", { x: W / 2, y: 44, "text-anchor": "middle", class: "empty" }, message));
    return svg;
  }

  /* Axes and grid for numeric domains (or category labels); returns the scales. */
  function frame(svg, o) {
    const height = o.height || H;
    const x0 = M.left;
    const x1 = W - M.right;
    const y0 = height - M.bottom;
    const y1 = M.top;
    const [xl, xh] = o.xDomain;
    const [yl, yh] = o.yDomain;
    const x = (v) => x0 + ((v - xl) / (xh - xl || 1)) * (x1 - x0);
    const ys = o.yScale;
    const y = (v) => y0 - (((ys ? ys.f(v) : v) - yl) / (yh - yl || 1)) * (y0 - y1);
    const g = el("g", { class: "axes" });
    const xt = o.xCategories ? o.xCategories.map((_, i) => i) : ticks(xl, xh, 7);
    for (const t of xt) {
      if (o.xInteger && !Number.isInteger(t)) continue;
      g.appendChild(el("line", { x1: x(t), x2: x(t), y1: y0, y2: y1, class: "grid" }));
      const label = o.xCategories ? o.xCategories[t] : fmt(t);
      g.appendChild(el("text", { x: x(t), y: y0 + 16, "text-anchor": "middle" }, label));
    }
    const yt = o.yCategories ? o.yCategories.map((_, i) => i) : ys ? ys.ticks(yl, yh) : ticks(yl, yh, 5);
    for (const t of yt) {
      g.appendChild(el("line", { x1: x0, x2: x1, y1: y(t), y2: y(t), class: "grid" }));
      const label = o.yCategories ? o.yCategories[t] : ys ? fmtShort(t) : fmt(t);
      g.appendChild(el("text", { x: x0 - 6, y: y(t) + 4, "text-anchor": "end" }, label));
    }
    g.appendChild(el("line", { x1: x0, x2: x1, y1: y0, y2: y0, class: "axis" }));
    g.appendChild(el("line", { x1: x0, x2: x0, y1: y0, y2: y1, class: "axis" }));
    if (o.xLabel) {
      g.appendChild(el("text", { x: (x0 + x1) / 2, y: height - 8, "text-anchor": "middle", class: "label" }, o.xLabel));
    }
    if (o.yLabel) {
      g.appendChild(
        el("text", { x: 14, y: (y0 + y1) / 2, "text-anchor": "middle", class: "label", transform: `rotate(-90 14 ${(y0 + y1) / 2})` }, o.yLabel)
      );
    }
    svg.appendChild(g);
    if (ys) svg.setAttribute("data-yscale", ys.kind);
    return { x, y, x0, x1, y0, y1 };
  }

  function legend(svg, items) {
    let xpos = M.left + 6;
    const g = el("g", { class: "legend" });
    for (const it of items) {
      g.appendChild(el("line", { x1: xpos, x2: xpos + 16, y1: 10, y2: 10, stroke: it.color, "stroke-width": 3 }));
      const t = el("text", { x: xpos + 20, y: 14 }, it.name);
      g.appendChild(t);
      xpos += 28 + 7 * String(it.name).length;
    }
    svg.appendChild(g);
  }

  function clickable(node, onclick) {
    if (onclick) {
      node.setAttribute("class", (node.getAttribute("class") || "") + " clickable");
      node.addEventListener("click", onclick);
    }
    return node;
  }

  /* Lines (series of [x, y]) over dots; o.series: [{name, points, color, width}],
   * o.dots: [{x, y, color, title, onclick}]. */
  function lineChart(container, o) {
    const series = o.series || [];
    const dots = o.dots || [];
    const xs = [];
    const ys = [];
    for (const s of series) for (const p of s.points) { xs.push(p[0]); ys.push(p[1]); }
    for (const d of dots) { xs.push(d.x); ys.push(d.y); }
    if (!xs.some(finite)) return empty(container, o.emptyText || "no data yet");
    const svg = root(container, o.height);
    const fy = o.yScale ? o.yScale.f : (v) => v;
    const f = frame(svg, { ...o, xDomain: extent(xs), yDomain: extent(ys.map(fy)) });
    const gd = el("g", { class: "dots" });
    for (const d of dots) {
      if (!finite(d.x) || !finite(d.y)) continue;
      const c = el("circle", { cx: f.x(d.x), cy: f.y(d.y), r: d.r || 2.5, fill: d.color || "#999", "fill-opacity": 0.6 });
      if (d.title) title(c, d.title);
      gd.appendChild(clickable(c, d.onclick));
    }
    svg.appendChild(gd);
    for (const s of series) {
      const pts = s.points.filter((p) => finite(p[0]) && finite(p[1]));
      if (!pts.length) continue;
      const d = pts.map((p, i) => `${i ? "L" : "M"}${f.x(p[0]).toFixed(2)},${f.y(p[1]).toFixed(2)}`).join("");
      const path = el("path", { d, fill: "none", stroke: s.color, "stroke-width": s.width || 2, class: "series" });
      if (s.name) title(path, s.name);
      svg.appendChild(path);
      if (pts.length === 1 || s.markers) {
        for (const p of pts) svg.appendChild(el("circle", { cx: f.x(p[0]), cy: f.y(p[1]), r: 3, fill: s.color }));
      }
    }
    legend(svg, series.filter((s) => s.name));
    return svg;
  }

  /* Box plots: o.boxes [{x, min, q1, median, q3, max, title}]. */
  function boxChart(container, o) {
    const boxes = (o.boxes || []).filter((b) => finite(b.median));
    if (!boxes.length) return empty(container, o.emptyText || "no data yet");
    const svg = root(container, o.height);
    const xs = boxes.map((b) => b.x);
    const [xl, xh] = extent(xs);
    const f = frame(svg, {
      ...o,
      xDomain: [xl - 0.5, xh + 0.5],
      yDomain: extent(boxes.flatMap((b) => [b.min, b.max]).map(o.yScale ? o.yScale.f : (v) => v)),
      xInteger: true,
    });
    const half = Math.max(1.5, Math.min(14, ((f.x1 - f.x0) / (xh - xl + 1)) * 0.35));
    for (const b of boxes) {
      const g = el("g", { class: "box" });
      const cx = f.x(b.x);
      g.appendChild(el("line", { x1: cx, x2: cx, y1: f.y(b.min), y2: f.y(b.max), class: "whisker" }));
      g.appendChild(
        el("rect", { x: cx - half, width: 2 * half, y: f.y(b.q3), height: Math.max(1, f.y(b.q1) - f.y(b.q3)), class: "iqr" })
      );
      g.appendChild(el("line", { x1: cx - half, x2: cx + half, y1: f.y(b.median), y2: f.y(b.median), class: "median" }));
      if (b.title) title(g, b.title);
      svg.appendChild(clickable(g, b.onclick));
    }
    return svg;
  }

  /* Scatter coloured by t in [0, 1] (null: grey); o.points [{x, y, t, title, ring, onclick}];
   * o.line: [[x, y], ...] drawn under the points (e.g. the Pareto front). */
  function scatterChart(container, o) {
    const pts = (o.points || []).filter((p) => finite(p.x) && finite(p.y));
    if (!pts.length) return empty(container, o.emptyText || "no data yet");
    const svg = root(container, o.height);
    const xd = o.xCategories ? [-0.5, o.xCategories.length - 0.5] : extent(pts.map((p) => p.x));
    const yd = o.yCategories ? [-0.5, o.yCategories.length - 0.5] : extent(pts.map((p) => p.y));
    const f = frame(svg, { ...o, xDomain: xd, yDomain: yd });
    if (o.line && o.line.length > 1) {
      const d = o.line.map((p, i) => `${i ? "L" : "M"}${f.x(p[0]).toFixed(2)},${f.y(p[1]).toFixed(2)}`).join("");
      svg.appendChild(el("path", { d, fill: "none", stroke: "#d62728", "stroke-width": 1.5, class: "front" }));
    }
    // failed (grey) first, then worst to best, so the best are drawn on top
    const order = pts.slice().sort((a, b) => (finite(a.t) ? a.t : -1) - (finite(b.t) ? b.t : -1));
    const g = el("g", { class: "points" });
    for (const p of order) {
      const c = el("circle", {
        cx: f.x(p.x),
        cy: f.y(p.y),
        r: p.ring ? 4.5 : 3.2,
        fill: color(p.t),
        stroke: p.ring ? "#d62728" : "none",
        "stroke-width": p.ring ? 1.5 : 0,
        "fill-opacity": 0.85,
      });
      if (p.title) title(c, p.title);
      g.appendChild(clickable(c, p.onclick));
    }
    svg.appendChild(g);
    if (o.colorLabel) colorBar(svg, o.colorLabel);
    return svg;
  }

  function colorBar(svg, label, width) {
    const g = el("g", { class: "colorbar" });
    const x = (width || W) - M.right - 120;
    for (let i = 0; i < 20; i++) {
      g.appendChild(el("rect", { x: x + i * 5, y: 4, width: 5.5, height: 8, fill: color(i / 19) }));
    }
    g.appendChild(el("text", { x: x - 4, y: 12, "text-anchor": "end" }, label));
    svg.appendChild(g);
  }

  /* Parallel coordinates: o.axes [{name, values, categories}] (values per line), o.t per
   * line (colour), o.titles per line, o.onclick(i). */
  function parallelCoordinates(container, o) {
    const axes = o.axes || [];
    const n = axes.length ? axes[0].values.length : 0;
    if (axes.length < 2 || !n) return empty(container, o.emptyText || "needs two or more parameters");
    const height = o.height || 320;
    const width = o.width || W;
    const svg = root(container, height, width);
    const x0 = 40;
    const x1 = width - 40;
    const y0 = height - 40;
    const y1 = 24;
    const ax = (j) => x0 + (j * (x1 - x0)) / (axes.length - 1);
    const scales = axes.map((a) => {
      const [lo, hi] = a.categories ? [-0.5, a.categories.length - 0.5] : extent(a.values);
      return (v) => y0 - ((v - lo) / (hi - lo || 1)) * (y0 - y1);
    });
    const order = [...Array(n).keys()].sort((a, b) => (finite(o.t[a]) ? o.t[a] : -1) - (finite(o.t[b]) ? o.t[b] : -1));
    const g = el("g", { class: "pc-lines" });
    for (const i of order) {
      const parts = [];
      for (let j = 0; j < axes.length; j++) {
        const v = axes[j].values[i];
        if (!finite(v)) continue;
        parts.push(`${parts.length ? "L" : "M"}${ax(j).toFixed(1)},${scales[j](v).toFixed(1)}`);
      }
      const p = el("path", { d: parts.join(""), fill: "none", stroke: color(o.t[i]), "stroke-opacity": finite(o.t[i]) ? 0.55 : 0.25 });
      if (o.titles) title(p, o.titles[i]);
      g.appendChild(clickable(p, o.onclick ? () => o.onclick(i) : null));
    }
    svg.appendChild(g);
    const ga = el("g", { class: "axes" });
    axes.forEach((a, j) => {
      ga.appendChild(el("line", { x1: ax(j), x2: ax(j), y1: y0, y2: y1, class: "axis" }));
      const anchor = j === 0 ? "start" : j === axes.length - 1 ? "end" : "middle";
      const label = el("text", { x: ax(j) + (j === 0 ? -30 : j === axes.length - 1 ? 30 : 0), y: y0 + 16, "text-anchor": anchor, class: "label" }, a.name);
      title(label, a.name);
      ga.appendChild(label);
      const [lo, hi] = a.categories ? [0, a.categories.length - 1] : extent(a.values);
      const loText = a.categories ? a.categories[0] : fmt(lo);
      const hiText = a.categories ? a.categories[a.categories.length - 1] : fmt(hi);
      ga.appendChild(el("text", { x: ax(j) + 3, y: y1 - 6, "text-anchor": "middle" }, hiText));
      ga.appendChild(el("text", { x: ax(j) + 3, y: y0 + 30, "text-anchor": "middle", class: "small" }, loText));
    });
    svg.appendChild(ga);
    if (o.colorLabel) colorBar(svg, o.colorLabel, width);
    return svg;
  }

  /* A pair plot (corner plot) of posterior draws: o.names, o.columns (one array of values per
   * parameter, the same draws in each), o.log (log10 axes), o.low / o.high (the prior's
   * bounds), o.range "draws" (axes span the draws) or "prior" (the bounds).  Diagonal: a
   * histogram per parameter (g.pp-hist); below it: a scatter per pair (g.pp-scatter); above
   * it: the same pair as binned density (g.pp-density). */
  function pairPlot(container, o) {
    const k = (o.names || []).length;
    const n = k ? o.columns[0].length : 0;
    if (!k || !n) return empty(container, o.emptyText || "no draws yet");
    const CELL = k === 1 ? 420 : k === 2 ? 260 : Math.max(110, Math.round(620 / k));
    const GAP = 8;
    const LEFT = 62;
    const BOTTOM = 46;
    const TOP = 8;
    const width = LEFT + k * CELL + (k - 1) * GAP + 12;
    const height = TOP + k * CELL + (k - 1) * GAP + BOTTOM;
    const svg = root(container, height, width);
    svg.setAttribute("class", "chart pairplot");
    const tf = o.columns.map((_, j) => (o.log && o.log[j] ? (v) => (v > 0 ? Math.log10(v) : NaN) : (v) => v));
    const cols = o.columns.map((c, j) => c.map(tf[j]));
    const domains = cols.map((c, j) => {
      const lo = tf[j](o.low ? o.low[j] : NaN);
      const hi = tf[j](o.high ? o.high[j] : NaN);
      if (o.range === "prior" && finite(lo) && finite(hi) && hi > lo) return [lo, hi];
      let [a, b] = extent(c);
      const pad = (b - a) * 0.04;
      a -= pad;
      b += pad;
      if (finite(lo)) a = Math.max(a, lo);
      if (finite(hi)) b = Math.min(b, hi);
      return b > a ? [a, b] : extent(c);
    });
    const cx = (j) => LEFT + j * (CELL + GAP);
    const cy = (i) => TOP + i * (CELL + GAP);
    const sx = (j, v) => cx(j) + ((v - domains[j][0]) / (domains[j][1] - domains[j][0])) * CELL;
    const sy = (i, v) => cy(i) + CELL - ((v - domains[i][0]) / (domains[i][1] - domains[i][0])) * CELL;
    const axisTicks = (j) => {
      const [a, b] = domains[j];
      if (o.log && o.log[j]) {
        if (b - a >= 1) return decadeTicks(a, b, (e) => Math.pow(10, e)).map((v) => [Math.log10(v), fmtShort(v)]);
        // under a decade: round values, placed on the log axis
        return ticks(Math.pow(10, a), Math.pow(10, b), 3).filter((v) => v > 0).map((v) => [Math.log10(v), fmt(v)]);
      }
      return ticks(a, b, CELL < 160 ? 3 : 4).map((v) => [v, fmt(v)]);
    };
    const label = (j) => o.names[j] + (o.log && o.log[j] ? " (log)" : "");
    const BINS = CELL < 160 ? 16 : 24;
    const GRID = CELL < 160 ? 12 : 18;
    const binOf = (j, v) => Math.min(BINS - 1, Math.floor(((v - domains[j][0]) / (domains[j][1] - domains[j][0])) * BINS));
    for (let i = 0; i < k; i++) {
      for (let j = 0; j <= k - 1; j++) {
        const g = el("g", { class: "pp-cell", "data-row": i, "data-col": j });
        g.appendChild(el("rect", { x: cx(j), y: cy(i), width: CELL, height: CELL, class: "pp-frame" }));
        if (i === j) {
          const counts = new Array(BINS).fill(0);
          for (const v of cols[j]) {
            if (!finite(v) || v < domains[j][0] || v > domains[j][1]) continue;
            counts[binOf(j, v)] += 1;
          }
          const top = Math.max(...counts, 1);
          const hist = el("g", { class: "pp-hist", "data-name": o.names[j] });
          const bw = CELL / BINS;
          counts.forEach((c, b) => {
            if (!c) return;
            const hgt = (c / top) * (CELL - 6);
            hist.appendChild(el("rect", { x: cx(j) + b * bw, y: cy(i) + CELL - hgt, width: Math.max(bw - 0.6, 0.5), height: hgt, class: "pp-bar" }));
          });
          title(hist, `${o.names[j]}: ${n} draws`);
          g.appendChild(hist);
        } else if (i > j) {
          const sc = el("g", { class: "pp-scatter", "data-x": o.names[j], "data-y": o.names[i] });
          for (let q = 0; q < n; q++) {
            const x = cols[j][q];
            const y = cols[i][q];
            if (!finite(x) || !finite(y)) continue;
            if (x < domains[j][0] || x > domains[j][1] || y < domains[i][0] || y > domains[i][1]) continue;
            sc.appendChild(el("circle", { cx: sx(j, x).toFixed(1), cy: sy(i, y).toFixed(1), r: 1.4, class: "pp-dot" }));
          }
          title(sc, `${o.names[j]} and ${o.names[i]}`);
          g.appendChild(sc);
        } else {
          const counts = new Array(GRID * GRID).fill(0);
          const at = (jj, v) => Math.min(GRID - 1, Math.floor(((v - domains[jj][0]) / (domains[jj][1] - domains[jj][0])) * GRID));
          for (let q = 0; q < n; q++) {
            const x = cols[j][q];
            const y = cols[i][q];
            if (!finite(x) || !finite(y)) continue;
            if (x < domains[j][0] || x > domains[j][1] || y < domains[i][0] || y > domains[i][1]) continue;
            counts[at(i, y) * GRID + at(j, x)] += 1;
          }
          const top = Math.max(...counts, 1);
          const dens = el("g", { class: "pp-density", "data-x": o.names[j], "data-y": o.names[i] });
          const s = CELL / GRID;
          counts.forEach((c, idx) => {
            if (!c) return;
            const a = idx % GRID;
            const b = Math.floor(idx / GRID);
            dens.appendChild(el("rect", { x: cx(j) + a * s, y: cy(i) + CELL - (b + 1) * s, width: s, height: s, fill: color(c / top), "fill-opacity": 0.9 }));
          });
          title(dens, `${o.names[j]} and ${o.names[i]}: density of the draws`);
          g.appendChild(dens);
        }
        svg.appendChild(g);
      }
    }
    const ga = el("g", { class: "axes" });
    for (let j = 0; j < k; j++) {
      const yb = cy(k - 1) + CELL;
      for (const [v, text] of axisTicks(j)) {
        const x = sx(j, v);
        ga.appendChild(el("line", { x1: x, x2: x, y1: yb, y2: yb + 4, class: "axis" }));
        ga.appendChild(el("text", { x, y: yb + 15, "text-anchor": "middle" }, text));
      }
      ga.appendChild(el("text", { x: cx(j) + CELL / 2, y: yb + 34, "text-anchor": "middle", class: "label" }, label(j)));
    }
    for (let i = 1; i < k; i++) {
      for (const [v, text] of axisTicks(i)) {
        const y = sy(i, v);
        ga.appendChild(el("line", { x1: LEFT - 4, x2: LEFT, y1: y, y2: y, class: "axis" }));
        ga.appendChild(el("text", { x: LEFT - 6, y: y + 4, "text-anchor": "end" }, text));
      }
      const ym = cy(i) + CELL / 2;
      ga.appendChild(el("text", { x: 12, y: ym, "text-anchor": "middle", class: "label", transform: `rotate(-90 12 ${ym})` }, label(i)));
    }
    svg.appendChild(ga);
    return svg;
  }

  global.MetaloopCharts = {
    pairPlot,
    lineChart,
    boxChart,
    scatterChart,
    parallelCoordinates,
    empty,
    color,
    normalizer,
    ranks,
    yScale,
    fmt,
  };
})(window);

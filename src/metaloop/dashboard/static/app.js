/* metaloop dashboard page (and the report's viewer).
 *
 * Live mode polls the JSON API every second; report mode (a script element "metaloop-report"
 * holds the data) shows the same views from the embedded data, without steering.
 * All text from the store is inserted with textContent / createTextNode: never as HTML.
 */
(function () {
  "use strict";

  const C = window.MetaloopCharts;
  const reportNode = document.getElementById("metaloop-report");
  const REPORT = reportNode ? JSON.parse(reportNode.textContent) : null;
  const TOKEN_KEY = "metaloop-token";
  const POLL_MS = 1000;
  const LIST_MS = 1500;
  const PROV_MS = 30000; // the provenance (hosts grow with evaluations) at most this often
  const PAIR_MAX = 6; // parameters in the posterior's pair plot (the marginals table has all)
  const STATUSES = ["ok", "pruned", "failed", "timeout", "crashed", "invalid", "running"];

  const S = {
    token: null,
    info: null,
    exp: null,
    summary: null,
    version: null,
    query: { sort: "generation", order: "desc", status: "", generation: "", q: "", offset: 0, limit: 25 },
    detail: null, // {g, i}
    detailData: null,
    objective: 0,
    yScale: "auto", // fitness axis: "auto" (log when the values span 2+ decades), "linear", "log"
    evalFromUrl: null, // {g, i} named by the URL (#exp=NAME&eval=G/I), opened once loaded
    param: null,
    paretoAxes: [0, 1],
    hp: null,
    blobs: new Map(),
    stopArmed: false,
    list: null,
    listAt: 0,
    lastControl: null,
    postRound: null, // the posterior's round shown (null: the latest)
    postRange: "draws", // the pair plot's axes: "draws" or "prior"
    post: null,
    postKey: null, // generation and status the posterior was read at
    provKey: null, // the status the provenance was read at
    provAt: 0,
  };

  // ---- DOM helpers ------------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "value") e.value = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    add(e, kids);
    return e;
  }

  function add(parent, kids) {
    for (const k of kids) {
      if (k === null || k === undefined || k === false) continue;
      if (Array.isArray(k)) add(parent, k);
      else if (k instanceof Node) parent.appendChild(k);
      else parent.appendChild(document.createTextNode(String(k)));
    }
  }

  function setKids(node, ...kids) {
    node.replaceChildren();
    add(node, kids);
    return node;
  }

  function $(id) {
    return document.getElementById(id);
  }

  function fill(id, ...kids) {
    const e = $(id);
    if (e) {
      e.replaceChildren();
      add(e, kids);
    }
    return e;
  }

  function num(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") return C.fmt(v);
    if (typeof v === "boolean") return v ? "true" : "false";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function fitnessText(f) {
    if (!f) return "–";
    return f.map(num).join(", ");
  }

  function when(t) {
    if (!t) return "–";
    return new Date(t * 1000).toLocaleString();
  }

  function duration(s) {
    if (s === null || s === undefined || !Number.isFinite(s)) return "–";
    if (s < 1) return `${(s * 1000).toFixed(0)} ms`;
    if (s < 90) return `${s.toFixed(1)} s`;
    if (s < 5400) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    if (s < 172800) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
    return `${(s / 86400).toFixed(1)} d`;
  }

  function card(label, id, value) {
    return h("div", { class: "card" }, h("div", { class: "card-label" }, label), h("div", { class: "card-value", id }, value));
  }

  function section(id, heading, ...kids) {
    return h("section", { id, class: "panel" }, h("h2", {}, heading), ...kids);
  }

  function table(headers, rows, attrs) {
    return h(
      "table",
      attrs || {},
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))
    );
  }

  function kvTable(obj, id) {
    const rows = Object.entries(obj || {}).map(([k, v]) => [k, num(v)]);
    return table(["name", "value"], rows, { class: "kv", id });
  }

  // ---- data sources -----------------------------------------------------------------------
  class HttpError extends Error {
    constructor(status, body) {
      super((body && body.error) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function api(path, body) {
    const headers = {};
    if (S.token) headers.Authorization = "Bearer " + S.token;
    const init = { headers, cache: "no-store" };
    if (body !== undefined) {
      init.method = "POST";
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch("api/" + path, init);
    let data = null;
    try {
      data = await r.json();
    } catch (e) {
      data = null;
    }
    if (!r.ok) throw new HttpError(r.status, data);
    return data;
  }

  function ex(name) {
    return "experiments/" + encodeURIComponent(name);
  }

  function queryString(q) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== "" && v !== null && v !== undefined) p.set(k, String(v));
    return p.toString();
  }

  const live = {
    experiments: () => api("experiments"),
    summary: (n) => api(ex(n)),
    generations: (n) => api(ex(n) + "/generations"),
    exploration: (n) => api(ex(n) + "/exploration"),
    pareto: (n) => api(ex(n) + "/pareto"),
    hyperparameters: (n) => api(ex(n) + "/hyperparameters"),
    controls: (n) => api(ex(n) + "/controls"),
    posterior: (n, r) => api(ex(n) + "/posterior" + (r === null ? "" : "?round=" + r)),
    provenance: (n) => api(ex(n) + "/provenance"),
    evaluations: (n, q) => api(ex(n) + "/evaluations?" + queryString(q)),
    detail: (n, g, i) => api(`${ex(n)}/evaluations/${g}/${i}`),
    artifactUrl: async (n, g, i, a) => {
      const key = JSON.stringify([n, g, i, a.name, a.size]);
      if (S.blobs.has(key)) return S.blobs.get(key);
      const headers = S.token ? { Authorization: "Bearer " + S.token } : {};
      const q = new URLSearchParams({ name: a.name });
      const r = await fetch(`api/${ex(n)}/evaluations/${g}/${i}/artifact?${q}`, { headers });
      if (!r.ok) throw new HttpError(r.status, null);
      const url = URL.createObjectURL(await r.blob());
      S.blobs.set(key, url);
      return url;
    },
  };

  function sortValue(row, key) {
    if (key.startsWith("fitness.")) {
      const k = Number(key.slice(8));
      return row.fitness && k < row.fitness.length ? row.fitness[k] : null;
    }
    if (key.startsWith("param.")) return row.params[key.slice(6)];
    if (key.startsWith("metric.")) return row.metrics[key.slice(7)];
    return row[key];
  }

  function compare(a, b) {
    const ra = typeof a === "number" || typeof a === "boolean" ? 0 : 1;
    const rb = typeof b === "number" || typeof b === "boolean" ? 0 : 1;
    if (ra !== rb) return ra - rb;
    if (ra === 0) return Number(a) - Number(b);
    return String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0;
  }

  /* The report's client-side version of the API's filter/sort/page. */
  function queryRows(rows, q) {
    let out = rows;
    if (q.status) out = out.filter((r) => r.status === q.status);
    if (q.generation !== "" && q.generation !== null && q.generation !== undefined) {
      out = out.filter((r) => r.generation === Number(q.generation));
    }
    if (q.q) {
      const needle = q.q.toLowerCase();
      out = out.filter((r) => {
        const parts = Object.entries(r.params).map(([k, v]) => `${k}=${v}`);
        parts.push(...Object.entries(r.metrics).map(([k, v]) => `${k}=${v}`));
        parts.push(r.error || "", r.host || "", r.status);
        return parts.join(" ").toLowerCase().includes(needle);
      });
    }
    const present = out.filter((r) => sortValue(r, q.sort) !== null && sortValue(r, q.sort) !== undefined);
    const missing = out.filter((r) => sortValue(r, q.sort) === null || sortValue(r, q.sort) === undefined);
    present.sort((a, b) => compare(sortValue(a, q.sort), sortValue(b, q.sort)) * (q.order === "desc" ? -1 : 1));
    out = present.concat(missing);
    return { total: out.length, offset: q.offset, rows: out.slice(q.offset, q.offset + q.limit) };
  }

  const report = REPORT && {
    experiments: async () => ({ experiments: [REPORT.summary], launches: [] }),
    summary: async () => REPORT.summary,
    generations: async () => REPORT.generations,
    exploration: async () => REPORT.exploration,
    pareto: async () => REPORT.pareto,
    hyperparameters: async () => REPORT.hyperparameters,
    controls: async () => ({ controls: REPORT.controls }),
    posterior: async () => REPORT.posterior,
    evaluations: async (n, q) => ({ ...queryRows(REPORT.rows, q), columns: REPORT.columns }),
    detail: async (n, g, i) => {
      const key = `${g}/${i}`;
      if (REPORT.details[key]) return REPORT.details[key];
      const row = REPORT.rows.find((r) => r.generation === g && r.index === i);
      if (!row) throw new Error(`no evaluation ${key} in this report`);
      return { ...row, logs: [], reports: { series: {}, count: 0 }, artifacts: [], fromRow: true };
    },
    artifactUrl: async (n, g, i, a) => a.data,
  };

  const source = report || live;

  // ---- token ------------------------------------------------------------------------------
  function readToken() {
    const hash = location.hash.replace(/^#/, "");
    const params = new URLSearchParams(hash);
    const t = params.get("token");
    if (t) {
      sessionStorage.setItem(TOKEN_KEY, t);
      params.delete("token");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function showTokenForm(message) {
    const input = h("input", { type: "password", id: "token-input", placeholder: "token", autocomplete: "off" });
    const form = h(
      "form",
      {
        id: "token-form",
        onsubmit: (ev) => {
          ev.preventDefault();
          S.token = input.value.trim();
          sessionStorage.setItem(TOKEN_KEY, S.token);
          fill("token-area");
          schedule(0);
        },
      },
      h("label", { for: "token-input" }, message + " "),
      input,
      h("button", { type: "submit" }, "Use token")
    );
    fill("token-area", form);
  }

  // ---- layout -----------------------------------------------------------------------------
  function layout() {
    const app = $("app");
    const side = h(
      "nav",
      { id: "sidebar" },
      h("h2", {}, "Experiments"),
      h("ul", { id: "exp-list" }),
      REPORT ? null : h("button", { id: "btn-new", type: "button", onclick: toggleLaunch }, "New experiment…"),
      REPORT ? null : h("div", { id: "launch-panel", hidden: true })
    );
    const main = h(
      "main",
      { id: "main" },
      h("div", { id: "token-area" }),
      h("div", { id: "placeholder", class: "muted" }, REPORT ? "" : "Select an experiment."),
      h("div", { id: "experiment", hidden: true })
    );
    setKids(app, side, main);
  }

  function experimentLayout(sum) {
    const multi = sum.objectives > 1;
    const exp = $("experiment");
    setKids(exp,
      h(
        "section",
        { id: "overview", class: "panel" },
        h("div", { class: "title-row" }, h("h2", { id: "exp-name" }, sum.name), h("span", { id: "exp-status", class: "badge" }, "")),
        h("p", { id: "exp-description", class: "muted" }, sum.description || ""),
        h(
          "div",
          { class: "cards" },
          card("generation", "p-generation", "–"),
          card("evaluations", "p-done", "–"),
          card("failed", "p-failed", "–"),
          card("running", "p-running", "–"),
          card("evaluations/s", "p-rate", "–"),
          card("ETA", "p-eta", "–"),
          card("workers", "p-workers", "–"),
          card("best", "p-best", "–")
        ),
        h("div", { class: "progress" }, h("div", { id: "p-bar", class: "bar" })),
        h("p", { id: "p-line", class: "muted" }, "")
      ),
      REPORT ? null : steerPanel(),
      section(
        "charts",
        "Fitness and exploration",
        h(
          "div",
          { class: "row" },
          multi ? h("label", {}, "objective ", h("select", { id: "objective", onchange: (e) => { S.objective = Number(e.target.value); renderCharts(); } })) : null,
          h(
            "label",
            {},
            "fitness axis ",
            h(
              "select",
              { id: "y-scale", onchange: (e) => { S.yScale = e.target.value; renderCharts(); } },
              h("option", { value: "auto" }, "auto"),
              h("option", { value: "linear" }, "linear"),
              h("option", { value: "log" }, "log")
            )
          ),
          h("span", { id: "y-scale-note", class: "muted small" }, "")
        ),
        h(
          "div",
          { class: "grid" },
          h("figure", { class: "chart-card" }, h("figcaption", {}, "Best so far and population fitness per generation"), h("div", { id: "chart-fitness" })),
          h("figure", { class: "chart-card" }, h("figcaption", {}, "Fitness distribution per generation"), h("div", { id: "chart-dist" })),
          h(
            "figure",
            { class: "chart-card" },
            h("figcaption", {}, "Parameter against generation ", h("select", { id: "param-select", onchange: (e) => { S.param = e.target.value; renderCharts(); } })),
            h("div", { id: "chart-param" })
          ),
          h("figure", { class: "chart-card" }, h("figcaption", { id: "pca-caption" }, "2-D projection (PCA) coloured by fitness rank"), h("div", { id: "chart-pca" })),
          h("figure", { class: "chart-card wide" }, h("figcaption", {}, "Parallel coordinates (colour: fitness rank, yellow is best)"), h("div", { id: "chart-parallel" })),
          multi
            ? h(
                "figure",
                { class: "chart-card" },
                h("figcaption", {}, "Pareto front ", h("select", { id: "pareto-x", onchange: paretoAxis(0) }), " vs ", h("select", { id: "pareto-y", onchange: paretoAxis(1) })),
                h("div", { id: "chart-pareto" })
              )
            : null
        )
      ),
      sum.posterior ? posteriorPanel() : null,
      section("hyperparameters", "Optimizer hyperparameters", h("div", { id: "hp-current" }), h("h3", {}, "Change history"), h("div", { id: "hp-history" })),
      section("audit", "Steering log", h("div", { id: "controls-log" })),
      // (the report shows the provenance in a section of its own, below)
      REPORT ? null : section("provenance", "Provenance", h("div", { id: "prov-body" }, h("p", { class: "muted" }, "loading…"))),
      section(
        "evaluations",
        "Evaluations",
        h(
          "div",
          { class: "row filters" },
          h("label", {}, "status ", h("select", { id: "f-status", onchange: (e) => setQuery({ status: e.target.value }) }, h("option", { value: "" }, "all"), STATUSES.map((s) => h("option", { value: s }, s)))),
          h("label", {}, "generation ", h("input", { id: "f-generation", type: "number", min: 0, onchange: (e) => setQuery({ generation: e.target.value }) })),
          h("label", {}, "search ", h("input", { id: "f-text", type: "search", placeholder: "param, metric, error…", oninput: debounce((e) => setQuery({ q: e.target.value }), 300) })),
          h("span", { id: "pager" })
        ),
        h("div", { class: "table-wrap" }, h("table", { id: "eval-table", class: "data" }))
      ),
      h("section", { id: "detail", class: "panel", hidden: true })
    );
    if (multi) {
      const opts = (id) => fill(id, [...Array(sum.objectives).keys()].map((k) => h("option", { value: k }, `fitness.${k}`)));
      opts("objective");
      opts("pareto-x");
      opts("pareto-y");
      $("pareto-y").value = "1";
    }
  }

  // ---- posterior (inference experiments) -------------------------------------------------
  function posteriorPanel() {
    return section(
      "posterior",
      "Posterior",
      h(
        "div",
        { class: "row" },
        h("label", {}, "round ", h("select", { id: "post-round", onchange: postRoundChanged })),
        h(
          "label",
          {},
          "axes ",
          h(
            "select",
            { id: "post-range", onchange: (e) => { S.postRange = e.target.value; renderPosterior(); } },
            h("option", { value: "draws" }, "span the draws"),
            h("option", { value: "prior" }, "the prior's bounds")
          )
        ),
        h("span", { id: "post-note", class: "muted small" }, "")
      ),
      h("figure", { class: "chart-card" }, h("figcaption", { id: "post-caption" }, "Pair plot of posterior draws at the observation"), h("div", { id: "chart-pair" })),
      h("h3", {}, "Rounds"),
      h("div", { id: "post-rounds", class: "table-wrap" }),
      h("h3", { id: "post-stats-heading" }, "Marginals"),
      h("div", { id: "post-stats", class: "table-wrap" }),
      h("h3", {}, "Calibration and predictive check"),
      h("div", { id: "post-checks", class: "table-wrap" })
    );
  }

  // the latest `metaloop sbc` / `metaloop ppc` summaries (events), as tables
  function renderPosteriorChecks(checks) {
    const kids = [];
    const sbc = checks && checks.sbc && checks.sbc.data;
    if (sbc && sbc.parameters) {
      kids.push(h("p", {}, checks.sbc.message));
      kids.push(table(["parameter", "rank p-value", "max coverage deviation", "verdict"],
        Object.entries(sbc.parameters).map(([n, q]) => [n, num(q.p_value), num(q.max_coverage_deviation), String(q.verdict)]),
        { class: "data", id: "post-sbc-table" }));
    }
    const ppc = checks && checks.ppc && checks.ppc.data;
    if (ppc && ppc.statistics) {
      kids.push(h("p", {}, checks.ppc.message));
      kids.push(table(["statistic", "observed", "median", "5 %", "95 %", "inside", "p-value"],
        Object.entries(ppc.statistics).map(([n, q]) => [n, num(q.observed), num(q.median), num(q.q05), num(q.q95), q.inside ? "yes" : "NO", num(q.p_value)]),
        { class: "data", id: "post-ppc-table" }));
    }
    if (!kids.length) kids.push(h("p", { class: "muted" }, "not run yet: metaloop sbc and metaloop ppc record their results here"));
    fill("post-checks", ...kids);
  }

  async function postRoundChanged(e) {
    S.postRound = e.target.value === "" ? null : Number(e.target.value);
    await refreshPosterior();
  }

  async function refreshPosterior() {
    const n = S.exp;
    let p;
    try {
      p = await source.posterior(n, S.postRound);
    } catch (e) {
      if (!(e instanceof HttpError) || e.status !== 404 || S.postRound === null) throw e;
      S.postRound = null; // that round is gone (another store?): the latest
      p = await source.posterior(n, null);
    }
    if (n !== S.exp) return;
    S.post = p;
    renderPosterior();
  }

  function pct(v) {
    return typeof v === "number" && Number.isFinite(v) ? `${Number((100 * v).toPrecision(3))} %` : num(v);
  }

  function renderPosterior() {
    const p = S.post;
    if (!p || !$("chart-pair")) return;
    const sel = $("post-round");
    const latest = p.available.length ? p.available[p.available.length - 1] : null;
    const opts = [h("option", { value: "" }, latest === null ? "latest" : `latest (${latest})`)];
    for (const r of p.available) opts.push(h("option", { value: String(r) }, String(r)));
    setKids(sel, ...opts);
    sel.value = S.postRound === null ? "" : String(S.postRound);
    if ($("post-range")) $("post-range").value = S.postRange;
    renderPosteriorChecks(p.checks);
    const rounds = p.rounds.map((d) => [
      String(d.round),
      num(d.round_simulations),
      num(d.simulations),
      num(d.dropped),
      pct(d.acceptance),
      num(d.filled_from_posterior),
      num(d.epochs),
      num(d.validation_loss),
    ]);
    fill(
      "post-rounds",
      rounds.length
        ? table(["round", "simulations", "training simulations", "dropped", "acceptance", "filled from posterior", "epochs", "validation loss"], rounds, { class: "data", id: "post-rounds-table" })
        : h("p", { class: "muted" }, "no round finished yet: the posterior appears once round 0 is trained")
    );
    if (p.round === null) {
      C.empty($("chart-pair"), "no round finished yet");
      fill("post-note", "");
      fill("post-stats");
      return;
    }
    const shown = Math.min(p.names.length, PAIR_MAX);
    const more = p.components > shown ? `; the first ${shown} of ${p.components} components` : "";
    fill("post-caption", `Pair plot of round ${p.round}'s posterior at the observation`);
    fill("post-note", `${p.draws.length ? p.draws[0].length : 0} of ${num(p.n_draws)} draws shown${more}; diagonal: histograms, below: draws, above: their density`);
    const first = (a) => (a || []).slice(0, shown);
    C.pairPlot($("chart-pair"), { names: first(p.names), columns: first(p.draws), log: first(p.log), low: first(p.low), high: first(p.high), range: S.postRange });
    fill("post-stats-heading", `Marginals of round ${p.round}`);
    const stat = (k, j) => (p[k] ? num(p[k][j]) : "–");
    fill(
      "post-stats",
      table(
        ["parameter", "mean", "std", "5 %", "median", "95 %", "contraction", "prior"],
        p.names.map((name, j) => [name, stat("mean", j), stat("std", j), stat("q05", j), stat("median", j), stat("q95", j), stat("contraction", j), `${num(p.low[j])} – ${num(p.high[j])}${p.log[j] ? " (log)" : ""}`]),
        { class: "data", id: "post-stats-table" }
      )
    );
  }

  function paretoAxis(which) {
    return (e) => {
      S.paretoAxes[which] = Number(e.target.value);
      renderPareto();
    };
  }

  function debounce(fn, ms) {
    let t = null;
    return (e) => {
      clearTimeout(t);
      t = setTimeout(() => fn(e), ms);
    };
  }

  // ---- steering ---------------------------------------------------------------------------
  function steerPanel() {
    return section(
      "steer",
      "Steer",
      h(
        "div",
        { class: "row" },
        h("button", { id: "btn-pause", type: "button", onclick: () => control({ action: "pause" }) }, "Pause"),
        h("button", { id: "btn-resume", type: "button", onclick: () => control({ action: "resume" }) }, "Resume"),
        h("button", { id: "btn-stop", type: "button", class: "danger", onclick: stopClicked }, "Stop")
      ),
      h(
        "div",
        { class: "row" },
        h("label", {}, "hyperparameter ", h("select", { id: "hp-name" })),
        h("input", { id: "hp-value", type: "text", placeholder: "new value (JSON: 0.3, true, \"text\")" }),
        h("button", { id: "btn-set", type: "button", onclick: setHyper }, "Set")
      ),
      h(
        "div",
        { class: "row" },
        h("textarea", { id: "inject-text", rows: 3, placeholder: 'candidates as JSON: {"x": 1.5} or [{"x": 1.5}, {"x": -2}]' }),
        h("div", { class: "col" }, h("button", { id: "btn-inject", type: "button", onclick: inject }, "Inject"), h("input", { id: "inject-file", type: "file", accept: ".json,application/json", onchange: loadInjectFile }))
      ),
      h("div", { class: "row" }, h("input", { id: "note-text", type: "text", placeholder: "note for the log" }), h("button", { id: "btn-note", type: "button", onclick: note }, "Add note")),
      h("p", { id: "control-message", class: "message" }, "")
    );
  }

  function message(text, bad) {
    const m = $("control-message");
    if (!m) return;
    m.textContent = text;
    m.className = "message " + (bad ? "bad" : "good");
  }

  async function control(body) {
    try {
      const r = await api(ex(S.exp) + "/control", body);
      S.lastControl = r.control;
      const pending = r.control.status === "pending";
      message(`${body.action}: recorded${pending ? "; the run applies it at its next safe point" : ""}`, false);
      S.version = null;
      schedule(0);
      return true;
    } catch (e) {
      message(`${body.action} refused: ${e.message}`, true);
      return false;
    }
  }

  async function cancelControl(id) {
    try {
      const r = await api(ex(S.exp) + "/control/" + id + "/cancel", {});
      message(`#${id} ${r.control.action}: cancelled`, false);
      S.version = null;
      schedule(0);
    } catch (e) {
      message(`cancel #${id} refused: ${e.message}`, true);
    }
  }

  function stopClicked() {
    const b = $("btn-stop");
    if (!S.stopArmed) {
      S.stopArmed = true;
      b.textContent = "Confirm stop";
      setTimeout(() => {
        S.stopArmed = false;
        if ($("btn-stop")) $("btn-stop").textContent = "Stop";
      }, 5000);
      return;
    }
    S.stopArmed = false;
    b.textContent = "Stop";
    control({ action: "stop" });
  }

  function parseValue(text) {
    try {
      return JSON.parse(text);
    } catch (e) {
      return text;
    }
  }

  async function setHyper() {
    const name = $("hp-name").value;
    const raw = $("hp-value").value.trim();
    if (!name || raw === "") {
      message("set: choose a hyperparameter and type a value", true);
      return;
    }
    if (await control({ action: "set", params: { [name]: parseValue(raw) } })) $("hp-value").value = "";
  }

  async function inject() {
    let parsed;
    try {
      parsed = JSON.parse($("inject-text").value);
    } catch (e) {
      message(`inject: not valid JSON (${e.message})`, true);
      return;
    }
    const candidates = Array.isArray(parsed) ? parsed : [parsed];
    if (await control({ action: "inject", candidates })) $("inject-text").value = "";
  }

  function loadInjectFile(e) {
    const file = e.target.files[0];
    if (!file) return;
    file.text().then((t) => {
      $("inject-text").value = t;
    });
  }

  async function note() {
    const text = $("note-text").value.trim();
    if (!text) return;
    if (await control({ action: "note", text })) $("note-text").value = "";
  }

  // ---- launch -----------------------------------------------------------------------------
  function toggleLaunch() {
    const p = $("launch-panel");
    if (!p.hidden) {
      p.hidden = true;
      return;
    }
    const area = h("textarea", { id: "launch-config", rows: 14, placeholder: "name: my-run\noptimizee: {kind: function, name: sphere, dims: 2}\noptimizer: {kind: cmaes}\ngenerations: 20" });
    setKids(p,
      h("p", { class: "muted" }, "Config (YAML or JSON); it runs on this dashboard's store with its executor."),
      area,
      h("div", { class: "row" }, h("button", { id: "btn-launch", type: "button", onclick: launch }, "Launch"), h("input", { type: "file", accept: ".yaml,.yml,.json", onchange: (e) => e.target.files[0] && e.target.files[0].text().then((t) => (area.value = t)) })),
      h("pre", { id: "launch-message", class: "message" }, "")
    );
    p.hidden = false;
  }

  async function launch() {
    const m = $("launch-message");
    m.className = "message";
    m.textContent = "validating…";
    try {
      const r = await api("experiments", { config: $("launch-config").value });
      m.className = "message good";
      m.textContent = `launched ${r.launched.name} (pid ${r.launched.pid}); it appears in the list once its workers are up`;
      S.list = null;
      schedule(0);
    } catch (e) {
      m.className = "message bad";
      const lines = e.body && e.body.errors ? e.body.errors : [e.message];
      m.textContent = lines.join("\n");
    }
  }

  // ---- rendering --------------------------------------------------------------------------
  function progressBar(fraction) {
    const bar = h("div", { class: "bar" });
    bar.style.width = `${Math.round(100 * (fraction || 0))}%`; // CSSOM: allowed by the CSP
    return h("div", { class: "progress small" }, bar);
  }

  function renderList(data) {
    const list = $("exp-list");
    if (!list) return;
    const items = data.experiments.map((x) =>
      h(
        "li",
        { class: x.name === S.exp ? "selected" : "", "data-name": x.name },
        h(
          "a",
          { href: "#exp=" + encodeURIComponent(x.name), onclick: (e) => { e.preventDefault(); select(x.name); } },
          h("span", { class: "exp-name" }, x.name),
          h("span", { class: `badge ${x.status}` }, x.status)
        ),
        progressBar(x.progress),
        h("div", { class: "muted small" }, `gen ${x.generation} · ${x.evaluations} evals · best ${fitnessText(x.best)}`)
      )
    );
    for (const l of data.launches || []) {
      const failed = l.exit_code !== null && l.exit_code !== 0;
      items.push(
        h(
          "li",
          { class: "launch" },
          h("span", { class: "exp-name" }, l.name),
          h("span", { class: `badge ${failed ? "failed" : "starting"}` }, failed ? `launch failed (exit ${l.exit_code})` : l.exit_code === 0 ? "exited" : "starting"),
          failed && l.log_tail ? h("pre", { class: "small" }, l.log_tail.join("\n")) : null
        )
      );
    }
    if (!items.length) items.push(h("li", { class: "muted" }, "no experiments in this store yet"));
    setKids(list, ...items);
  }

  function renderOverview(sum) {
    S.summary = sum;
    const st = $("exp-status");
    st.textContent = sum.status + (sum.stop_reason && sum.stop_reason !== sum.status ? ` (${sum.stop_reason})` : "");
    st.className = `badge ${sum.status}`;
    $("p-generation").textContent = String(sum.generation);
    $("p-done").textContent = sum.total ? `${sum.evaluations} / ${sum.total}` : String(sum.evaluations);
    $("p-failed").textContent = String(sum.failed);
    $("p-running").textContent = sum.running === null ? "–" : String(sum.running);
    $("p-rate").textContent = sum.rate ? C.fmt(Number(sum.rate.toPrecision(3))) : "0";
    $("p-eta").textContent = sum.eta_s === null ? "–" : duration(sum.eta_s);
    $("p-workers").textContent = sum.live ? `${sum.workers_active}${sum.workers_configured ? " of " + sum.workers_configured : ""}` : "–";
    $("p-best").textContent = fitnessText(sum.best);
    $("p-bar").style.width = `${Math.round(100 * (sum.progress || 0))}%`;
    const b = sum.best_evaluation;
    $("p-line").textContent =
      `${sum.config.optimizer ? sum.config.optimizer.kind : ""} · seed ${sum.seed} · updated ${when(sum.updated)}` +
      (b ? ` · best at generation ${b.generation}, index ${b.index}` : "") +
      ((sum.choices || []).length ? ` · ${sum.choices.join(" · ")}` : "");
  }

  let charts = { gens: null, expl: null, pareto: null };

  function better(weight) {
    return weight > 0 ? "max" : "min";
  }

  function renderCharts() {
    const gens = charts.gens;
    const expl = charts.expl;
    if (!gens || !expl) return;
    const obj = gens.objectives[Math.min(S.objective, gens.objectives.length - 1)];
    const label = gens.objectives.length > 1 ? `fitness.${obj.objective}` : "fitness";
    const rows = obj.generations;
    const dots = [];
    for (const r of rows) for (const v of r.points || []) dots.push({ x: r.generation, y: v, color: "#9aa5b1", r: 2 });
    const plotted = dots.map((d) => d.y);
    for (const r of rows) plotted.push(r.min, r.max, r.best_so_far);
    const scale = C.yScale(plotted, S.yScale);
    const scaleName = scale ? (scale.kind === "log" ? "log scale" : "symlog scale: values ≤ 0 present") : "linear scale";
    fill("y-scale-note", S.yScale === "auto" ? `${scaleName} (auto: log when the values span 2 decades or more)` : scaleName);
    if ($("y-scale")) $("y-scale").value = S.yScale;
    const suffix = scale ? `, ${scale.kind}` : "";
    C.lineChart($("chart-fitness"), {
      xLabel: "generation",
      xInteger: true,
      yScale: scale,
      yLabel: `${label} (${better(obj.weight)} is better${suffix})`,
      dots,
      series: [
        { name: "median", color: "#1f77b4", width: 1.5, points: rows.filter((r) => r.median !== undefined).map((r) => [r.generation, r.median]) },
        { name: "generation best", color: "#ff9f1c", width: 1.5, points: rows.filter((r) => r.best !== undefined).map((r) => [r.generation, r.best]) },
        { name: "best so far", color: "#d62728", width: 2.5, points: rows.filter((r) => r.best_so_far !== null).map((r) => [r.generation, r.best_so_far]) },
      ],
    });
    C.boxChart($("chart-dist"), {
      xLabel: "generation",
      xInteger: true,
      yScale: scale,
      yLabel: label + (scale ? ` (${scale.kind})` : ""),
      boxes: rows
        .filter((r) => r.median !== undefined)
        .map((r) => ({ x: r.generation, min: r.min, q1: r.q1, median: r.median, q3: r.q3, max: r.max, title: `generation ${r.generation}: n=${r.n}, ok=${r.ok}, median ${C.fmt(r.median)}, IQR ${C.fmt(r.q1)}–${C.fmt(r.q3)}` })),
    });
    const t = C.ranks(expl.score); // colour by rank: 0 worst, 1 best, whatever the spread
    const titleOf = (k) =>
      `generation ${expl.generation[k]}, index ${expl.index[k]}: ${expl.status[k]}${expl.fitness[k] ? ", fitness " + fitnessText(expl.fitness[k]) : ""}`;
    const open = (k) => () => openDetail(expl.generation[k], expl.index[k]);
    const sel = $("param-select");
    if (sel && sel.options.length !== expl.names.length) {
      fill("param-select", expl.names.map((n, j) => h("option", { value: String(j) }, n)));
    }
    if (S.param === null || Number(S.param) >= expl.names.length) S.param = "0";
    if (sel) sel.value = S.param;
    const j = Number(S.param);
    if (expl.names.length) {
      const name = expl.names[j];
      const cats = expl.categories[name];
      C.scatterChart($("chart-param"), {
        xLabel: "generation",
      xInteger: true,
        yLabel: name,
        yCategories: cats,
        colorLabel: "fitness rank",
        points: expl.values[j].map((v, k) => ({ x: expl.generation[k], y: v, t: t[k], title: `${name}=${cats ? cats[v] : C.fmt(v)}; ${titleOf(k)}`, onclick: open(k) })),
      });
    } else {
      C.empty($("chart-param"), "no parameters yet");
    }
    if (expl.pca) {
      const ex1 = (100 * expl.pca.explained[0]).toFixed(0);
      const ex2 = (100 * expl.pca.explained[1]).toFixed(0);
      C.scatterChart($("chart-pca"), {
        xLabel: `PC1 (${ex1} % of variance)`,
        yLabel: `PC2 (${ex2} %)`,
        colorLabel: "fitness rank",
        points: expl.pca.x.map((x, k) => ({ x, y: expl.pca.y[k], t: t[k], title: titleOf(k), onclick: open(k) })),
      });
    } else {
      C.empty($("chart-pca"), "needs two or more candidates");
    }
    const axes = expl.names.map((n, jj) => ({ name: n, values: expl.values[jj], categories: expl.categories[n] }));
    const fitnessOf = (k) => (expl.fitness[k] ? expl.fitness[k][obj.objective] : null);
    axes.push({ name: label, values: expl.score.map((_, k) => fitnessOf(k)) });
    C.parallelCoordinates($("chart-parallel"), {
      axes,
      width: 1200,
      height: 360,
      t,
      titles: expl.score.map((_, k) => titleOf(k)),
      onclick: (k) => openDetail(expl.generation[k], expl.index[k]),
      colorLabel: "fitness rank",
    });
    renderPareto();
  }

  function renderPareto() {
    const p = charts.pareto;
    const node = $("chart-pareto");
    if (!p || !node || p.objectives < 2) return;
    const [a, b] = S.paretoAxes;
    const pts = p.points.map((q, k) => ({
      x: q[2 + a],
      y: q[2 + b],
      t: p.front[k] ? 1 : 0.25,
      ring: p.front[k],
      title: `generation ${q[0]}, index ${q[1]}: ${q.slice(2).map(C.fmt).join(", ")}${p.front[k] ? " (on the front)" : ""}`,
      onclick: () => openDetail(q[0], q[1]),
    }));
    const front = pts.filter((q) => q.ring).map((q) => [q.x, q.y]).sort((u, v) => u[0] - v[0]);
    C.scatterChart(node, {
      xLabel: `fitness.${a} (${better(p.weights[a])})`,
      yLabel: `fitness.${b} (${better(p.weights[b])})`,
      points: pts,
      line: p.objectives === 2 ? front : null,
    });
  }

  function renderHyper(hp) {
    S.hp = hp;
    fill("hp-current", h("p", { class: "muted" }, `optimizer: ${hp.kind || "?"}`), kvTable(hp.current, "hp-table"));
    const rows = (hp.history || []).map((x) => [
      when(x.time),
      x.origin,
      x.generation === null || x.generation === undefined ? "–" : String(x.generation),
      Object.entries(x.params || {}).map(([k, v]) => `${k}=${num(v)}`).join(", "),
    ]);
    fill("hp-history", table(["time", "origin", "generation", "values"], rows, { id: "hp-history-table", class: "data" }));
    const sel = $("hp-name");
    if (sel) {
      const keep = sel.value;
      const names = Object.keys(hp.current || {});
      if (sel.options.length !== names.length) {
        fill("hp-name", names.map((n) => h("option", { value: n }, n)));
        if (names.includes(keep)) sel.value = keep;
      }
    }
  }

  function controlOutcome(trail) {
    // tell what became of the command sent last from this page
    const last = S.lastControl && trail.find((c) => c.id === S.lastControl.id);
    if (!last || last.status === "pending" || last.status === S.lastControl.status) return;
    S.lastControl = last;
    const where = last.generation === null || last.generation === undefined ? "" : ` at generation ${last.generation}`;
    message(`${last.action}: ${last.status}${where}${last.message ? ": " + last.message : ""}`, last.status === "refused");
  }

  function renderControls(data) {
    controlOutcome(data.controls || []);
    const rows = (data.controls || []).map((c) => [
      when(c.time),
      c.origin,
      c.action,
      c.payload ? JSON.stringify(c.payload) : "",
      c.status === "pending" && !REPORT
        ? h("span", {}, "pending ", h("button", { type: "button", class: "cancel-control", "data-id": c.id, onclick: () => cancelControl(c.id) }, "Cancel"))
        : c.status,
      c.generation === null || c.generation === undefined ? "–" : String(c.generation),
      c.message || "",
    ]);
    fill(
      "controls-log",
      rows.length ? table(["time", "origin", "action", "payload", "status", "generation", "message"], rows, { id: "controls-table", class: "data" }) : h("p", { class: "muted" }, "no steering commands yet")
    );
  }

  function setQuery(change) {
    Object.assign(S.query, change);
    if (!("offset" in change)) S.query.offset = 0;
    refreshTable();
  }

  async function refreshTable() {
    const n = S.exp;
    if (!n) return;
    const page = await source.evaluations(n, S.query);
    if (n !== S.exp) return; // (a switch meanwhile)
    renderTable(page);
  }

  function renderTable(page) {
    const cols = page.columns || { fitness: [], params: [], metrics: [] };
    const defs = [
      ["generation", "gen"],
      ["index", "idx"],
      ["status", "status"],
      ...cols.fitness.map((f) => [f, cols.fitness.length > 1 ? f : "fitness"]),
      ...cols.params.map((p) => ["param." + p, p]),
      ...cols.metrics.map((m) => ["metric." + m, m]),
      ["attempts", "attempts"],
      ["duration", "duration"],
      ["host", "host"],
    ];
    const head = h(
      "tr",
      {},
      defs.map(([key, label]) => {
        const active = S.query.sort === key;
        const arrow = active ? (S.query.order === "desc" ? " ▼" : " ▲") : "";
        return h(
          "th",
          { class: "sortable", "data-key": key, onclick: () => setQuery({ sort: key, order: active && S.query.order === "asc" ? "desc" : "asc" }) },
          label + arrow
        );
      })
    );
    const body = page.rows.map((r) => {
      const cells = defs.map(([key]) => {
        let v = sortValue(r, key);
        if (key === "duration") v = duration(v);
        return h("td", {}, num(v));
      });
      const err = r.error ? { title: r.error } : {};
      return h(
        "tr",
        { class: `row-${r.status}` + (S.detail && S.detail.g === r.generation && S.detail.i === r.index ? " selected" : ""), ...err, "data-g": r.generation, "data-i": r.index, onclick: () => openDetail(r.generation, r.index) },
        cells
      );
    });
    const t = $("eval-table");
    setKids(t, h("thead", {}, head), h("tbody", {}, body));
    const from = page.total ? page.offset + 1 : 0;
    const to = page.offset + page.rows.length;
    fill(
      "pager",
      h("button", { type: "button", disabled: page.offset <= 0, onclick: () => setQuery({ offset: Math.max(0, S.query.offset - S.query.limit) }) }, "‹ prev"),
      ` ${from}–${to} of ${page.total} `,
      h("button", { type: "button", disabled: to >= page.total, onclick: () => setQuery({ offset: S.query.offset + S.query.limit }) }, "next ›")
    );
  }

  // ---- URLs -------------------------------------------------------------------------------
  // The page's address names what it shows: #exp=NAME, and #exp=NAME&eval=G/I while an
  // evaluation's detail is open, so either can be copied, bookmarked or reloaded.
  function hashParams() {
    return new URLSearchParams(location.hash.replace(/^#/, ""));
  }

  function evalFromHash() {
    const m = /^(\d+)\/(\d+)$/.exec(hashParams().get("eval") || "");
    return m ? { g: Number(m[1]), i: Number(m[2]) } : null;
  }

  function setHash(name, detail) {
    let hash = "#exp=" + encodeURIComponent(name);
    if (detail) hash += `&eval=${detail.g}/${detail.i}`;
    if (location.hash === hash) return;
    try {
      history.replaceState(null, "", location.pathname + location.search + hash);
    } catch (e) {
      // a report opened from a file may refuse: the view works without the address
    }
  }

  // ---- detail -----------------------------------------------------------------------------
  function openDetail(g, i) {
    S.detail = { g, i };
    S.detailData = null;
    if (S.exp !== null) setHash(S.exp, S.detail);
    refreshDetail(true);
  }

  async function refreshDetail(scroll) {
    if (!S.detail || !S.exp) return;
    const { g, i } = S.detail;
    let d;
    try {
      d = await source.detail(S.exp, g, i);
    } catch (e) {
      fill("detail", h("p", { class: "bad" }, e.message));
      $("detail").hidden = false;
      return;
    }
    if (!S.detail || S.detail.g !== g || S.detail.i !== i) return;
    S.detailData = d;
    await renderDetail(d);
    if (scroll) $("detail").scrollIntoView({ behavior: "instant", block: "start" });
  }

  async function renderDetail(d) {
    const node = $("detail");
    const fields = {
      status: d.status,
      fitness: fitnessText(d.fitness),
      attempts: d.attempts,
      started: when(d.started),
      finished: when(d.finished),
      duration: duration(d.duration),
      host: d.host,
      worker: d.worker,
      workdir: d.workdir,
    };
    const curves = h("div", { id: "detail-reports" });
    const arts = h("div", { id: "detail-artifacts", class: "artifacts" });
    setKids(node,
      h(
        "div",
        { class: "title-row" },
        h("h2", {}, `Evaluation ${d.generation}/${d.index}`),
        h("span", { id: "detail-status", class: `badge ${d.status}` }, d.status),
        h("button", { type: "button", id: "detail-close", onclick: closeDetail }, "Close")
      ),
      h("div", { class: "grid2" }, h("div", {}, h("h3", {}, "Result"), kvTable(fields, "detail-fields")), h("div", {}, h("h3", {}, "Parameters"), kvTable(d.params || {}, "detail-params"), h("h3", {}, "Metrics"), kvTable(d.metrics || {}, "detail-metrics"))),
      d.error ? h("div", {}, h("h3", {}, "Error"), h("pre", { id: "detail-error", class: "error" }, d.error)) : null,
      h("h3", {}, "Reported values"),
      curves,
      h("h3", {}, "Artifacts"),
      arts,
      (d.logs || []).length ? h("h3", {}, "Logs") : null,
      (d.logs || []).map((l) => h("div", { class: "log" }, h("h4", {}, `${l.name} (${l.size} bytes${l.truncated ? ", last part" : ""})`), h("pre", { class: "log-text" }, l.text)))
    );
    node.hidden = false;
    renderCurves(curves, d.reports || { series: {} });
    await renderArtifacts(arts, d);
  }

  function renderCurves(node, rep) {
    const keys = Object.keys(rep.series || {});
    if (!keys.length) {
      setKids(node, h("p", { class: "muted" }, rep.supported === false ? "this store has no reported values" : "none reported"));
      return;
    }
    const palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
    const charts2 = keys.slice(0, 8).map((k, n) => {
      const div = h("div", { class: "curve", "data-key": k });
      C.lineChart(div, { xLabel: "step", yLabel: k, height: 220, series: [{ name: k, color: palette[n % palette.length], width: 2, points: rep.series[k], markers: rep.series[k].length < 30 }] });
      return div;
    });
    setKids(node, h("p", { class: "muted small", id: "reports-count" }, `${rep.count} reports${rep.attempt ? `, attempt ${rep.attempt}` : ""}`), h("div", { class: "grid" }, charts2));
  }

  async function renderArtifacts(node, d) {
    const arts = d.artifacts || [];
    if (!arts.length) {
      setKids(node, h("p", { class: "muted" }, "none"));
      return;
    }
    const items = [];
    for (const a of arts) {
      let url = null;
      try {
        url = await source.artifactUrl(S.exp, d.generation, d.index, a);
      } catch (e) {
        items.push(h("div", { class: "artifact" }, `${a.name}: ${e.message}`));
        continue;
      }
      if (a.image && url) {
        items.push(h("figure", { class: "artifact" }, h("img", { src: url, alt: a.name, "data-name": a.name }), h("figcaption", {}, a.name)));
      } else if (url) {
        items.push(h("div", { class: "artifact" }, h("a", { href: url, download: a.name }, a.name), ` (${a.size} bytes, ${a.media_type})`));
      } else {
        items.push(h("div", { class: "artifact" }, `${a.name} (${a.size} bytes, not embedded)`));
      }
    }
    setKids(node, ...items);
  }

  function closeDetail() {
    S.detail = null;
    S.detailData = null;
    $("detail").hidden = true;
    if (S.exp !== null) setHash(S.exp, null);
  }

  // ---- the loop ---------------------------------------------------------------------------
  async function select(name) {
    if (S.exp === name) return;
    S.exp = name;
    S.list = null;
    S.version = null;
    S.summary = null;
    S.detail = null;
    S.param = null;
    S.objective = 0;
    S.paretoAxes = [0, 1];
    S.postRound = null;
    S.post = null;
    S.postKey = null;
    S.provKey = null;
    S.query.offset = 0;
    charts = { gens: null, expl: null, pareto: null };
    S.evalFromUrl = hashParams().get("exp") === name ? evalFromHash() : null;
    if (!REPORT) setHash(name, S.evalFromUrl);
    $("experiment").hidden = true;
    schedule(0);
  }

  async function refreshAll(sum) {
    const n = S.exp;
    const [gens, expl, pareto, hp, ctl] = await Promise.all([
      source.generations(n),
      source.exploration(n),
      sum.objectives > 1 ? source.pareto(n) : Promise.resolve(null),
      source.hyperparameters(n),
      source.controls(n),
    ]);
    if (n !== S.exp) return;
    charts = { gens, expl, pareto };
    renderCharts();
    renderHyper(hp);
    renderControls(ctl);
    // a round's posterior is recorded before its generation ends: read it again only then
    const postKey = `${sum.generation}:${sum.status}`;
    if (sum.posterior && postKey !== S.postKey) {
      await refreshPosterior();
      S.postKey = postKey;
    }
    await refreshTable();
    // sessions start rarely, evaluations (their hosts) often: read it at a status change and
    // at most every PROV_MS otherwise
    const provKey = `${sum.status}`;
    if (!REPORT && (provKey !== S.provKey || Date.now() - S.provAt > PROV_MS)) {
      S.provKey = provKey;
      S.provAt = Date.now();
      renderProvenance(await source.provenance(n));
    }
  }

  // ---- provenance: one table per session, its changes since the one before flagged ---------
  function sourceText(src) {
    if (!src || !src.kind) return "–";
    if (src.kind === "git") {
      let t = `git ${src.repo} @ ${src.commit || "(no commit)"}`;
      if (src.dirty) t += ` dirty (${(src.changed || []).length} changed, ${src.untracked_count || 0} untracked; diff ${src.diff_bytes || 0} bytes)`;
      return t + (src.path ? `, file ${src.path}` : "") + (src.note ? ` [${src.note}]` : "");
    }
    if (src.kind === "file") return `file ${src.path} sha256 ${src.sha256}` + (src.note ? ` [${src.note}]` : "");
    return src.note || "unknown";
  }

  function changeText(c) {
    const show = (v) => (v === null || v === undefined ? "(none)" : String(v).length === 40 || String(v).length === 64 ? String(v).slice(0, 12) : String(v));
    if (c.key === "source.diff_sha256") return "source.diff changed (uncommitted changes differ)";
    return `${c.key} ${show(c.before)} → ${show(c.after)}`;
  }

  function renderProvenance(data) {
    const entries = (data && data.provenance) || [];
    if (!entries.length) return fill("prov-body", h("p", { class: "muted" }, "no provenance recorded (the experiment predates it or has not started)"));
    const kids = [];
    for (const e of entries.slice().reverse()) {
      const code = e.source || {};
      const rows = [
        ["started", e.started || "–"],
        ["command", (e.argv || []).join(" ")],
        ["driver host", e.host || "–"],
        ["evaluated on", `${(e.hosts || []).join(", ") || "–"} (${e.evaluations || 0} evaluations)`],
        ["SLURM job", e.slurm_job_id || "–"],
        ...((e.slurm_jobs || []).length ? [["worker SLURM jobs", e.slurm_jobs.join(", ")]] : []),
        ["metaloop / Python", `${e.metaloop} / ${e.python}`],
        ["packages", Object.entries(e.packages || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "–"],
        ["source", sourceText(code)],
        ...(e.notes || []).map((n) => ["note", n]),
      ];
      const changes = e.changes || [];
      kids.push(
        h("h3", {}, `Session ${e.session}`, changes.length ? h("span", { class: "badge failed prov-changed" }, `${changes.length} changed`) : null),
        table(["", ""], rows, { class: "kv prov-session", "data-session": e.session }),
        changes.length ? h("ul", { class: "bad prov-changes" }, changes.map((c) => h("li", {}, changeText(c)))) : null,
        code.diff ? h("details", {}, h("summary", {}, "uncommitted changes at the start" + (code.diff_truncated ? ` (capped; all of it: ${code.diff_file})` : "")), h("pre", {}, code.diff)) : null
      );
    }
    fill("prov-body", ...kids);
  }

  async function update() {
    // the list every few seconds (each entry costs the store a count), the selected
    // experiment every second
    if (!S.list || Date.now() - S.listAt > LIST_MS || !S.exp) {
      S.list = await source.experiments();
      S.listAt = Date.now();
      if (S.list.storage) fill("store", S.list.storage);
      renderList(S.list);
    }
    const list = S.list;
    if (!S.exp) {
      const wanted = hashParams().get("exp");
      const names = list.experiments.map((x) => x.name);
      if (REPORT || (wanted && names.includes(wanted))) S.exp = REPORT ? names[0] : wanted;
      else if (!wanted && names.length === 1) S.exp = names[0]; // the only one: open it
      if (!S.exp) return;
      S.evalFromUrl = evalFromHash();
      setHash(S.exp, S.evalFromUrl);
      renderList(list);
    }
    const n = S.exp;
    const sum = await source.summary(n);
    if (n !== S.exp) return; // another experiment was chosen meanwhile: the next tick shows it
    if (!S.summary || $("experiment").hidden) {
      experimentLayout(sum);
      $("placeholder").hidden = true;
      $("experiment").hidden = false;
    }
    renderOverview(sum);
    const changed = sum.version !== S.version;
    if (changed) {
      S.version = sum.version;
      await refreshAll(sum);
    }
    if (S.evalFromUrl) {
      const { g, i } = S.evalFromUrl;
      S.evalFromUrl = null;
      openDetail(g, i);
      return;
    }
    if (S.detail && (changed || !S.detailData || S.detailData.status === "running")) await refreshDetail(false);
  }

  let timer = null;
  let due = Infinity; // when the pending tick runs (Infinity: none is pending)
  let busy = false;

  function schedule(ms) {
    // never later than a tick already asked for: a switch or a sort during a running tick
    // asks for one at once, which that tick's own next (a poll interval away) must not delay
    const at = Date.now() + ms;
    if (at >= due) return;
    clearTimeout(timer);
    due = at;
    timer = setTimeout(() => {
      due = Infinity;
      tick();
    }, ms);
  }

  async function tick() {
    if (busy) return schedule(200);
    busy = true;
    try {
      await update();
      if ($("token-form")) fill("token-area");
      setConn(REPORT ? `report generated ${when(REPORT.generated)}` : "live", false);
      if (!REPORT) schedule(POLL_MS);
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) {
        setConn("token needed", true);
        showTokenForm(S.token ? "The token was refused; enter the dashboard's token:" : "Enter the token printed by 'metaloop dashboard':");
      } else {
        setConn("error: " + e.message, true);
        if (!REPORT) schedule(POLL_MS * 2);
      }
    } finally {
      busy = false;
    }
  }

  function setConn(text, bad) {
    const c = $("conn");
    if (c) {
      c.textContent = text;
      c.className = bad ? "bad" : "good";
    }
  }

  async function start() {
    layout();
    if (REPORT) {
      fill("store", REPORT.storage || "");
      tick();
      return;
    }
    S.token = readToken();
    try {
      const info = await api("info");
      S.info = info;
      fill("store", info.storage || "");
    } catch (e) {
      setConn("error: " + e.message, true);
    }
    tick();
  }

  function hashChanged() {
    // a URL with a new token or experiment pasted into an open page
    const t = readToken();
    if (t) S.token = t;
    const wanted = hashParams().get("exp");
    const detail = evalFromHash();
    if (wanted && wanted !== S.exp) select(wanted);
    else if (detail && (!S.detail || S.detail.g !== detail.g || S.detail.i !== detail.i)) openDetail(detail.g, detail.i);
    else schedule(0);
  }

  window.addEventListener("DOMContentLoaded", start);
  if (!REPORT) window.addEventListener("hashchange", hashChanged);
})();

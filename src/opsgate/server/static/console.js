// The console's only script of its own: no data enters it from the page but numbers (the
// charts' series are JSON numbers in a data attribute; their labels are chosen here).
(function () {
  function layout(root) {
    root.querySelectorAll(".bar[data-offset]").forEach(function (el) {
      el.style.marginLeft = parseFloat(el.dataset.offset) + "%";
      el.style.width = parseFloat(el.dataset.width) + "%";
    });
  }
  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll(".countdown[data-expires]").forEach(function (el) {
      var left = Math.max(0, parseFloat(el.dataset.expires) - now);
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = Math.floor(left % 60);
      el.textContent = left > 0 ? "expires in " + h + "h " + m + "m " + s + "s" : "expired";
    });
  }

  // -- charts (uPlot, vendored: /static/uPlot.iife.min.js) ---------------------------------
  function num(v) { return v === null || v === undefined || !isFinite(v) ? null : Number(v); }
  function usd(v) { return v === null ? "—" : "$" + (v < 0.01 ? v.toFixed(6) : v.toFixed(2)); }
  function pct(v) { return v === null ? "—" : (100 * v).toFixed(1) + "%"; }
  // an axis tick: short ($0, $0.0025, $40)
  function usdTick(v) { return v === 0 ? "$0" : "$" + (v >= 1 ? v.toFixed(2) : Number(v.toPrecision(2))); }
  function pctTick(v) { return Math.round(100 * v) + "%"; }
  var BLUE = "#0b5cad", RED = "#c62828", GREEN = "#1a7f37";
  // What each kind of chart draws: its series' labels, colours and units (fixed here).
  var KINDS = {
    spend: { unit: usd, tick: usdTick, series: [
      { label: "spend", stroke: BLUE, fill: "rgba(11,92,173,0.12)" },
      { label: "daily budget", stroke: RED, dash: [6, 4], points: false }] },
    per_success: { unit: usd, tick: usdTick, series: [{ label: "cost per successful task", stroke: BLUE }] },
    success: { unit: pct, tick: pctTick, range: [0, 1], series: [
      { label: "success rate", stroke: GREEN },
      { label: "95% low", stroke: "rgba(26,127,55,0.35)", points: false },
      { label: "95% high", stroke: "rgba(26,127,55,0.35)", points: false }],
      bands: [{ series: [3, 2], fill: "rgba(26,127,55,0.12)" }] }
  };
  function draw(figure) {
    var kind, spec;
    try { spec = JSON.parse(figure.dataset.chart); } catch (e) { return; }
    kind = KINDS[spec.kind];
    if (!kind || typeof uPlot === "undefined" || !Array.isArray(spec.x) || !spec.x.length) return;
    var data = [spec.x.map(num)];
    var series = [{}];
    (spec.series || []).slice(0, kind.series.length).forEach(function (values, i) {
      var look = kind.series[i];
      data.push(values.map(num));
      series.push({
        label: look.label, stroke: look.stroke, fill: look.fill, dash: look.dash, width: 2,
        spanGaps: false, points: { show: look.points !== false, size: 6 },
        value: function (u, v) { return kind.unit(num(v)); }
      });
    });
    var plot = figure.querySelector(".chart-plot");
    figure.hidden = false;
    var width = Math.max(240, plot.clientWidth || figure.clientWidth || 600);
    var opts = {
      width: width, height: 220, series: series,
      scales: { x: { time: true }, y: kind.range ? { range: kind.range } : { range: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.15 : 1]; } } },
      axes: [{}, { size: 64, values: function (u, ticks) { return ticks.map(kind.tick); } }]
    };
    if (kind.bands && data.length > 3) opts.bands = kind.bands;
    var chart = new uPlot(opts, data, plot);
    window.addEventListener("resize", function () {
      chart.setSize({ width: Math.max(240, plot.clientWidth), height: 220 });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    layout(document);
    tick();
    setInterval(tick, 1000);
    document.querySelectorAll("figure.chart[data-chart]").forEach(draw);
  });
  document.addEventListener("htmx:afterSwap", function (e) { layout(e.target); });
})();

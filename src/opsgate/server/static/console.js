// The console's only script of its own: no data enters it from the page but numbers.
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
  document.addEventListener("DOMContentLoaded", function () {
    layout(document);
    tick();
    setInterval(tick, 1000);
  });
  document.addEventListener("htmx:afterSwap", function (e) { layout(e.target); });
})();

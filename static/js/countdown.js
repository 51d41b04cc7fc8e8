/* Session break: counts down to data-until-ms (epoch milliseconds), then opens the next session (data-next). */
(function () {
  "use strict";
  var el = document.getElementById("countdown");
  if (!el) return;
  var until = parseInt(el.dataset.untilMs, 10);
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    var left = Math.max(0, Math.round((until - Date.now()) / 1000));
    var days = Math.floor(left / 86400), h = Math.floor(left % 86400 / 3600);
    var m = Math.floor(left % 3600 / 60), s = left % 60;
    el.textContent = (days ? days + " d " : "") + pad(h) + ":" + pad(m) + ":" + pad(s);
    if (left === 0) { window.location.assign(el.dataset.next); return; }
    setTimeout(tick, 1000);
  }
  tick();
})();

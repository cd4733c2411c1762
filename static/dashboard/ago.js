// Keeps "started 5 minutes ago" true while a page stays open. Each <time data-ago datetime="..."
// data-now="..."> is rewritten every 15 s; data-now is the server's clock when it rendered the page, so a
// browser whose clock is off still counts from the server's time. Without this script the server's text
// stays, as it was when the page loaded.
"use strict";

(function () {
  function count(n, one, many) { return n === 1 ? one : n + " " + many; }

  function ago(seconds) {
    if (seconds < 1) return "now";
    if (seconds < 60) return count(Math.floor(seconds), "a second", "seconds") + " ago";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return count(minutes, "a minute", "minutes") + " ago";
    const hours = Math.floor(minutes / 60);
    if (hours < 24) return count(hours, "an hour", "hours") + " ago";
    const days = Math.floor(hours / 24);
    const rest = hours % 24;
    return count(days, "1 day", "days") + (rest ? ", " + count(rest, "1 hour", "hours") : "") + " ago";
  }

  function update() {
    document.querySelectorAll("time[data-ago]").forEach(function (element) {
      const at = Date.parse(element.getAttribute("datetime") || "");
      if (Number.isNaN(at)) return;
      if (element.dataset.skew === undefined) {
        const serverNow = Date.parse(element.dataset.now || "");
        element.dataset.skew = String(Number.isNaN(serverNow) ? 0 : Date.now() - serverNow);
      }
      const seconds = (Date.now() - Number(element.dataset.skew) - at) / 1000;
      element.textContent = ago(Math.max(seconds, 0));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    update();
    window.setInterval(update, 15000);
  });
})();

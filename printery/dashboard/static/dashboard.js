// printery dashboard: live updates for the one region of a page marked data-live.
//
// Every interval the page asks its own URL with ?fragment=1 and puts the answer
// in place. The server renders (and escapes) every value; the answer is parsed
// with DOMParser, which never runs scripts, and the page's CSP runs no inline
// code anyway. The page works without this file: it is then a plain page, and
// <noscript> refreshes it.
(function () {
  "use strict";
  var region = document.querySelector("[data-live]");
  var badge = document.getElementById("live");
  if (!region) { return; }
  var every = Math.max(1000, parseInt(region.getAttribute("data-live"), 10) || 2000);
  var busy = false;

  function mark(ok) {
    if (!badge) { return; }
    badge.hidden = false;
    badge.textContent = ok ? "live" : "reconnecting…";
    badge.className = ok ? "live ok" : "live warn";
  }

  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    fetch(url.toString(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        // Keep what the reader opened (details elements) open across updates.
        var open = {};
        region.querySelectorAll("details[open]").forEach(function (d, i) { open[i] = true; });
        region.replaceChildren.apply(region, Array.prototype.slice.call(doc.body.childNodes));
        region.querySelectorAll("details").forEach(function (d, i) { if (open[i]) { d.open = true; } });
        mark(true);
      })
      .catch(function () { mark(false); })
      .then(function () { busy = false; });
  }

  mark(true);
  window.setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
})();

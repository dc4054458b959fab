// qw dashboard: swap in the live fragment the server pushes (server-sent events).
// The page is complete without this script; it only keeps it current without reloads.
(function () {
  "use strict";
  var src = document.body.getAttribute("data-live");
  var live = document.getElementById("live");
  var conn = document.getElementById("conn");
  if (!src || !live || !window.EventSource) { return; }
  var es = new EventSource(src);
  es.addEventListener("update", function (e) {
    // The server escapes every state string; the fragment is trusted markup.
    live.innerHTML = e.data;
    document.body.setAttribute("data-seq", e.lastEventId);
  });
  es.onopen = function () { conn.textContent = "live"; conn.className = "conn on"; };
  es.onerror = function () { conn.textContent = "reconnecting…"; conn.className = "conn off"; };
})();

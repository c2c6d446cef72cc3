// xrelay admin page: refresh the server-rendered live part, post the buttons.
(function () {
  "use strict";
  var meta = function (name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") : "";
  };
  var token = meta("xrelay-token");
  var every = parseInt(meta("xrelay-refresh"), 10) || 3000;
  // location.origin never carries credentials, even if the page was opened
  // as http://user:pass@host/admin (fetch refuses such URLs).
  var url = function (path) { return new URL(path, location.origin).toString(); };
  var live = document.getElementById("live");
  var notice = document.getElementById("notice");
  var updated = document.getElementById("updated");
  var timer = null;
  var waitingForIngest = false;

  function say(text, bad) {
    notice.textContent = text;
    notice.className = bad ? "bad" : "good";
  }

  function refresh() {
    clearTimeout(timer);
    return fetch(url("/admin/live"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        if (waitingForIngest && !document.getElementById("ingest-running")) {
          // the ingest asked for has finished: say how it went
          waitingForIngest = false;
          var last = document.querySelector("#ingests tr.ingest .outcome");
          if (last) { say("ingest " + last.textContent, last.textContent !== "ok"); }
        }
        updated.textContent = "updated " + new Date().toLocaleTimeString();
        updated.className = "";
      })
      .catch(function (e) {
        updated.textContent = "cannot reach xrelay (" + e.message + "), retrying";
        updated.className = "bad";
      })
      .then(function () {
        // sooner while an ingest runs, so its outcome shows up promptly
        var soon = waitingForIngest || document.getElementById("ingest-running");
        timer = setTimeout(refresh, soon ? Math.min(every, 1000) : every);
      });
  }

  function post(path, body) {
    return fetch(url(path), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-XRelay-Token": token, "Content-Type": "application/x-www-form-urlencoded" },
      body: body || ""
    }).then(function (r) {
      return r.json().catch(function () { return { ok: false, message: "HTTP " + r.status }; })
        .then(function (data) { say(data.message || ("HTTP " + r.status), !data.ok); });
    }).catch(function (e) { say("failed: " + e.message, true); })
      .then(refresh);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) { return; }
    var action = button.getAttribute("data-action");
    if (action === "ingest") {
      waitingForIngest = true;
      post("/admin/ingest");
    } else if (action === "disconnect") {
      button.disabled = true;
      post("/admin/disconnect", "id=" + encodeURIComponent(button.getAttribute("data-id")));
    }
  });

  timer = setTimeout(refresh, every);
})();

// Refreshes the overview's panels from the server-rendered fragment every few seconds. No dependencies.
"use strict";
(function () {
  const panels = document.getElementById("panels");
  if (!panels) return;
  const state = document.getElementById("refresh-state");
  const updated = document.getElementById("updated");
  const interval = Number(panels.dataset.interval) || 3000;

  function mark(text, cls) {
    if (state) { state.textContent = text; state.className = cls; }
  }

  async function refresh() {
    try {
      const response = await fetch(panels.dataset.src, {credentials: "same-origin", cache: "no-store",
                                                        headers: {"Accept": "text/html"}});
      if (response.status === 401) { window.location.reload(); return; }  // the session ended: the login form
      if (!response.ok) { mark("error " + response.status, "stale"); return; }
      panels.innerHTML = await response.text();  // server-rendered and escaped
      const fresh = panels.querySelector(".panels");
      if (fresh && updated) updated.textContent = fresh.dataset.generated;
      mark("live", "live");
    } catch (error) {
      mark("offline", "stale");
    } finally {
      window.setTimeout(refresh, interval);
    }
  }
  window.setTimeout(refresh, interval);
})();

/* leadready review UI: keyboard shortcuts, row actions with fetch, retrain progress.
 *
 * Plain JavaScript, no framework, no inline handlers (the Content-Security-Policy
 * allows scripts from this origin only). Writes send the CSRF token from the
 * page's <meta name="csrf-token"> and the header "HX-Request: true", so the
 * server answers with the updated table row instead of a redirect.
 */
(function () {
  "use strict";

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrfToken = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var page = document.body.getAttribute("data-page") || "";

  function typing(target) {
    if (!target) return false;
    var tag = target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
  }

  /* ---------------------------------------------------------------- help */

  var help = document.getElementById("help");

  function toggleHelp(show) {
    if (!help) return;
    var open = typeof show === "boolean" ? show : help.hidden;
    help.hidden = !open;
  }

  document.querySelectorAll("[data-help-open]").forEach(function (el) {
    el.addEventListener("click", function () { toggleHelp(true); });
  });
  document.querySelectorAll("[data-help-close]").forEach(function (el) {
    el.addEventListener("click", function () { toggleHelp(false); });
  });
  if (help) {
    help.addEventListener("click", function (event) {
      if (event.target === help) toggleHelp(false);
    });
  }

  /* --------------------------------------------------------------- toast */

  var toastTimer = null;

  function toast(message, category) {
    var box = document.getElementById("toast");
    if (!box || !message) return;
    box.textContent = message;
    box.className = "toast" + (category && category !== "success" ? " toast-" + category : "");
    box.hidden = false;
    if (toastTimer) clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { box.hidden = true; }, category === "warning" ? 9000 : 4500);
  }

  /* --------------------------------------------------------------- queue */

  var focused = -1;

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("tr.q-row"));
  }

  function focusRow(index) {
    var all = rows();
    if (!all.length) return;
    focused = Math.max(0, Math.min(all.length - 1, index));
    all.forEach(function (r, i) { r.classList.toggle("is-focused", i === focused); });
    all[focused].scrollIntoView({ block: "nearest" });
  }

  function currentRow() {
    var all = rows();
    return focused >= 0 && focused < all.length ? all[focused] : null;
  }

  function updateSelected() {
    var count = document.querySelectorAll('tr.q-row input[name="lead_id"]:checked').length;
    var out = document.getElementById("selected-count");
    if (out) out.textContent = String(count);
    var bulkBar = document.getElementById("bulk-form");
    if (bulkBar) bulkBar.classList.toggle("has-selection", count > 0);
    var submit = document.getElementById("bulk-submit");
    if (submit) {
      submit.textContent = count ? "Apply to " + count + " lead" + (count === 1 ? "" : "s") + "…" : "Apply to selected…";
    }
  }

  function postRow(row, url) {
    var body = new FormData();
    body.append("csrf_token", csrfToken);
    body.append("expected_stage", row.getAttribute("data-expected-stage") || "");
    body.append("expected_persona", row.getAttribute("data-expected-persona") || "");
    body.append("prediction_id", row.getAttribute("data-prediction") || "");
    row.classList.add("is-busy");
    return fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "HX-Request": "true", "X-CSRFToken": csrfToken },
    }).then(function (response) {
      if (response.redirected && /\/login/.test(response.url)) {
        window.location.assign(response.url);
        return null;
      }
      if (response.status === 204) {
        row.remove();
        return null;
      }
      if (!response.ok && response.status !== 422) {
        toast("Not saved (" + response.status + "). Reload the page and try again.", "error");
        row.classList.remove("is-busy");
        return null;
      }
      return response.text();
    }).then(function (html) {
      if (html === null || html === undefined) return;
      var holder = document.createElement("tbody");
      holder.innerHTML = html.trim();
      var fresh = holder.querySelector("tr.q-row");
      if (!fresh) return;
      var wasFocused = row.classList.contains("is-focused");
      row.replaceWith(fresh);
      if (wasFocused) fresh.classList.add("is-focused");
      fresh.classList.add("is-flash");
      toast(fresh.getAttribute("data-message"), fresh.getAttribute("data-message-category"));
      updateSelected();
    }).catch(function () {
      toast("The server did not answer. Check your connection and try again.", "error");
      row.classList.remove("is-busy");
    });
  }

  function chooseStage(number) {
    var select = document.getElementById(page === "lead" ? "rc-stage" : "bulk-stage");
    if (!select) return;
    // Option 0 is "keep"; keys 1-9 pick the labels in order.
    if (number >= select.options.length) return;
    select.selectedIndex = number;
    if (page === "queue") {
      var row = currentRow();
      if (row) {
        var box = row.querySelector('input[name="lead_id"]');
        if (box) box.checked = true;
        updateSelected();
      }
      var action = document.getElementById("bulk-action");
      if (action) action.value = "reclassify";
      var reason = document.getElementById("bulk-reason");
      if (reason) reason.focus();
    } else {
      var leadReason = document.getElementById("rc-reason");
      if (leadReason) leadReason.focus();
    }
  }

  function initQueue() {
    var table = document.getElementById("queue-table");
    if (!table) return;
    table.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-action]");
      if (!button) return;
      var row = button.closest("tr.q-row");
      if (!row) return;
      var kind = button.getAttribute("data-action");
      postRow(row, row.getAttribute(kind === "confirm" ? "data-confirm-url" : "data-undo-url"));
    });
    table.addEventListener("change", function (event) {
      if (event.target.id === "select-all") {
        var on = event.target.checked;
        document.querySelectorAll('tr.q-row input[name="lead_id"]').forEach(function (box) {
          box.checked = on;
        });
      }
      updateSelected();
    });
    // Enter in a bulk menu submits the bulk form (the server then asks to confirm the count).
    var bulkForm = document.getElementById("bulk-form");
    if (bulkForm) {
      bulkForm.addEventListener("keydown", function (event) {
        if (event.key === "Enter" && event.target.tagName === "SELECT") {
          event.preventDefault();
          var submit = document.getElementById("bulk-submit");
          if (typeof bulkForm.requestSubmit === "function") bulkForm.requestSubmit(submit);
          else bulkForm.submit();
        }
      });
    }
    var filters = document.getElementById("filter-form");
    if (filters) {
      filters.addEventListener("change", function (event) {
        if (event.target.tagName === "SELECT" || event.target.type === "date") filters.submit();
      });
    }
    updateSelected();
  }

  function queueKeys(event) {
    var key = event.key;
    var row = currentRow();
    if (key === "j") { focusRow(focused + 1); return true; }
    if (key === "k") { focusRow(focused < 0 ? 0 : focused - 1); return true; }
    if ((key === "o" || key === "Enter") && row) {
      window.location.assign(row.getAttribute("data-href"));
      return true;
    }
    if (key === "x" && row) {
      var box = row.querySelector('input[name="lead_id"]');
      if (box) box.checked = !box.checked;
      updateSelected();
      return true;
    }
    if (key === "c" && row) { postRow(row, row.getAttribute("data-confirm-url")); return true; }
    if (key === "u" && row) { postRow(row, row.getAttribute("data-undo-url")); return true; }
    if (key === "/") {
      var search = document.getElementById("search");
      if (search) search.focus();
      return true;
    }
    return false;
  }

  /* ---------------------------------------------------------------- lead */

  function submitForm(id, buttonId) {
    var form = document.getElementById(id);
    if (!form) return false;
    var button = buttonId ? document.getElementById(buttonId) : null;
    if (button && button.disabled) return false;
    if (typeof form.requestSubmit === "function") form.requestSubmit(button || undefined);
    else form.submit();
    return true;
  }

  function leadKeys(event) {
    var key = event.key;
    if (key === "c") return submitForm("confirm-form", "confirm-next");
    if (key === "u") return submitForm("undo-last-form", "undo-last");
    return false;
  }

  function initLead() {
    // "1-4, a reason, Enter": Enter in one of the form's menus saves and opens the
    // next lead (a <select> does not submit its form on Enter by itself).
    var form = document.getElementById("reclassify-form");
    if (!form) return;
    form.addEventListener("keydown", function (event) {
      if (event.key !== "Enter" || event.target.tagName !== "SELECT") return;
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      event.preventDefault();
      submitForm("reclassify-form", "save-next");
    });
  }

  /* ------------------------------------------------------------- retrain */

  function initRetrain() {
    var card = document.getElementById("retrain-card");
    if (!card) return;
    var url = card.getAttribute("data-status-url");
    var stateEl = document.getElementById("job-state");
    var stepEl = document.getElementById("job-step");
    var bar = document.getElementById("job-progress");
    var meta = document.getElementById("job-meta");
    var error = document.getElementById("job-error");
    var button = document.getElementById("retrain-button");
    var wasRunning = card.getAttribute("data-state") === "running";

    function render(status) {
      stateEl.textContent = status.state;
      stateEl.className = "job-state state-" + status.state;
      stepEl.textContent = status.step || "";
      bar.value = typeof status.fraction === "number" ? status.fraction : 0;
      if (status.started_at) {
        meta.textContent = "Started " + status.started_at + " by " + (status.started_by || "?") +
          (status.finished_at ? " · finished " + status.finished_at : "");
      }
      error.textContent = status.error || "";
      if (button) button.disabled = status.state === "running";
    }

    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (status) {
          if (!status) return;
          render(status);
          if (status.state === "running") {
            wasRunning = true;
            setTimeout(poll, 1000);
          } else if (wasRunning) {
            // Finished while we watched: reload once to show the result.
            window.location.reload();
          }
        })
        .catch(function () { setTimeout(poll, 3000); });
    }

    if (wasRunning) poll();
  }

  /* ------------------------------------------------------------ keyboard */

  var pendingG = false;

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape") { toggleHelp(false); return; }
    if (typing(event.target)) return;
    if (event.key === "?") { toggleHelp(); event.preventDefault(); return; }
    if (help && !help.hidden) return;
    if (pendingG) {
      pendingG = false;
      if (event.key === "q") {
        var back = document.querySelector("[data-queue-link]") || document.querySelector(".nav a");
        if (back) window.location.assign(back.getAttribute("href"));
        event.preventDefault();
      }
      return;
    }
    if (event.key === "g") { pendingG = true; return; }
    if (/^[1-9]$/.test(event.key) && (page === "queue" || page === "lead")) {
      chooseStage(Number(event.key));
      event.preventDefault();
      return;
    }
    var handled = false;
    if (page === "queue") handled = queueKeys(event);
    else if (page === "lead") handled = leadKeys(event);
    if (handled) event.preventDefault();
  });

  initQueue();
  initLead();
  initRetrain();
})();

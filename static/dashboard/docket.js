// Docket's own script: small conveniences on top of htmx. Every page works without it.
"use strict";

(function () {
  function typing(event) {
    const target = event.target;
    return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function rows() {
    const table = document.querySelector("table[data-keynav]");
    return table ? Array.from(table.querySelectorAll("tbody tr[data-href]")) : [];
  }

  function select(row) {
    rows().forEach(function (other) { other.classList.remove("is-selected"); other.removeAttribute("aria-selected"); });
    if (!row) return;
    row.classList.add("is-selected");
    row.setAttribute("aria-selected", "true");
    row.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    const all = rows();
    if (!all.length) return;
    const current = all.findIndex(function (row) { return row.classList.contains("is-selected"); });
    const next = current === -1 ? (step > 0 ? 0 : all.length - 1) : Math.min(Math.max(current + step, 0), all.length - 1);
    select(all[next]);
  }

  function help() {
    const dialog = document.getElementById("keys-help");
    if (dialog && typeof dialog.showModal === "function" && !dialog.open) dialog.showModal();
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event)) return;
    if (event.key === "j") { move(1); event.preventDefault(); }
    else if (event.key === "k") { move(-1); event.preventDefault(); }
    else if (event.key === "Enter") {
      const row = document.querySelector("table[data-keynav] tbody tr.is-selected[data-href]");
      if (row && row.dataset.href) { window.location.href = row.dataset.href; event.preventDefault(); }
    } else if (event.key === "/") {
      const search = document.querySelector("input[type=search]");
      if (search) { search.focus(); search.select(); event.preventDefault(); }
    } else if (event.key === "?") { help(); event.preventDefault(); }
  });

  document.addEventListener("click", function (event) {
    const element = event.target instanceof Element ? event.target : null;
    if (!element) return;
    const trigger = element.closest("[data-keys-help]");
    if (trigger) { help(); event.preventDefault(); }
    // Handlers live here, not in onclick attributes: the Content-Security-Policy allows no inline script.
    if (element.matches("input[data-select-on-click]")) element.select();
    const copy = element.closest("[data-copy]");
    if (copy) {
      const source = document.getElementById(copy.dataset.copy);
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.value).then(function () { copy.textContent = "Copied"; });
      }
    }
  });

  // A form that asks first (cancel a run, revoke a link): data-confirm holds the question.
  document.addEventListener("submit", function (event) {
    const form = event.target instanceof HTMLFormElement ? event.target : null;
    if (form && form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  // A row swapped in by the live poll keeps the keyboard selection.
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    const target = event.detail && event.detail.target;
    if (target && target.classList && target.classList.contains("is-selected") && event.detail.fragment) {
      const incoming = event.detail.fragment.firstElementChild || event.detail.fragment;
      if (incoming && incoming.classList) incoming.classList.add("is-selected");
    }
  });
})();

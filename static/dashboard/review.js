// Review mode by keyboard (review_item.html). Every action is also a plain form or link that works without
// this script; here keys press those same buttons and follow those same links. docket.js opens "?".
"use strict";

(function () {
  let pending = 0; // htmx saves in flight
  let queued = null; // a navigation waiting for them, so no mark is lost by leaving the page
  let refocus = null; // the card to focus again once its new copy is swapped in
  let leaving = false; // a saved score or comment: the focus leaves its field for the card, so keys work again

  function typing(target) {
    return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function cards() {
    return Array.from(document.querySelectorAll("[data-review-card][tabindex]"));
  }

  function currentCard() {
    const active = document.activeElement;
    const card = active instanceof Element ? active.closest("[data-review-card]") : null;
    if (card && card.hasAttribute("tabindex")) return card;
    // Between a swap and the focus coming back: the card being replaced is still the current one.
    return refocus === null ? null : document.querySelector('[data-review-card="' + refocus + '"][tabindex]');
  }

  function focusCard(card, scroll) {
    if (!card) return;
    card.focus({ preventScroll: true });
    if (!scroll) return;
    // On a wide screen the panel scrolls on its own beside the text: scroll only it, so the request and
    // response stay where the reviewer is reading. On a narrow one the page scrolls.
    const panel = card.closest(".review-panel");
    if (panel && panel.scrollHeight > panel.clientHeight + 1 && getComputedStyle(panel).position === "sticky") {
      const top = card.offsetParent === panel ? card.offsetTop : card.offsetTop - panel.offsetTop;
      if (top < panel.scrollTop) panel.scrollTop = top - 4;
      else if (top + card.offsetHeight > panel.scrollTop + panel.clientHeight) {
        panel.scrollTop = Math.min(top - 4, top + card.offsetHeight - panel.clientHeight + 4);
      }
    } else {
      card.scrollIntoView({ block: "nearest" });
    }
  }

  // Move the focus to the next (+1) or previous (-1) evaluator; false at either end.
  function step(delta) {
    const all = cards();
    if (!all.length) return false;
    const card = currentCard();
    if (!card) { focusCard(delta > 0 ? all[0] : all[all.length - 1], true); return true; }
    const next = all[all.indexOf(card) + delta];
    if (!next) return false;
    focusCard(next, true);
    return true;
  }

  function go(url) {
    if (!url) return;
    if (pending > 0) { queued = url; return; }
    window.location.assign(url);
  }

  function link(selector) {
    const element = document.querySelector(selector);
    return element ? element.getAttribute("href") : null;
  }

  // htmx wires a swapped-in card's forms only when it settles (20 ms later): a key pressed, or a held
  // save sent, before then would post the plain form and reload the page. Wire it now (htmx skips
  // elements it has already wired).
  function wired(element) {
    if (element && window.htmx) window.htmx.process(element);
    return element;
  }

  function mark(label) {
    const card = currentCard() || cards()[0];
    if (!card) return;
    const button = card.querySelector('.review-marks button[value="' + label + '"]');
    if (!button) return;
    if (label !== "clear") {
      card.querySelectorAll(".review-marks button.mark").forEach(function (other) {
        other.setAttribute("aria-pressed", other === button ? "true" : "false");
      });
    }
    card.classList.add("is-pending");
    wired(card);
    const all = cards();
    const next = all[all.indexOf(card) + 1];
    // Marking moves on to the next evaluator; on the last one the focus stays (on its new copy).
    if (next && label !== "clear") focusCard(next, true);
    else refocus = card.dataset.reviewCard;
    button.click();
  }

  function edit(kind) {
    const card = currentCard() || cards()[0];
    if (!card) return;
    const details = card.querySelector("details.review-more");
    const field = card.querySelector(kind === "score" ? "[data-review-score]" : "[data-review-comment]");
    if (!details || !field) return;
    details.dataset.wasOpen = details.open ? "1" : "";
    details.open = true;
    field.focus();
    if (kind === "score") field.select();
  }

  function cancelEdit(field) {
    const card = field.closest("[data-review-card]");
    const form = field.form;
    if (form) {
      form.querySelectorAll("input[name=score], textarea[name=comment]").forEach(function (input) { input.value = input.defaultValue; });
    }
    const details = field.closest("details.review-more");
    if (details && !details.dataset.wasOpen) details.open = false;
    focusCard(card, false);
  }

  function agree() {
    const form = document.getElementById("review-agree");
    if (!form) return;
    if (pending > 0) { queued = form; return; }
    form.requestSubmit();
  }

  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (document.querySelector("dialog[open]")) return;
    // Inside the corrected score or the comment: Esc cancels, Ctrl/Cmd+Enter saves the comment.
    if (target instanceof HTMLElement && target.closest(".review-details")) {
      if (event.key === "Escape") { cancelEdit(target); event.preventDefault(); }
      else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target.tagName === "TEXTAREA" && target.form) {
        target.form.requestSubmit();
        event.preventDefault();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(target)) return;
    const key = event.key;
    const active = document.activeElement;
    const onCard = active instanceof Element && active.matches("[data-review-card]");
    if (key === "Tab") {
      // Tab walks the evaluators while the focus is on one of them (or nowhere). Enter steps into a card's
      // buttons, where the browser's own Tab order applies, and Esc steps back out.
      if (!active || active === document.body || onCard) {
        if (step(event.shiftKey ? -1 : 1)) event.preventDefault();
      }
      return;
    }
    if (key === "Enter" && onCard) {
      const first = active.querySelector("button, summary");
      if (first) { first.focus(); event.preventDefault(); }
      return;
    }
    if (key === "Escape" && active instanceof Element && !onCard && active.closest("[data-review-card]")) {
      focusCard(active.closest("[data-review-card]"), false);
      event.preventDefault();
      return;
    }
    let handled = true;
    if (key === "1" || key === "p") mark("pass");
    else if (key === "2" || key === "f") mark("fail");
    else if (key === "x") mark("clear");
    else if (key === "a") agree();
    else if (key === "n" || key === "j") go(link("[data-review-next]"));
    else if (key === "N" || key === "k") go(link("[data-review-previous]"));
    else if (key === "u") go(link("[data-review-next-open]"));
    else if (key === "s") edit("score");
    else if (key === "c") edit("comment");
    else handled = false;
    if (handled) event.preventDefault();
  });

  // Saves go one at a time, in the order they were asked for. One asked for while another is in flight is
  // held here rather than queued in htmx: the answer in flight may replace the card the held form is in,
  // and htmx drops a request whose form has left the page. What the held save would send is kept, and
  // sent from the card's new copy once the answer is in.
  const held = [];
  function isSave(element) {
    return element instanceof Element && element.closest(".review-marks, .review-details") !== null;
  }
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !isSave(form)) return;
    const card = form.closest("[data-review-card]");
    const details = form.classList.contains("review-details");
    // Saving a score or comment hands the keys back at once: the next key (a, n...) is a command, not
    // more text, even while the save is still on its way. What the form sends is read before this.
    const leave = details && card && form.contains(document.activeElement);
    if (pending > 0) {
      event.preventDefault();
      event.stopPropagation(); // before htmx's own listener on the form
      held.push({
        card: card ? card.dataset.reviewCard : null,
        details: details,
        label: event.submitter ? event.submitter.value : null,
        score: form.elements.namedItem("score") ? form.elements.namedItem("score").value : null,
        comment: form.elements.namedItem("comment") ? form.elements.namedItem("comment").value : null,
      });
      if (leave) focusCard(card, false);
      return;
    }
    pending += 1;
    // Listeners added to the form now still hear this event: it has not reached the form yet.
    wired(form);
    if (details && card) { refocus = card.dataset.reviewCard; leaving = true; }
    if (leave) focusCard(card, false);
  }, true);

  function release() {
    while (held.length) {
      const next = held.shift();
      const card = document.querySelector('[data-review-card="' + next.card + '"][tabindex]');
      const form = wired(card ? card.querySelector(next.details ? "form.review-details" : "form.review-marks") : null);
      if (!form) continue;
      if (next.details) {
        if (next.score !== null && form.elements.namedItem("score")) form.elements.namedItem("score").value = next.score;
        if (next.comment !== null && form.elements.namedItem("comment")) form.elements.namedItem("comment").value = next.comment;
        form.requestSubmit();
        return true;
      }
      const button = form.querySelector('button[value="' + next.label + '"]');
      if (button) { button.click(); return true; }
    }
    return false;
  }

  document.addEventListener("htmx:afterRequest", function (event) {
    // htmx names the element that holds the request line (the panel, see hx-sync) or the form itself.
    const element = event.detail && event.detail.elt;
    if (!(element instanceof Element) || !(isSave(element) || element.closest("#review-panel"))) return;
    pending = Math.max(pending - 1, 0);
    if (pending > 0 || release()) return;
    if (queued) {
      const next = queued;
      queued = null;
      if (next instanceof HTMLFormElement) next.requestSubmit();
      else window.location.assign(next);
    }
  });

  // A card's answer can arrive while the reviewer is typing a score or comment into it (they pressed 1, then
  // c, faster than the save came back). The swap replaces the card: carry what they are typing, the caret
  // and the focus over to the new copy, so no keystroke is lost or read as a command.
  let typed = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    const target = event.detail.target;
    const active = document.activeElement;
    typed = null;
    if (target instanceof Element && target.matches("[data-review-card]") && active instanceof HTMLElement &&
        target.contains(active) && active.closest(".review-details") && "value" in active && active.name) {
      typed = { card: target.dataset.reviewCard, name: active.name, value: active.value,
        start: active.selectionStart, end: active.selectionEnd };
    }
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (typed === null) return;
    const saved = typed;
    typed = null;
    const card = document.querySelector('[data-review-card="' + saved.card + '"][tabindex]');
    const field = card ? card.querySelector('.review-details [name="' + saved.name + '"]') : null;
    if (!field) return;
    const details = field.closest("details");
    if (details) details.open = true;
    field.value = saved.value;
    field.focus();
    if (saved.start !== null && typeof field.setSelectionRange === "function") field.setSelectionRange(saved.start, saved.end);
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    const detail = event.detail;
    const target = detail.target;
    if (!(target instanceof Element) || !target.matches("[data-review-card]")) return;
    // A review the server refused comes back as the card with the reason in it: show it.
    if (detail.xhr && detail.xhr.status === 400) { detail.shouldSwap = true; detail.isError = false; leaving = false; }
    if (target.contains(document.activeElement)) refocus = target.dataset.reviewCard;
  });

  // The card is swapped right after the answer: put the focus back on its new copy at once (htmx:load
  // comes only after the settle delay, and a fast Tab in between would start from nowhere). htmx itself
  // keeps the focus in a field with an id (a refused comment stays where it was typed).
  document.addEventListener("htmx:afterSwap", function () {
    if (refocus === null) return;
    const card = document.querySelector('[data-review-card="' + refocus + '"][tabindex]');
    // Another card's answer came first: this one (marked is-pending by a key) still waits for its own.
    if (card && card.classList.contains("is-pending")) return;
    const active = document.activeElement;
    refocus = null;
    if (card && (leaving || !active || active === document.body || !active.closest("[data-review-card]"))) focusCard(card, false);
    leaving = false;
  });

  function failed(event) {
    const status = document.getElementById("review-status");
    const card = event.detail && event.detail.target;
    if (card instanceof Element) card.classList.remove("is-pending");
    if (status && !(event.detail.xhr && event.detail.xhr.status === 400)) {
      status.textContent = "Could not save: the server did not answer. Your mark was not kept; try again.";
      status.classList.add("is-bad");
    }
  }
  document.addEventListener("htmx:responseError", failed);
  document.addEventListener("htmx:sendError", failed);

  function start() {
    const panel = document.getElementById("review-panel");
    if (!panel) return;
    const first = panel.querySelector('[data-review-card="' + panel.dataset.focus + '"][tabindex]') || cards()[0];
    focusCard(first, false);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

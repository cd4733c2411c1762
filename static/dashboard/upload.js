// Upload page: drag and drop onto the drop zone, a size check before sending, and an upload progress bar.
// Without JavaScript the same form posts normally; the mapping forms then have an Apply button.
"use strict";

document.documentElement.classList.add("js");

(function () {
  function formatSize(bytes) {
    const units = ["bytes", "KB", "MB", "GB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? value + " bytes" : value.toFixed(1).replace(/\.0$/, "") + " " + units[unit];
  }

  function setup(form) {
    const input = form.querySelector("input[type=file]");
    const zone = form.querySelector("[data-dropzone]");
    const nameOut = form.querySelector("[data-file-name]");
    const clientError = form.querySelector("[data-client-error]");
    const progress = form.querySelector("[data-progress]");
    const submit = form.querySelector("[data-submit]");
    const maxBytes = Number(form.dataset.maxBytes || 0);

    function showError(message) {
      clientError.textContent = message;
      clientError.hidden = !message;
    }

    function chosen() {
      const file = input.files && input.files[0];
      const serverError = document.getElementById("upload-error");
      if (serverError) serverError.remove();
      zone.classList.toggle("has-file", Boolean(file));
      nameOut.textContent = file ? file.name + " · " + formatSize(file.size) : "";
      if (file && maxBytes && file.size > maxBytes) {
        showError(file.name + " is " + formatSize(file.size) + ", over the " + form.dataset.maxSize + " upload limit.");
      } else if (file && file.size === 0) {
        showError(file.name + " is empty.");
      } else {
        showError("");
      }
      return file;
    }

    input.addEventListener("change", chosen);

    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add("is-dragging");
      });
    });
    ["dragleave", "dragend", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () {
        zone.classList.remove("is-dragging");
      });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (!event.dataTransfer || !event.dataTransfer.files.length) return;
      const transfer = new DataTransfer();
      transfer.items.add(event.dataTransfer.files[0]);
      input.files = transfer.files;
      chosen();
    });
    // A file dropped next to the zone should not make the browser navigate away to it.
    ["dragover", "drop"].forEach(function (type) {
      window.addEventListener(type, function (event) {
        if (!zone.contains(event.target)) event.preventDefault();
      });
    });

    form.addEventListener("submit", function (event) {
      const file = chosen();
      if (!file) {
        event.preventDefault();
        showError("Choose a file to upload, or drag one onto the box.");
        return;
      }
      if (!clientError.hidden) {
        event.preventDefault();
        return;
      }
      // Send with XMLHttpRequest to show upload progress; the server answers with a redirect to the
      // preview (followed here) or with this page and an error.
      event.preventDefault();
      const request = new XMLHttpRequest();
      const bar = progress.querySelector(".progress span");
      const label = progress.querySelector("[data-progress-label]");
      progress.hidden = false;
      submit.disabled = true;
      request.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        const percent = Math.round((e.loaded / e.total) * 100);
        bar.style.width = percent + "%";
        bar.parentElement.setAttribute("aria-valuenow", String(percent));
        label.textContent = percent < 100
          ? "Uploading… " + formatSize(e.loaded) + " of " + formatSize(e.total)
          : "Reading the file…";
      });
      request.addEventListener("load", function () {
        const landed = request.responseURL || "";
        if (request.status < 400 && landed && landed.split("#")[0] !== form.action.split("#")[0]) {
          window.location.assign(landed);
          return;
        }
        const page = new DOMParser().parseFromString(request.responseText, "text/html");
        const error = page.getElementById("upload-error");
        progress.hidden = true;
        submit.disabled = false;
        showError(error ? error.textContent : "The upload failed (HTTP " + request.status + "). Try again.");
      });
      request.addEventListener("error", function () {
        progress.hidden = true;
        submit.disabled = false;
        showError("The upload did not reach the server. Check the connection and try again.");
      });
      request.open("POST", form.action);
      request.send(new FormData(form));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.getElementById("upload-form");
    if (form) setup(form);
  });
})();

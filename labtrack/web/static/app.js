/* LabTrack pages: scanner-friendly fields, signature dialogs, live clocks. Served by the app, no CDN.
   Everything here is reachable with the keyboard alone. */
(function () {
  "use strict";

  function visibleFields(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.matches("input:not([type=hidden]), select, textarea") && !el.disabled && el.offsetParent !== null;
    });
  }

  // A keyboard-wedge scanner types the code and then Enter. In a field marked data-scan, Enter moves on
  // to the next required field still empty (so a scan never submits half a form); when none is left,
  // Enter submits as usual.
  document.addEventListener("keydown", function (event) {
    var field = event.target;
    if (event.key !== "Enter" || !field.matches || !field.matches("input[data-scan]") || !field.form) {
      return;
    }
    var fields = visibleFields(field.form);
    var empty = function (el) { return el.required && !el.value; };
    var next = fields.slice(fields.indexOf(field) + 1).find(empty) || fields.find(empty);
    if (next && next !== field) {
      event.preventDefault();
      next.focus();
    }
  });

  function openDialog(dialog) {
    if (!dialog.open) {
      dialog.showModal();
    }
    var target = dialog.querySelector("[aria-invalid=true]") || dialog.querySelector("[autofocus]");
    if (target) {
      target.focus();
    }
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-dialog]");
    if (opener) {
      openDialog(document.getElementById(opener.getAttribute("data-dialog")));
      return;
    }
    var closer = event.target.closest("[data-close]");
    if (closer) {
      closer.closest("dialog").close();
    }
  });

  function countdown(ms) {
    if (ms <= 0) {
      return "expired";
    }
    var minutes = Math.floor(ms / 60000);
    var hours = Math.floor(minutes / 60);
    var rest = minutes % 60;
    return hours ? hours + " h " + String(rest).padStart(2, "0") + " min left" : rest + " min left";
  }

  function tick() {
    var now = new Date();
    document.querySelectorAll("[data-utc-now]").forEach(function (el) {
      el.textContent = now.toISOString().replace(/\.\d{3}Z$/, "Z");
    });
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      el.textContent = countdown(new Date(el.getAttribute("data-expires")) - now);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    // A refused signature comes back with its dialog open and the message beside the password.
    var refused = document.querySelector("dialog[data-open]");
    if (refused) {
      openDialog(refused);
    } else {
      var invalid = document.querySelector("main [aria-invalid=true]");
      if (invalid) {
        invalid.focus();
      }
    }
    tick();
    window.setInterval(tick, 1000);
  });
})();

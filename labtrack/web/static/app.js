/* LabTrack pages: scanner-friendly fields, signature dialogs, live clocks. Served by the app, no CDN.
   Everything here is reachable with the keyboard alone. */
(function () {
  "use strict";

  function visibleFields(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.matches("input:not([type=hidden]), select, textarea") && !el.disabled && el.offsetParent !== null;
    });
  }

  // The next empty field after this one (a panel's optional results too), else a required one left
  // empty before it; none means the form is complete.
  function nextEmpty(field) {
    var fields = visibleFields(field.form).filter(function (el) { return el.type !== "checkbox" && el.type !== "radio"; });
    var after = fields.slice(fields.indexOf(field) + 1).find(function (el) { return !el.value && !el.hasAttribute("data-pick"); });
    return after || fields.find(function (el) { return el.required && !el.value; });
  }

  // A lot or equipment code scanned (or typed) beside its list picks it; an unknown or unusable one
  // says why and stays selected, so the next scan replaces it.
  function pick(input) {
    var select = document.getElementById(input.getAttribute("data-pick"));
    var error = document.getElementById(input.id + "-error");
    var code = input.value.trim().toUpperCase();
    var option = Array.prototype.find.call(select.options, function (o) {
      return o.value && (o.getAttribute("data-code") || "").toUpperCase() === code;
    });
    var problem = !option ? "No " + input.labels[0].textContent.replace(/^or scan the /, "") + " " + input.value.trim() + " in this list."
      : option.disabled ? option.getAttribute("data-reason") : "";
    error.hidden = !problem;
    error.textContent = problem;
    input.setAttribute("aria-invalid", problem ? "true" : "false");
    if (problem) {
      input.select();
      return false;
    }
    select.value = option.value;
    input.value = "";
    return true;
  }

  // A keyboard-wedge scanner types the code and then Enter. In any field of a form, Enter moves on to
  // the next empty field, so neither a scan nor a typed value submits half a form; at the last field,
  // with every required one filled, Enter submits. Text areas keep their Enter for new lines.
  document.addEventListener("keydown", function (event) {
    var field = event.target;
    if (event.key !== "Enter" || !field.form || !field.matches("input:not([type=submit]):not([type=button]), select")) {
      return;
    }
    if (field.hasAttribute("data-pick")) {
      event.preventDefault();
      if (field.value.trim() && pick(field)) {
        var after = nextEmpty(field);
        if (after) {
          after.focus();
        }
      }
      return;
    }
    var next = nextEmpty(field);
    if (next && next !== field) {
      event.preventDefault();
      next.focus();
    } else if (next === field) {
      event.preventDefault();
    }
  });

  // A scan field selects what it holds when it gets the focus, so the next scan replaces it.
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("input[data-scan]")) {
      event.target.select();
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
        if (invalid.matches("input[data-scan]")) {
          invalid.value = "";  // a refused scan is emptied: the next scan starts afresh
        }
        invalid.focus();
      }
    }
    tick();
    window.setInterval(tick, 1000);
  });
})();

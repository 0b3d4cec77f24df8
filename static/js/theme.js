// Theme: applies the saved choice (light, dark, or the system's) before the page paints, and wires the
// header toggle. Loaded as a classic script in <head> on purpose: a module would run after first paint
// and the page would flash in the wrong theme.
(function () {
  "use strict";
  var KEY = "companion-hub.theme";
  var ORDER = ["system", "light", "dark"];
  var root = document.documentElement;

  function saved() {
    try {
      var value = window.localStorage.getItem(KEY);
      return ORDER.indexOf(value) >= 0 ? value : "system";
    } catch (e) {
      return "system";
    }
  }

  function apply(choice) {
    if (choice === "system") {
      root.removeAttribute("data-theme");
    } else {
      root.setAttribute("data-theme", choice);
    }
    var label = document.getElementById("theme-toggle-label");
    if (label) {
      label.textContent = "Theme: " + choice;
    }
  }

  function store(choice) {
    try {
      if (choice === "system") {
        window.localStorage.removeItem(KEY);
      } else {
        window.localStorage.setItem(KEY, choice);
      }
    } catch (e) {
      // Private mode or storage disabled: the choice lasts for this page only.
    }
  }

  var current = saved();
  apply(current);

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) {
      return;
    }
    button.hidden = false;
    apply(current);
    button.addEventListener("click", function () {
      current = ORDER[(ORDER.indexOf(current) + 1) % ORDER.length];
      store(current);
      apply(current);
    });
  });
})();

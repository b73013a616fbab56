// Progressive enhancement only: every page works without this script.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("copy");
  if (!button) return;
  var field = document.getElementById(button.getAttribute("data-copy"));
  var status = document.getElementById("copy-status");
  button.hidden = false;
  button.addEventListener("click", function () {
    field.select();
    var done = function () { status.textContent = "Copied to the clipboard."; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () {
        status.textContent = "Select the key and copy it.";
      });
    } else {
      try { document.execCommand("copy"); done(); } catch (e) { status.textContent = "Select the key and copy it."; }
    }
  });
});

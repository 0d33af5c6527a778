// smsdispatch panel: the only script, loaded from the panel itself (no inline script, no
// CDN). Every page works without it; it adds copy buttons and the campaign form's preview.
"use strict";

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text);
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.appendChild(area);
  area.select();
  document.execCommand("copy");
  area.remove();
  return Promise.resolve();
}

document.querySelectorAll("[data-copy]").forEach((button) => {
  button.hidden = false;
  button.addEventListener("click", () => {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    copyText(source.textContent.trim()).then(() => {
      const label = button.textContent;
      button.textContent = "Copied";
      button.setAttribute("aria-live", "polite");
      setTimeout(() => { button.textContent = label; }, 1600);
    });
  });
});

// A page that is still changing (a campaign being sent) reloads itself every few seconds.
document.querySelectorAll("[data-auto-refresh]").forEach((el) => {
  const seconds = Math.max(2, Number(el.dataset.autoRefresh) || 5);
  setTimeout(() => window.location.reload(), seconds * 1000);
});

// The campaign form's live preview: the server renders it (one implementation of encoding,
// parts and placeholders); this only asks for it while the user types.
document.querySelectorAll("form[data-live-preview]").forEach((form) => {
  const target = document.getElementById(form.dataset.livePreview);
  if (!target) return;
  let timer = null;
  let seq = 0;
  const refresh = () => {
    const mine = ++seq;
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-Panel-Fragment": "1" },
      credentials: "same-origin",
    })
      .then((r) => r.text())
      .then((html) => {
        if (mine === seq) target.innerHTML = html;
      })
      .catch(() => {});
  };
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 500);
  };
  form.addEventListener("input", later);
  form.addEventListener("change", later);
});

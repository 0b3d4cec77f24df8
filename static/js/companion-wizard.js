// Companion form: custom-choice boxes, tag chips and the portrait cropper on both the wizard and the edit
// page; on the wizard (form[data-wizard]) also one step at a time with a progress header, Back/Next,
// per-step checks, and on the last step a preview of the derived prompt and tags from the server.

import { enhanceTags } from "./tag-input.js";
import { enhanceCropper } from "./portrait-cropper.js";

for (const select of document.querySelectorAll("select[data-custom-toggle]")) {
  const input = document.getElementById(select.dataset.customToggle);
  if (!input) continue;
  const sync = () => {
    const custom = select.value === "custom";
    input.hidden = !custom;
    input.required = custom;
    if (custom && document.activeElement === select) input.focus();
  };
  select.addEventListener("change", sync);
  sync();
}

enhanceTags(document);
enhanceCropper(document);

const form = document.querySelector("form[data-wizard]");
if (form) wizard(form);

function wizard(form) {
  const steps = Array.from(form.querySelectorAll(".wizard-step"));
  const progress = document.getElementById("wizard-progress");
  const back = document.getElementById("wizard-back");
  const next = document.getElementById("wizard-next");
  const submit = document.getElementById("wizard-submit");
  const token = document.querySelector('meta[name="csrf-token"]').content;
  if (steps.length === 0 || !progress || !back || !next || !submit) return;

  const items = steps.map((step, index) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "wizard-progress__step";
    button.textContent = `${index + 1}. ${step.dataset.title}`;
    button.addEventListener("click", () => {
      if (index <= current || stepsValid(0, index)) show(index);
    });
    item.append(button);
    progress.append(item);
    return button;
  });
  progress.hidden = false;
  back.hidden = false;
  next.hidden = false;

  const firstInvalid = steps.findIndex((step) => step.querySelector(".field--invalid"));
  let current = firstInvalid >= 0 ? firstInvalid : 0;

  function controls(step) {
    return Array.from(step.querySelectorAll("input, select, textarea")).filter(
      (control) => control.type !== "hidden" && !control.hidden,
    );
  }

  function stepValid(index) {
    for (const control of controls(steps[index])) {
      if (!control.checkValidity()) {
        show(index);
        control.reportValidity();
        return false;
      }
    }
    return true;
  }

  function stepsValid(from, to) {
    for (let index = from; index < to; index += 1) if (!stepValid(index)) return false;
    return true;
  }

  function show(index) {
    current = index;
    steps.forEach((step, i) => (step.hidden = i !== index));
    items.forEach((button, i) => {
      if (i === index) button.setAttribute("aria-current", "step");
      else button.removeAttribute("aria-current");
      button.classList.toggle("wizard-progress__step--done", i < index);
    });
    back.hidden = index === 0;
    next.hidden = index === steps.length - 1;
    submit.hidden = index !== steps.length - 1;
    if (index === steps.length - 1) preview();
  }

  back.addEventListener("click", () => show(Math.max(0, current - 1)));
  next.addEventListener("click", () => {
    if (stepValid(current)) show(current + 1);
  });
  form.addEventListener("submit", (event) => {
    if (!stepsValid(0, steps.length)) event.preventDefault();
  });

  async function preview() {
    const box = document.getElementById("preview");
    if (!box) return;
    const body = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (typeof value === "string") body.append(name, value);
    }
    try {
      const response = await fetch("/api/v1/companions/preview", {
        method: "POST",
        headers: { "X-CSRF-Token": token, Accept: "application/json" },
        body,
      });
      if (!response.ok) return;
      const derived = await response.json();
      document.getElementById("preview-prompt").textContent = derived.system_prompt;
      document.getElementById("preview-tags").textContent = derived.visual_tags.join(", ");
      box.hidden = false;
    } catch {
      // The preview is a help, not a requirement: creating works without it.
    }
  }

  show(current);
}

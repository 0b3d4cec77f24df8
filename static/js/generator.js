// Generator: sends the form as JSON to /api/v1/images, shows a working indicator with the elapsed time, then the
// picture in place (or the errors beside their fields). Enhances templates/images/generate.html; without it the
// form posts to /generate and the page comes back with the result.

const form = document.getElementById("generator");
const token = document.querySelector('meta[name="csrf-token"]').content;
const button = document.getElementById("generate");
const progress = document.getElementById("generator-progress");
const elapsed = document.getElementById("generator-elapsed");
const failure = document.getElementById("generator-failure");
const result = document.getElementById("generator-result");

function clearErrors() {
  for (const list of form.querySelectorAll(".field__errors")) list.replaceChildren();
  for (const field of form.querySelectorAll(".field--invalid")) field.classList.remove("field--invalid");
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  failure.hidden = true;
  failure.textContent = "";
}

function showFieldErrors(fields) {
  let first = null;
  for (const [name, messages] of Object.entries(fields)) {
    const list = document.getElementById(`${name}-errors`);
    const input = document.getElementById(name);
    if (!list || !input) continue;
    for (const message of messages) {
      const item = document.createElement("li");
      item.textContent = message;
      list.append(item);
    }
    input.closest(".field").classList.add("field--invalid");
    input.setAttribute("aria-invalid", "true");
    first = first || input;
  }
  if (first) first.focus();
}

function showFailure(message) {
  failure.textContent = message;
  failure.hidden = false;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  const body = Object.fromEntries(new FormData(form));
  delete body.csrf_token;
  button.disabled = true;
  progress.hidden = false;
  const started = Date.now();
  elapsed.textContent = "Painting…";
  const ticker = setInterval(() => {
    elapsed.textContent = `Painting… ${Math.round((Date.now() - started) / 1000)} s`;
  }, 1000);
  try {
    const response = await fetch("/api/v1/images", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": token },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const error = (data && data.error) || {};
      if (error.fields) showFieldErrors(error.fields);
      else showFailure(`${error.message || `HTTP ${response.status}`}${error.correlation_id ? ` (reference ${error.correlation_id})` : ""}`);
      return;
    }
    const image = document.getElementById("result-image");
    image.src = data.url;
    image.width = data.width;
    image.height = data.height;
    document.getElementById("result-link").href = data.url;
    document.getElementById("result-download").href = `${data.url}?download=1`;
    document.getElementById("result-gallery").href = data.gallery_url;
    result.hidden = false;
    result.scrollIntoView({ block: "nearest" });
  } catch {
    showFailure("The connection failed. Check your network and try again.");
  } finally {
    clearInterval(ticker);
    progress.hidden = true;
    button.disabled = false;
  }
});

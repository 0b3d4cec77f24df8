// Password strength meter: scores a password as the user types, with the same rules the server enforces
// (src/accounts/password_policy.rs) and the same common-password list (static/data/common-passwords.txt).
// Enhances every <input data-password-meter="ID"> by filling the meter element with that ID.

export const MIN_LENGTH = 8;
export const MAX_LENGTH = 128;
export const COMMON_SEQUENCES = ["123456", "password", "qwerty"];

const MESSAGES = {
  length: "Use 8 to 128 characters.",
  uppercase: "Add an upper-case letter.",
  lowercase: "Add a lower-case letter.",
  digit: "Add a digit.",
  other: "Add a symbol or space (something that is not a letter or digit).",
  common_sequence: "Do not start or end with a common sequence such as 123456, password or qwerty.",
  common_password: "This is one of the most common passwords; choose another.",
};
const LABELS = ["Very weak", "Weak", "Fair", "Strong", "Very strong"];
const LONGER = "Longer is stronger: 16 characters or a few random words are best.";

let common = new Set();
const commonLoaded = fetch(new URL("../data/common-passwords.txt", import.meta.url))
  .then((response) => (response.ok ? response.text() : ""))
  .then((text) => {
    common = new Set(text.split("\n").map((line) => line.trim()).filter(Boolean));
  })
  .catch(() => {});

/** Resolves once the common-password list is loaded (or failed to load). */
export function ready() {
  return commonLoaded;
}

/** Every rule the password breaks, in the server's order. */
export function violations(password) {
  const chars = Array.from(password);
  const lower = password.toLowerCase();
  const broken = [];
  if (chars.length < MIN_LENGTH || chars.length > MAX_LENGTH) broken.push("length");
  if (!chars.some((c) => /\p{Uppercase}/u.test(c))) broken.push("uppercase");
  if (!chars.some((c) => /\p{Lowercase}/u.test(c))) broken.push("lowercase");
  if (!chars.some((c) => c >= "0" && c <= "9")) broken.push("digit");
  if (!chars.some((c) => !/\p{Uppercase}|\p{Lowercase}|[0-9]/u.test(c))) broken.push("other");
  if (COMMON_SEQUENCES.some((s) => lower.startsWith(s) || lower.endsWith(s))) broken.push("common_sequence");
  if (common.has(lower)) broken.push("common_password");
  return broken;
}

/** Score 0–4, its label, and what to change. */
export function strength(password) {
  const broken = violations(password);
  const length = Array.from(password).length;
  let score;
  if (broken.length > 0) score = length < MIN_LENGTH || broken.length >= 3 ? 0 : 1;
  else if (length >= 16) score = 4;
  else if (length >= 12) score = 3;
  else score = 2;
  const feedback = broken.map((rule) => MESSAGES[rule]);
  if (broken.length === 0 && score < 4) feedback.push(LONGER);
  return { score, label: LABELS[score], feedback };
}

function render(meter, password) {
  if (password.length === 0) {
    meter.hidden = true;
    return;
  }
  const result = strength(password);
  meter.hidden = false;
  meter.dataset.score = String(result.score);
  meter.querySelector(".meter__fill").dataset.score = String(result.score);
  meter.querySelector(".meter__label").textContent = `Strength: ${result.label}`;
  const list = meter.querySelector(".meter__feedback");
  list.replaceChildren(
    ...result.feedback.map((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }),
  );
}

for (const input of document.querySelectorAll("input[data-password-meter]")) {
  const meter = document.getElementById(input.dataset.passwordMeter);
  if (!meter) continue;
  const update = () => render(meter, input.value);
  input.addEventListener("input", update);
  commonLoaded.then(update);
}

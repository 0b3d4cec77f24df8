// Tag input: turns <input data-tags> (a comma-separated list the server reads) into chips.
// Enter or comma adds the typed tag (trimmed, de-duplicated ignoring case); × or Backspace removes one.
// The original input stays in the form, hidden, and always holds the list, so the server sees the same
// field with or without JavaScript.

function parse(value) {
  return value.split(",").map((t) => t.trim()).filter(Boolean);
}

export function enhanceTags(root) {
  for (const input of root.querySelectorAll("input[data-tags]")) {
    if (input.dataset.enhanced) continue;
    input.dataset.enhanced = "1";
    let tags = parse(input.value);

    const box = document.createElement("div");
    box.className = "tags";
    const list = document.createElement("ul");
    list.className = "tags__list";
    const entry = document.createElement("input");
    entry.type = "text";
    entry.className = "tags__entry";
    entry.maxLength = 40;
    entry.id = `${input.id}-entry`;
    entry.setAttribute("aria-describedby", input.getAttribute("aria-describedby") || "");
    if (input.id === "interests") entry.setAttribute("list", "interest-suggestions");
    box.append(list, entry);
    input.type = "hidden";
    input.after(box);
    const label = document.querySelector(`label[for="${input.id}"]`);
    if (label) label.htmlFor = entry.id;

    const sync = () => {
      input.value = tags.join(", ");
      list.replaceChildren(
        ...tags.map((tag, index) => {
          const item = document.createElement("li");
          item.className = "tags__chip";
          const text = document.createElement("span");
          text.textContent = tag;
          const remove = document.createElement("button");
          remove.type = "button";
          remove.className = "tags__remove";
          remove.textContent = "×";
          remove.setAttribute("aria-label", `Remove ${tag}`);
          remove.addEventListener("click", () => {
            tags.splice(index, 1);
            sync();
            entry.focus();
          });
          item.append(text, remove);
          return item;
        }),
      );
    };
    const add = (raw) => {
      for (const tag of parse(raw)) {
        if (!tags.some((t) => t.toLowerCase() === tag.toLowerCase()) && tags.length < 20) tags.push(tag);
      }
      entry.value = "";
      sync();
    };
    entry.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === ",") {
        event.preventDefault();
        add(entry.value);
      } else if (event.key === "Backspace" && entry.value === "" && tags.length > 0) {
        tags.pop();
        sync();
      }
    });
    entry.addEventListener("change", () => add(entry.value));
    entry.addEventListener("blur", () => add(entry.value));
    sync();
  }
}

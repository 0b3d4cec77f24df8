// Chat: sends messages, streams replies token by token (as text, never as HTML), reconnects exactly where a
// dropped stream stopped (1 s, 2 s, 4 s … up to 30 s; after 3 failures "Connection lost" with Retry, and again
// when the tab becomes visible), Stop, Retry of a failed reply, loading older messages, and the message actions
// (edit your message, delete, regenerate the last reply), pictures (the Picture toggle, the `image` event, "image
// failed" with Retry picture). Enhances templates/chat/page.html.

const root = document.getElementById("chat");
const companionId = root.dataset.companionId;
const token = document.querySelector('meta[name="csrf-token"]').content;
const list = document.getElementById("messages");
const log = document.getElementById("chat-log");
const form = document.getElementById("composer");
const input = document.getElementById("message-input");
const send = document.getElementById("send");
const stop = document.getElementById("stop");
const status = document.getElementById("composer-status");
const progressBox = document.getElementById("chat-progress");
const progressFill = document.getElementById("progress-fill");
const progressStep = document.getElementById("progress-step");
const pictureToggle = document.getElementById("generate-image");

let current = null; // { runId, source, bubble, text, lastId, failures, timer, replacing, pictureOnly }

async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    headers: {
      "X-CSRF-Token": token,
      Accept: "application/json",
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const message = (error.fields && Object.values(error.fields).flat()[0]) || error.message || `HTTP ${response.status}`;
    throw Object.assign(new Error(message), { correlationId: error.correlation_id, status: response.status });
  }
  return data;
}

function scrollDown() {
  log.scrollTop = log.scrollHeight;
}

function setBusy(busy) {
  send.disabled = busy;
  stop.hidden = !busy;
  progressBox.hidden = !busy;
  if (!busy) {
    progressFill.style.width = "0%";
    progressStep.textContent = "";
  }
}

function bubble(role, id) {
  const item = document.createElement("li");
  item.className = `message message--${role}`;
  item.dataset.role = role;
  if (id) item.dataset.messageId = id;
  const body = document.createElement("div");
  body.className = "message__body";
  item.append(body);
  return item;
}

function setText(item, text) {
  item.querySelector(".message__body").textContent = text;
}

// Server HTML is sanitised (src/chat/render.rs: an ammonia allowlist of text tags, no links, images or
// attributes but a list's start); model text is only ever set as text.
function setServerHtml(item, html) {
  item.querySelector(".message__body").innerHTML = html;
}

// A message's picture, or why it has none (with Retry picture when a backend is connected).
function showPicture(item, image, error) {
  for (const old of item.querySelectorAll(".message__picture, .message__picture-failed")) old.remove();
  const actions = item.querySelector(".message__actions");
  let box = null;
  if (image) {
    box = document.createElement("figure");
    box.className = "message__picture";
    const link = document.createElement("a");
    link.href = image.url;
    link.target = "_blank";
    link.rel = "noopener";
    const img = document.createElement("img");
    img.src = image.url;
    if (image.width) img.width = image.width;
    if (image.height) img.height = image.height;
    img.alt = "Picture of the scene";
    img.addEventListener("load", scrollDown, { once: true });
    link.append(img);
    box.append(link);
  } else if (error) {
    box = document.createElement("div");
    box.className = "message__picture-failed";
    box.setAttribute("role", "status");
    const text = document.createElement("span");
    text.textContent = `Image failed: ${error}`;
    box.append(text);
    if (pictureToggle && !pictureToggle.disabled) {
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "button button--small button--secondary";
      retry.dataset.retryImage = "";
      retry.textContent = "Retry picture";
      retry.addEventListener("click", () => retryPicture(item));
      box.append(retry);
    }
  }
  if (box) item.insertBefore(box, actions);
}

function showPicturePending(item) {
  for (const old of item.querySelectorAll(".message__picture, .message__picture-failed")) old.remove();
  const box = document.createElement("div");
  box.className = "message__picture-failed message__picture--pending";
  box.textContent = "Picturing the scene…";
  item.insertBefore(box, item.querySelector(".message__actions"));
}

async function retryPicture(item) {
  if (current) return;
  try {
    const started = await api("POST", `/api/v1/messages/${item.dataset.messageId}/image/retry`);
    follow(started.run_id, { pictureOf: item });
  } catch (error) {
    status.textContent = error.message + (error.correlationId ? ` (reference ${error.correlationId})` : "");
  }
}

function clearRunError() {
  const old = document.getElementById("run-error");
  if (old) old.remove();
}

// What a failed run had written: kept in sight, marked unfinished (it was not saved as a reply).
function clearPartial() {
  for (const old of document.querySelectorAll(".message--partial")) old.remove();
}

function note(item, text) {
  const paragraph = document.createElement("p");
  paragraph.className = "message__note";
  paragraph.textContent = text;
  item.querySelector(".message__body").after(paragraph);
}

function keepAsPartial(item) {
  item.classList.remove("message--live");
  item.classList.add("message--partial");
  item.querySelector(".message__body").classList.add("message__body--plain");
  note(item, "Unfinished: the reply was cut off here and was not saved.");
}

function showRunError(runId, message, correlationId, retryable) {
  clearRunError();
  const box = document.createElement("div");
  box.className = "run-error";
  box.id = "run-error";
  box.setAttribute("role", "alert");
  const paragraph = document.createElement("p");
  paragraph.textContent = message + " ";
  if (correlationId) {
    const ref = document.createElement("span");
    ref.className = "run-error__ref";
    ref.textContent = `Reference: ${correlationId}`;
    paragraph.append(ref);
  }
  box.append(paragraph);
  if (retryable && runId) {
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "button button--small";
    retry.textContent = "Retry";
    retry.addEventListener("click", () => retryRun(runId));
    box.append(retry);
  }
  log.append(box);
  scrollDown();
}

function connectionLost() {
  clearRunError();
  const box = document.createElement("div");
  box.className = "run-error";
  box.id = "run-error";
  box.setAttribute("role", "alert");
  const paragraph = document.createElement("p");
  paragraph.textContent = "Connection lost. The reply is still being written on the server.";
  const retry = document.createElement("button");
  retry.type = "button";
  retry.className = "button button--small";
  retry.textContent = "Retry";
  retry.addEventListener("click", () => reconnectNow());
  box.append(paragraph, retry);
  log.append(box);
}

function follow(runId, { replacing = null, pictureOf = null } = {}) {
  clearRunError();
  clearPartial();
  let live = pictureOf;
  if (pictureOf) {
    showPicturePending(pictureOf);
  } else {
    live = bubble("assistant");
    live.classList.add("message--live");
    list.append(live);
  }
  current = {
    runId, source: null, bubble: live, text: "", lastId: null, failures: 0, timer: null, replacing,
    pictureOnly: Boolean(pictureOf),
  };
  setBusy(true);
  open();
  scrollDown();
}

function open() {
  const run = current;
  const url = `/api/chat/stream/${run.runId}` + (run.lastId !== null ? `?after=${encodeURIComponent(run.lastId)}` : "");
  const source = new EventSource(url);
  run.source = source;
  source.addEventListener("open", () => {
    run.failures = 0;
    clearRunError();
  });
  source.addEventListener("token", (event) => {
    const data = JSON.parse(event.data);
    run.text += data.text;
    run.lastId = event.lastEventId;
    setText(run.bubble, run.text);
    scrollDown();
  });
  source.addEventListener("reset", () => {
    run.text = "";
    run.lastId = null;
    setText(run.bubble, "");
  });
  source.addEventListener("progress", (event) => {
    const data = JSON.parse(event.data);
    progressFill.style.width = `${Math.max(0, Math.min(100, data.progress))}%`;
    progressStep.textContent = data.step;
  });
  source.addEventListener("state", (event) => {
    const data = JSON.parse(event.data);
    const wearing = (data.outfit || []).map((item) => item.description).join(", ");
    if (wearing) document.getElementById("state-wearing").textContent = wearing;
    if (data.location) document.getElementById("state-location").textContent = data.location;
    if (data.action) document.getElementById("state-action").textContent = data.action;
  });
  source.addEventListener("image", (event) => {
    const data = JSON.parse(event.data);
    showPicture(run.bubble, data, null);
    scrollDown();
  });
  source.addEventListener("done", (event) => {
    const data = JSON.parse(event.data);
    source.close();
    run.bubble.classList.remove("message--live");
    run.bubble.dataset.messageId = data.message_id;
    if (!run.pictureOnly) setServerHtml(run.bubble, data.html);
    if (!run.pictureOnly && data.finish_reason === "length") note(run.bubble, "Stopped at the length limit (LLM_MAX_TOKENS).");
    showPicture(run.bubble, data.image, data.image_error);
    if (run.replacing) run.replacing.remove();
    finish();
  });
  source.addEventListener("error", (event) => {
    if (event.data) {
      // The server's own error event: the run failed or was stopped.
      const data = JSON.parse(event.data);
      source.close();
      if (run.pictureOnly) {
        showPicture(run.bubble, null, data.message);
        finish();
        return;
      }
      if (run.text && data.code !== "cancelled") keepAsPartial(run.bubble);
      else run.bubble.remove();
      if (run.replacing) run.replacing.classList.remove("message--replacing");
      if (data.code !== "cancelled") showRunError(run.runId, data.message, data.correlation_id, data.retryable);
      finish();
      return;
    }
    // The connection dropped: reconnect ourselves from the last offset, with backoff.
    source.close();
    if (current !== run) return;
    run.failures += 1;
    if (run.failures > 3) {
      connectionLost();
      return;
    }
    const delay = Math.min(30000, 1000 * 2 ** (run.failures - 1));
    run.timer = setTimeout(open, delay);
  });
}

function reconnectNow() {
  if (!current) return;
  clearTimeout(current.timer);
  current.failures = 0;
  clearRunError();
  open();
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && current && current.source && current.source.readyState === EventSource.CLOSED) {
    reconnectNow();
  }
});

function finish() {
  current = null;
  setBusy(false);
  decorate();
  input.focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const content = input.value.trim();
  if (!content || current) return;
  status.textContent = "";
  send.disabled = true;
  try {
    const started = await api("POST", `/api/v1/companions/${companionId}/messages`, {
      content,
      generate_image: Boolean(pictureToggle && pictureToggle.checked),
      client_request_id: crypto.randomUUID(),
    });
    const mine = bubble("user", started.user_message_id);
    mine.querySelector(".message__body").classList.add("message__body--plain");
    setText(mine, content);
    list.append(mine);
    input.value = "";
    follow(started.run_id);
  } catch (error) {
    status.textContent = error.message + (error.correlationId ? ` (reference ${error.correlationId})` : "");
    send.disabled = false;
  }
});

input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});

stop.addEventListener("click", async () => {
  if (!current) return;
  try {
    await api("POST", `/api/chat/runs/${current.runId}/cancel`);
  } catch (error) {
    status.textContent = error.message;
  }
});

async function retryRun(runId) {
  clearRunError();
  try {
    const started = await api("POST", `/api/chat/runs/${runId}/retry`);
    follow(started.run_id);
  } catch (error) {
    status.textContent = error.message;
  }
}

for (const button of document.querySelectorAll("#run-error [data-retry]")) {
  button.addEventListener("click", () => retryRun(document.getElementById("run-error").dataset.runId));
}

// Message actions: edit and delete your messages, delete replies, regenerate the last reply.
function decorate() {
  const items = Array.from(list.querySelectorAll(".message[data-message-id]"));
  const lastAssistant = items.length > 0 && items[items.length - 1].dataset.role === "assistant" ? items[items.length - 1] : null;
  for (const item of items) {
    let actions = item.querySelector(".message__actions");
    if (actions) actions.remove();
    actions = document.createElement("div");
    actions.className = "message__actions";
    const add = (label, handler) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link-button";
      button.textContent = label;
      button.addEventListener("click", () => handler(item));
      actions.append(button);
    };
    if (item.dataset.role === "user") add("Edit", editMessage);
    if (item === lastAssistant) add("Regenerate", regenerate);
    add("Delete", deleteMessage);
    item.append(actions);
  }
}

async function deleteMessage(item) {
  if (current) return;
  try {
    await api("DELETE", `/api/v1/messages/${item.dataset.messageId}`);
    item.remove();
    decorate();
  } catch (error) {
    status.textContent = error.message;
  }
}

async function regenerate(item) {
  if (current) return;
  try {
    const started = await api("POST", `/api/v1/companions/${companionId}/regenerate`);
    item.classList.add("message--replacing");
    follow(started.run_id, { replacing: item });
  } catch (error) {
    status.textContent = error.message;
  }
}

function editMessage(item) {
  if (current) return;
  const body = item.querySelector(".message__body");
  const original = body.textContent;
  const editor = document.createElement("textarea");
  editor.className = "message__editor";
  editor.value = original;
  editor.maxLength = 4000;
  const save = document.createElement("button");
  save.type = "button";
  save.className = "button button--small";
  save.textContent = "Save and resend";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "button button--small button--secondary";
  cancel.textContent = "Cancel";
  const box = document.createElement("div");
  box.className = "message__edit";
  box.append(editor, save, cancel);
  body.hidden = true;
  item.append(box);
  editor.focus();
  cancel.addEventListener("click", () => {
    box.remove();
    body.hidden = false;
  });
  save.addEventListener("click", async () => {
    const content = editor.value.trim();
    if (!content) return;
    try {
      const started = await api("PATCH", `/api/v1/messages/${item.dataset.messageId}`, { content });
      // The conversation continues from this message: everything after it is gone.
      let next = item.nextElementSibling;
      while (next) {
        const after = next.nextElementSibling;
        next.remove();
        next = after;
      }
      box.remove();
      body.hidden = false;
      body.textContent = content;
      follow(started.run_id);
    } catch (error) {
      status.textContent = error.message;
    }
  });
}

const older = document.getElementById("load-older");
if (older) {
  older.addEventListener("click", async () => {
    const first = list.querySelector(".message[data-message-id]");
    if (!first) return;
    try {
      const page = await api("GET", `/api/v1/companions/${companionId}/messages?before=${first.dataset.messageId}&limit=50`);
      for (const message of page.messages) {
        const item = bubble(message.role, message.id);
        setServerHtml(item, message.html);
        showPicture(item, message.image, message.image_error);
        list.prepend(item);
      }
      if (!page.has_more) older.remove();
      decorate();
    } catch (error) {
      status.textContent = error.message;
    }
  });
}

for (const button of list.querySelectorAll("[data-retry-image]")) {
  button.addEventListener("click", () => retryPicture(button.closest(".message")));
}

decorate();
scrollDown();
if (root.dataset.activeRun) {
  const pictureOf = root.dataset.activePictureOf
    ? list.querySelector(`.message[data-message-id="${CSS.escape(root.dataset.activePictureOf)}"]`)
    : null;
  follow(root.dataset.activeRun, { pictureOf });
}

// Portrait cropper: after a file is chosen, shows it in a square frame the user can drag and zoom, and
// writes the chosen square (in the picture's own pixels) into the hidden crop_x / crop_y / crop_size fields.
// The server crops and resizes authoritatively; without JavaScript it takes the centred square.

const FRAME = 320;

export function enhanceCropper(root) {
  const file = root.querySelector("#portrait");
  const box = root.querySelector("#cropper");
  const canvas = root.querySelector("#cropper-canvas");
  const zoom = root.querySelector("#cropper-zoom");
  const fields = ["crop_x", "crop_y", "crop_size"].map((id) => root.querySelector(`#${id}`));
  if (!file || !box || !canvas || !zoom || fields.some((f) => !f)) return;
  const context = canvas.getContext("2d");
  canvas.tabIndex = 0;
  let image = null;
  let base = 1;
  let offsetX = 0;
  let offsetY = 0;
  let lastScale = 1;

  const scale = () => base * Number(zoom.value);
  const clamp = () => {
    const s = scale();
    offsetX = Math.min(0, Math.max(FRAME - image.naturalWidth * s, offsetX));
    offsetY = Math.min(0, Math.max(FRAME - image.naturalHeight * s, offsetY));
  };
  const draw = () => {
    if (!image) return;
    clamp();
    const s = scale();
    lastScale = s;
    context.fillStyle = "#ffffff";
    context.fillRect(0, 0, FRAME, FRAME);
    context.drawImage(image, offsetX, offsetY, image.naturalWidth * s, image.naturalHeight * s);
    const size = Math.min(FRAME / s, image.naturalWidth, image.naturalHeight);
    const x = Math.min(Math.max(0, -offsetX / s), image.naturalWidth - size);
    const y = Math.min(Math.max(0, -offsetY / s), image.naturalHeight - size);
    fields[0].value = String(Math.floor(x));
    fields[1].value = String(Math.floor(y));
    fields[2].value = String(Math.max(1, Math.floor(size)));
  };
  const clear = () => {
    image = null;
    box.hidden = true;
    for (const field of fields) field.value = "";
  };

  file.addEventListener("change", () => {
    const chosen = file.files && file.files[0];
    if (!chosen) return clear();
    const url = URL.createObjectURL(chosen);
    const next = new Image();
    next.onload = () => {
      image = next;
      base = Math.max(FRAME / image.naturalWidth, FRAME / image.naturalHeight);
      zoom.value = "1";
      offsetX = (FRAME - image.naturalWidth * base) / 2;
      offsetY = (FRAME - image.naturalHeight * base) / 2;
      box.hidden = false;
      draw();
    };
    // Not an image the browser can show: the server will say what is wrong with it.
    next.onerror = clear;
    next.src = url;
  });

  let dragging = null;
  canvas.addEventListener("pointerdown", (event) => {
    dragging = { x: event.clientX, y: event.clientY };
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!dragging) return;
    offsetX += event.clientX - dragging.x;
    offsetY += event.clientY - dragging.y;
    dragging = { x: event.clientX, y: event.clientY };
    draw();
  });
  canvas.addEventListener("pointerup", () => (dragging = null));
  canvas.addEventListener("pointercancel", () => (dragging = null));
  canvas.addEventListener("keydown", (event) => {
    const step = 10;
    const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
    const move = moves[event.key];
    if (!move) return;
    event.preventDefault();
    offsetX += move[0];
    offsetY += move[1];
    draw();
  });
  zoom.addEventListener("input", () => {
    if (!image) return;
    // Zoom around the centre of the frame: keep the picture point under it where it is.
    const centreX = (FRAME / 2 - offsetX) / lastScale;
    const centreY = (FRAME / 2 - offsetY) / lastScale;
    offsetX = FRAME / 2 - centreX * scale();
    offsetY = FRAME / 2 - centreY * scale();
    draw();
  });
}

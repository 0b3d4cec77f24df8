// Gallery lightbox: opens a tile's picture in a dialog with "i / n", previous / next (buttons, ←/→, a swipe of
// at least 50 px), Esc or Close to leave, the neighbours preloaded, download, and delete in place (the tile goes
// too). Enhances templates/images/album.html; without it each tile links to its picture and has a delete form.

const grid = document.getElementById("tiles");
const dialog = document.getElementById("lightbox");
if (grid && dialog) {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const image = document.getElementById("lightbox-image");
  const counter = document.getElementById("lightbox-counter");
  const caption = document.getElementById("lightbox-caption");
  const date = document.getElementById("lightbox-date");
  const download = document.getElementById("lightbox-download");
  const count = document.getElementById("album-count");
  let index = 0;

  const links = () => Array.from(grid.querySelectorAll(".tile__link"));

  function preload(link) {
    if (link) new Image().src = link.dataset.url;
  }

  function show(at) {
    const all = links();
    if (all.length === 0) {
      dialog.close();
      return;
    }
    index = (at + all.length) % all.length;
    const link = all[index];
    image.src = link.dataset.url;
    image.width = Number(link.dataset.width);
    image.height = Number(link.dataset.height);
    image.alt = link.dataset.caption || "Picture";
    counter.textContent = `${index + 1} / ${all.length}`;
    caption.textContent = link.dataset.caption;
    date.textContent = link.dataset.date;
    download.href = `${link.dataset.url}?download=1`;
    preload(all[(index + 1) % all.length]);
    preload(all[(index - 1 + all.length) % all.length]);
  }

  grid.addEventListener("click", (event) => {
    const link = event.target.closest(".tile__link");
    if (!link) return;
    event.preventDefault();
    show(links().indexOf(link));
    dialog.showModal();
  });

  document.getElementById("lightbox-prev").addEventListener("click", () => show(index - 1));
  document.getElementById("lightbox-next").addEventListener("click", () => show(index + 1));
  document.getElementById("lightbox-close").addEventListener("click", () => dialog.close());
  // A click on the backdrop (the dialog itself, outside its content) closes it.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") {
      event.preventDefault();
      show(index - 1);
    } else if (event.key === "ArrowRight") {
      event.preventDefault();
      show(index + 1);
    }
  });

  let startX = null;
  const stage = document.getElementById("lightbox-stage");
  stage.addEventListener("pointerdown", (event) => {
    startX = event.clientX;
  });
  stage.addEventListener("pointerup", (event) => {
    if (startX === null) return;
    const moved = event.clientX - startX;
    startX = null;
    if (Math.abs(moved) >= 50) show(moved < 0 ? index + 1 : index - 1);
  });

  document.getElementById("lightbox-delete").addEventListener("click", async () => {
    const tile = links()[index].closest(".tile");
    if (!window.confirm("Delete this picture? This cannot be undone.")) return;
    const response = await fetch(`/api/v1/images/${tile.dataset.imageId}`, {
      method: "DELETE",
      headers: { "X-CSRF-Token": token, Accept: "application/json" },
    });
    if (!response.ok && response.status !== 404) {
      caption.textContent = "The picture could not be deleted. Try again.";
      return;
    }
    tile.remove();
    const left = links().length;
    if (count) {
      const total = Math.max(0, Number.parseInt(count.textContent, 10) - 1);
      count.textContent = `${total} ${total === 1 ? "picture" : "pictures"}`;
    }
    if (left === 0) dialog.close();
    else show(index);
  });

  // The no-script delete forms ask first, too.
  for (const form of grid.querySelectorAll(".tile__delete")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm("Delete this picture? This cannot be undone.")) event.preventDefault();
    });
  }
}

// gankit explore: the page's logic. Plain JavaScript, no library, nothing loaded from the network.
// The view lives in `state` and in the URL hash (#seed=..&n=..), so reloading or sharing the URL restores it.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const els = {};
  for (const id of [
    "model", "seed", "seed-prev", "seed-next", "seed-random", "class-field", "class", "truncation", "n", "status",
    "grid", "grid-mark", "grid-download", "selected", "image", "point-mark", "image-download", "attention-hint",
    "attention", "walk-a", "walk-b", "walk-mode", "walk-steps", "walk-t", "walk-t-label", "walk-frame", "walk-anim",
    "walk-play", "walk-strip", "strip-mark", "walk-download", "proj-steps", "proj-restarts", "proj-mode",
    "proj-loss", "file-a", "file-b", "drop-a", "drop-b", "progress-a", "progress-b", "cancel-a", "cancel-b",
    "target-a", "target-b", "recon-a", "recon-b", "stats-a", "stats-b", "edit-box", "dir-reset", "edit-download",
    "sliders", "proj-edit", "directions-hint", "proj-walk-box", "proj-walk", "proj-walk-download", "latents-download",
  ]) els[id] = $(id);

  let info = null;
  let state = null;
  const current = new WeakMap(); // element -> token of its latest request; older answers are dropped

  // ------------------------------------------------------------------------------------------ state and URL

  const isInt = (text) => /^[0-9]{1,10}$/.test(String(text));
  function intIn(text, low, high, fallback) {
    if (text === null || !isInt(text)) return fallback;
    const v = Number(text);
    return v >= low && v <= high ? v : fallback;
  }
  function numIn(text, low, high, fallback) {
    const v = Number(text);
    return text !== null && text !== "" && Number.isFinite(v) && v > low && v <= high ? v : fallback;
  }

  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    const L = info.limits;
    const seed = intIn(p.get("seed"), 0, L.max_seed, 0);
    const n = intIn(p.get("n"), 1, L.max_n, Math.min(16, L.max_n));
    let cls = null;
    if (info.num_classes) {
      cls = p.get("class") === "random" ? "random" : intIn(p.get("class"), 0, info.num_classes - 1, "random");
    }
    const trunc = numIn(p.get("trunc"), 0, L.max_truncation, null);
    let x = intIn(p.get("x"), 0, info.image_size - 1, null);
    let y = intIn(p.get("y"), 0, info.image_size - 1, null);
    if (x === null || y === null) x = y = null;
    const t = Number(p.get("t"));
    return {
      seed, n, cls, x, y,
      trunc: trunc === null ? "" : String(trunc),
      sel: intIn(p.get("sel"), 0, n - 1, 0),
      a: intIn(p.get("a"), 0, L.max_seed, seed),
      b: intIn(p.get("b"), 0, L.max_seed, Math.min(seed + 1, L.max_seed)),
      mode: info.modes.includes(p.get("mode")) ? p.get("mode") : "lerp",
      steps: intIn(p.get("steps"), 2, L.max_steps, Math.min(8, L.max_steps)),
      t: p.get("t") !== null && Number.isFinite(t) && t >= 0 && t <= 1 ? t : 0,
    };
  }

  function writeHash() {
    const p = new URLSearchParams();
    p.set("seed", state.seed);
    p.set("n", state.n);
    if (state.cls !== null) p.set("class", state.cls);
    if (state.trunc !== "") p.set("trunc", state.trunc);
    p.set("sel", state.sel);
    if (state.x !== null) { p.set("x", state.x); p.set("y", state.y); }
    p.set("a", state.a);
    p.set("b", state.b);
    p.set("mode", state.mode);
    p.set("steps", state.steps);
    p.set("t", state.t);
    history.replaceState(null, "", "#" + p.toString());
  }

  function ensureOption(select, value, label) {
    const v = String(value);
    if (![...select.options].some((o) => o.value === v)) {
      const option = new Option(label ?? v, v);
      const after = [...select.options].find((o) => Number(o.value) > Number(v));
      select.add(option, after ?? null);
    }
  }

  function syncControls() {
    els.seed.value = state.seed;
    if (state.cls !== null) els.class.value = String(state.cls);
    els.truncation.value = state.trunc;
    ensureOption(els.n, state.n);
    els.n.value = String(state.n);
    els["walk-a"].value = state.a;
    els["walk-b"].value = state.b;
    els["walk-mode"].value = state.mode;
    ensureOption(els["walk-steps"], state.steps);
    els["walk-steps"].value = String(state.steps);
    els["walk-t"].value = state.t;
    els["walk-t-label"].value = Number(state.t).toFixed(2);
  }

  // ------------------------------------------------------------------------------------------ requests

  function sampleQuery(extra = {}) {
    const p = new URLSearchParams({ seed: state.seed, n: state.n });
    if (state.cls !== null) p.set("class", state.cls);
    if (state.trunc !== "") p.set("truncation", state.trunc);
    for (const [k, v] of Object.entries(extra)) p.set(k, v);
    return p.toString();
  }

  function walkQuery(extra = {}) {
    const p = new URLSearchParams({ a: state.a, b: state.b, mode: state.mode });
    if (state.cls !== null) p.set("class", state.cls);
    if (state.trunc !== "") p.set("truncation", state.trunc);
    for (const [k, v] of Object.entries(extra)) p.set(k, v);
    return p.toString();
  }

  function setStatus(text, error = false) {
    els.status.textContent = text;
    els.status.classList.toggle("error", error);
  }

  async function errorOf(response) {
    try {
      const body = await response.json();
      return body.error || `HTTP ${response.status}`;
    } catch {
      return `HTTP ${response.status}`;
    }
  }

  function renderMs(response) {
    const m = /dur=([0-9.]+)/.exec(response.headers.get("Server-Timing") || "");
    return m ? Number(m[1]) : null;
  }

  // Fetch a PNG into an <img> (so that an error's JSON can be shown); returns the server's time in ms or null.
  async function loadImage(img, url, onResponse = null) {
    const token = {};
    current.set(img, token);
    img.dataset.state = "loading";
    let response;
    try {
      response = await fetch(url);
    } catch (e) {
      if (current.get(img) === token) { img.dataset.state = "error"; setStatus(`network error: ${e}`, true); }
      return null;
    }
    if (current.get(img) !== token) return null;
    if (!response.ok) {
      const message = await errorOf(response);
      if (current.get(img) === token) { img.dataset.state = "error"; setStatus(message, true); }
      return null;
    }
    const blob = await response.blob();
    if (current.get(img) !== token) return null;
    if (onResponse) onResponse(response);
    const objectUrl = URL.createObjectURL(blob);
    await new Promise((resolve) => {
      img.onload = resolve;
      img.onerror = resolve;
      img.src = objectUrl;
    });
    if (img.previousObjectUrl) URL.revokeObjectURL(img.previousObjectUrl);
    img.previousObjectUrl = objectUrl;
    if (current.get(img) !== token) return null;
    img.dataset.url = url;
    img.dataset.state = "ready";
    return renderMs(response) ?? 0;
  }

  // Display an image at an integer multiple of its size (crisp pixels), about `target` CSS pixels wide; an image
  // wider than that is scaled down smoothly instead.
  function fit(img, target) {
    const w = img.naturalWidth;
    if (!w) return;
    img.style.width = w >= target ? "" : `${w * Math.max(1, Math.floor(target / w))}px`;
    img.classList.toggle("pixelated", w < target);
  }

  // ------------------------------------------------------------------------------------------ samples

  const S = () => info.image_size;
  const PAD = () => info.grid.padding;
  const columns = (n) => Math.ceil(Math.sqrt(n));

  async function renderGrid() {
    const url = "/api/sample.png?" + sampleQuery();
    els["grid-download"].href = url + "&download=1";
    const ms = await loadImage(els.grid, url);
    if (ms === null) return;
    fit(els.grid, 520);
    placeGridMark();
    const cls = state.cls === null ? "" : ` · class ${state.cls}`;
    const trunc = state.trunc === "" ? "" : ` · truncation ${state.trunc}`;
    setStatus(`seed ${state.seed}${cls}${trunc} · ${state.n} samples · rendered in ${ms.toFixed(0)} ms`);
  }

  function cellBox(img, index, cols) {
    const scale = img.clientWidth / img.naturalWidth;
    const r = Math.floor(index / cols), c = index % cols;
    const cell = S() + PAD();
    return { left: (PAD() + c * cell) * scale, top: (PAD() + r * cell) * scale, size: S() * scale };
  }

  function placeMark(mark, img, index, cols) {
    if (!img.naturalWidth) { mark.hidden = true; return; }
    const box = cellBox(img, index, cols);
    Object.assign(mark.style, {
      left: `${box.left - 2}px`, top: `${box.top - 2}px`, width: `${box.size + 4}px`, height: `${box.size + 4}px`,
    });
    mark.hidden = false;
  }

  function placeGridMark() { placeMark(els["grid-mark"], els.grid, state.sel, columns(state.n)); }

  function cellAt(img, event, count, cols) {
    const scale = img.naturalWidth / img.clientWidth;
    const cell = S() + PAD();
    const c = Math.min(cols - 1, Math.max(0, Math.floor((event.offsetX * scale - PAD() / 2) / cell)));
    const r = Math.max(0, Math.floor((event.offsetY * scale - PAD() / 2) / cell));
    const index = r * cols + c;
    return index < count ? index : null;
  }

  async function renderImage() {
    els.selected.textContent = `${state.sel + 1} of ${state.n}`;
    const showClass = (response) => {
      const cls = response.headers.get("X-Sample-Class");
      els.selected.textContent = `${state.sel + 1} of ${state.n}` + (cls === null ? "" : ` · class ${cls}`);
    };
    const scale = Math.max(1, Math.min(info.limits.max_scale, Math.ceil(256 / S())));
    els["image-download"].href = "/api/image.png?" + sampleQuery({ index: state.sel, scale, download: 1 });
    const ms = await loadImage(els.image, "/api/image.png?" + sampleQuery({ index: state.sel }), showClass);
    if (ms === null) return;
    fit(els.image, 320);
    placePointMark();
  }

  function placePointMark() {
    const mark = els["point-mark"];
    if (state.x === null || !els.image.naturalWidth) { mark.hidden = true; return; }
    const scale = els.image.clientWidth / S();
    mark.style.left = `${(state.x + 0.5) * scale}px`;
    mark.style.top = `${(state.y + 0.5) * scale}px`;
    mark.hidden = false;
  }

  async function renderAttention() {
    const box = els.attention;
    const hint = els["attention-hint"];
    if (!info.attention.length) {
      hint.textContent = `Attention maps are not available: this ${info.family} generator has no self-attention ` +
        "layers (SAGAN generators have them).";
      box.replaceChildren();
      box.dataset.state = "unavailable";
      return;
    }
    if (state.x === null) {
      hint.textContent = "Click a pixel of the enlarged sample to see where each attention layer looks from there.";
      box.replaceChildren();
      box.dataset.state = "empty";
      return;
    }
    const token = {};
    current.set(box, token);
    box.dataset.state = "loading";
    hint.textContent = `Where pixel (${state.x}, ${state.y}) attends, per attention layer: coloured where it ` +
      "looks more than an even share (brightest at the maximum; each map sums to 1). Click another pixel to move it.";
    let response;
    try {
      response = await fetch("/api/attention?" + sampleQuery({ index: state.sel, x: state.x, y: state.y }));
    } catch (e) {
      if (current.get(box) === token) { box.dataset.state = "error"; setStatus(`network error: ${e}`, true); }
      return;
    }
    if (current.get(box) !== token) return;
    if (!response.ok) {
      const message = await errorOf(response);
      box.dataset.state = "error";
      setStatus(message, true);
      return;
    }
    const body = await response.json();
    if (current.get(box) !== token) return;
    const figures = body.layers.map((layer) => {
      const figure = document.createElement("figure");
      figure.className = "layer";
      const img = new Image();
      img.src = layer.overlay;
      img.alt = `attention of layer ${layer.name}`;
      const caption = document.createElement("figcaption");
      caption.textContent = `${layer.name} · ${layer.size[0]}×${layer.size[1]} queries · ` +
        `query (${layer.query[0]}, ${layer.query[1]}) · γ = ${layer.gamma.toFixed(3)} · ` +
        `max ${(layer.max / layer.uniform).toFixed(1)}× an even share`;
      figure.append(img, caption);
      return figure;
    });
    box.replaceChildren(...figures);
    box.dataset.point = `${body.x},${body.y}`;
    box.dataset.state = "ready";
  }

  // ------------------------------------------------------------------------------------------ walk

  let animation = { timer: null, frame: 0, playing: true };

  async function renderStrip() {
    const url = "/api/walk.png?" + walkQuery({ steps: state.steps });
    els["walk-download"].href = url + "&download=1";
    const ms = await loadImage(els["walk-strip"], url);
    if (ms === null) return;
    fit(els["walk-strip"], Math.min(1100, els["walk-strip"].parentElement.parentElement.clientWidth - 30));
    placeStripMark();
    restartAnimation();
  }

  async function renderFrame() {
    els["walk-t-label"].value = Number(state.t).toFixed(2);
    await loadImage(els["walk-frame"], "/api/walk_frame.png?" + walkQuery({ t: state.t }));
    placeStripMark();
  }

  function placeStripMark() {
    const k = Math.round(state.t * (state.steps - 1));
    placeMark(els["strip-mark"], els["walk-strip"], k, state.steps);
  }

  function drawAnimationFrame() {
    const strip = els["walk-strip"];
    const canvas = els["walk-anim"];
    if (!strip.naturalWidth) return;
    const size = S();
    if (canvas.width !== size) { canvas.width = size; canvas.height = size; }
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    const steps = Math.round((strip.naturalWidth - PAD()) / (size + PAD()));
    // back and forth: 0, 1, ..., steps - 1, ..., 1
    const period = Math.max(1, 2 * steps - 2);
    const phase = animation.frame % period;
    const k = phase < steps ? phase : period - phase;
    ctx.drawImage(strip, PAD() + k * (size + PAD()), PAD(), size, size, 0, 0, size, size);
    canvas.dataset.frame = String(k);
  }

  function restartAnimation() {
    clearInterval(animation.timer);
    animation.frame = 0;
    drawAnimationFrame();
    if (animation.playing) {
      animation.timer = setInterval(() => { animation.frame += 1; drawAnimationFrame(); }, 120);
    }
    els["walk-play"].textContent = animation.playing ? "pause" : "play";
  }

  // ------------------------------------------------------------------------------------------ real images

  // Finished projections (job ids) of the two upload slots; the sliders edit A, the walk goes from A to B.
  const projected = { a: null, b: null };
  const running = { a: null, b: null };
  let directions = null; // the answer of /api/directions, fetched once after the first projection
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function setStats(slot, text, error = false) {
    const stats = els[`stats-${slot}`];
    stats.textContent = text;
    stats.classList.toggle("error", error);
  }

  function projectQuery(file) {
    const P = info.projection;
    const steps = intIn(els["proj-steps"].value.trim(), 1, P.max_steps, null);
    const restarts = intIn(els["proj-restarts"].value.trim(), 1, P.max_restarts, null);
    if (steps === null) throw new Error(`steps must be an integer in 1..${P.max_steps}`);
    if (restarts === null) throw new Error(`restarts must be an integer in 1..${P.max_restarts}`);
    const p = new URLSearchParams({ steps, restarts, mode: els["proj-mode"].value, loss: els["proj-loss"].value });
    const name = [...(file.name || "")].filter((c) => c >= " " && c !== "\u007f").join("").slice(0, 200);
    if (name) p.set("name", name);
    return p.toString();
  }

  function describeResult(status) {
    const parts = [];
    if (status.lpips !== null && status.lpips !== undefined) parts.push(`LPIPS ${status.lpips.toFixed(3)}`);
    parts.push(`PSNR ${status.psnr.toFixed(1)} dB`);
    if (status.class !== null) parts.push(`class ${status.class}`);
    parts.push(`${status.objective} loss ${status.loss.toPrecision(3)}`);
    parts.push(status.state === "cancelled" ? `cancelled after ${status.done} of ${status.total} steps (best so far)`
      : `${status.total} steps`);
    return parts.join(" · ");
  }

  async function project(slot, file) {
    if (!file) return;
    let query;
    try {
      query = projectQuery(file);
    } catch (e) {
      setStats(slot, e.message, true);
      return;
    }
    const progress = els[`progress-${slot}`];
    const cancel = els[`cancel-${slot}`];
    projected[slot] = null;
    updateProjectionViews();
    setStats(slot, `uploading ${file.name || "the image"}…`);
    let response;
    try {
      response = await fetch("/api/project?" + query, { method: "POST", body: file });
    } catch (e) {
      setStats(slot, `network error: ${e}`, true);
      return;
    }
    if (!response.ok) {
      setStats(slot, await errorOf(response), true);
      return;
    }
    let status = await response.json();
    const job = status.job;
    running[slot] = job;
    progress.hidden = cancel.hidden = false;
    cancel.disabled = false;
    loadImage(els[`target-${slot}`], `/api/project/target.png?job=${job}`).then(() => fit(els[`target-${slot}`], 128));
    while (status.state === "running") {
      progress.max = status.total;
      progress.value = status.done;
      setStats(slot, `projecting: step ${status.done} of ${status.total} (${status.objective} loss)`);
      await sleep(150);
      try {
        const r = await fetch(`/api/project/status?job=${job}`);
        if (!r.ok) throw new Error(await errorOf(r));
        status = await r.json();
      } catch (e) {
        setStats(slot, `lost the projection: ${e.message || e}`, true);
        break;
      }
    }
    running[slot] = null;
    progress.hidden = cancel.hidden = true;
    if (status.state === "failed") { setStats(slot, `the projection failed: ${status.error}`, true); return; }
    if (status.state !== "done" && status.state !== "cancelled") return;
    await loadImage(els[`recon-${slot}`], `/api/project/reconstruction.png?job=${job}`);
    fit(els[`recon-${slot}`], 128);
    setStats(slot, describeResult(status));
    projected[slot] = job;
    updateProjectionViews();
  }

  async function cancelProjection(slot) {
    if (!running[slot]) return;
    els[`cancel-${slot}`].disabled = true;
    await fetch(`/api/project/cancel?job=${running[slot]}`, { method: "POST" });
  }

  async function loadDirections() {
    if (directions) return directions;
    const response = await fetch("/api/directions");
    if (!response.ok) throw new Error(await errorOf(response));
    directions = await response.json();
    const box = els.sliders;
    box.replaceChildren();
    if (!directions.available) {
      els["directions-hint"].textContent = `No direction sliders: ${directions.reason}`;
      return directions;
    }
    const P = info.projection;
    for (const d of directions.directions) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      Object.assign(input, { type: "range", id: `dir-${d.index}`, min: -P.max_strength, max: P.max_strength,
        step: P.strength_step, value: 0 });
      const output = document.createElement("output");
      output.id = `dir-${d.index}-label`;
      output.value = "0.0";
      input.addEventListener("input", () => { output.value = Number(input.value).toFixed(1); editSoon(); });
      label.append(`direction ${d.index}`, input, output);
      box.append(label);
    }
    els["directions-hint"].textContent = `The ${directions.directions.length} directions that change this model's ` +
      `images most (SeFa, ranked by ${directions.metric} effect); each slider adds its strength times a unit vector ` +
      "to the projected latent.";
    return directions;
  }

  function strengths() {
    const p = new URLSearchParams();
    for (const input of els.sliders.querySelectorAll("input")) {
      if (Number(input.value) !== 0) p.set(input.id.replace("dir-", "d"), input.value);
    }
    return p;
  }

  async function renderEdit() {
    if (!projected.a) return;
    const p = strengths();
    p.set("job", projected.a);
    const url = "/api/project/edit.png?" + p.toString();
    els["edit-download"].href = url + "&download=1";
    await loadImage(els["proj-edit"], url);
    fit(els["proj-edit"], 128);
  }
  const editSoon = debounce(renderEdit, 40);

  async function updateProjectionViews() {
    els["edit-box"].hidden = !projected.a;
    els["proj-walk-box"].hidden = !(projected.a && projected.b);
    const link = els["latents-download"];
    link.hidden = !projected.a && !projected.b;
    const first = projected.a || projected.b;
    if (first) {
      const other = projected.a && projected.b ? `&b=${projected.b}` : "";
      link.href = `/api/project/latents.safetensors?job=${first}${other}`;
    }
    if (projected.a && projected.b) {
      const url = `/api/project/walk.png?a=${projected.a}&b=${projected.b}&steps=${Math.min(8, info.limits.max_steps)}`;
      els["proj-walk-download"].href = url + "&download=1";
      loadImage(els["proj-walk"], url).then(() => fit(els["proj-walk"], 900));
    }
    if (projected.a) {
      try {
        await loadDirections();
      } catch (e) {
        els["directions-hint"].textContent = `No direction sliders: ${e.message || e}`;
      }
      await renderEdit();
    }
  }

  function wireUploads() {
    for (const slot of ["a", "b"]) {
      const input = els[`file-${slot}`];
      const drop = els[`drop-${slot}`];
      input.addEventListener("change", () => project(slot, input.files[0]));
      els[`cancel-${slot}`].addEventListener("click", () => cancelProjection(slot));
      drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
      drop.addEventListener("dragleave", () => drop.classList.remove("over"));
      drop.addEventListener("drop", (event) => {
        event.preventDefault();
        drop.classList.remove("over");
        const file = event.dataTransfer.files[0];
        if (file) project(slot, file);
      });
    }
    els["dir-reset"].addEventListener("click", () => {
      for (const input of els.sliders.querySelectorAll("input")) input.value = 0;
      for (const output of els.sliders.querySelectorAll("output")) output.value = "0.0";
      renderEdit();
    });
  }

  function describeProjection() {
    const P = info.projection;
    els["proj-steps"].max = P.max_steps;
    els["proj-steps"].value = P.default_steps;
    els["proj-restarts"].max = P.max_restarts;
    els["proj-restarts"].value = P.default_restarts;
    for (const m of P.modes) els["proj-mode"].add(new Option(m, m));
    for (const l of P.losses) els["proj-loss"].add(new Option(l, l));
  }

  // ------------------------------------------------------------------------------------------ wiring

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  }

  function renderSamples() {
    writeHash();
    renderGrid();
    renderImage();
    renderAttention();
  }

  function renderWalk() {
    writeHash();
    renderStrip();
    renderFrame();
  }

  function renderAll() {
    renderSamples();
    renderWalk();
  }

  function setSeed(seed) {
    if (!isInt(seed) || Number(seed) > info.limits.max_seed) {
      setStatus(`seed must be an integer in 0..${info.limits.max_seed}`, true);
      return;
    }
    state.seed = Number(seed);
    els.seed.value = state.seed;
    renderSamples();
  }

  function wire() {
    els.seed.addEventListener("input", debounce(() => setSeed(els.seed.value.trim()), 250));
    els["seed-prev"].addEventListener("click", () => setSeed(String(Math.max(0, state.seed - 1))));
    els["seed-next"].addEventListener("click", () => setSeed(String(Math.min(info.limits.max_seed, state.seed + 1))));
    els["seed-random"].addEventListener("click", () => setSeed(String(Math.floor(Math.random() * 100000))));
    els.class.addEventListener("change", () => { state.cls = els.class.value; renderAll(); });
    const truncationSoon = debounce(() => { state.trunc = els.truncation.value.trim(); renderAll(); }, 300);
    els.truncation.addEventListener("input", truncationSoon);
    els.n.addEventListener("change", () => {
      state.n = Number(els.n.value);
      if (state.sel >= state.n) state.sel = 0;
      renderSamples();
    });
    els.grid.addEventListener("click", (event) => {
      const index = cellAt(els.grid, event, state.n, columns(state.n));
      if (index === null) return;
      state.sel = index;
      placeGridMark();
      writeHash();
      renderImage();
      renderAttention();
    });
    els.image.addEventListener("click", (event) => {
      const size = S();
      state.x = Math.min(size - 1, Math.max(0, Math.floor((event.offsetX / els.image.clientWidth) * size)));
      state.y = Math.min(size - 1, Math.max(0, Math.floor((event.offsetY / els.image.clientHeight) * size)));
      writeHash();
      placePointMark();
      renderAttention();
    });
    const walkSeed = (key, input) => debounce(() => {
      const v = input.value.trim();
      if (!isInt(v) || Number(v) > info.limits.max_seed) {
        setStatus(`walk seeds must be integers in 0..${info.limits.max_seed}`, true);
        return;
      }
      state[key] = Number(v);
      renderWalk();
    }, 250);
    els["walk-a"].addEventListener("input", walkSeed("a", els["walk-a"]));
    els["walk-b"].addEventListener("input", walkSeed("b", els["walk-b"]));
    els["walk-mode"].addEventListener("change", () => { state.mode = els["walk-mode"].value; renderWalk(); });
    els["walk-steps"].addEventListener("change", () => {
      state.steps = Number(els["walk-steps"].value);
      renderWalk();
    });
    const frameSoon = debounce(() => { writeHash(); renderFrame(); }, 40);
    els["walk-t"].addEventListener("input", () => {
      state.t = Number(els["walk-t"].value);
      els["walk-t-label"].value = state.t.toFixed(2);
      frameSoon();
    });
    els["walk-strip"].addEventListener("click", (event) => {
      const k = cellAt(els["walk-strip"], event, state.steps, state.steps);
      if (k === null) return;
      state.t = Math.round((k / (state.steps - 1)) * 100) / 100;
      els["walk-t"].value = state.t;
      writeHash();
      renderFrame();
    });
    els["walk-play"].addEventListener("click", () => { animation.playing = !animation.playing; restartAnimation(); });
    wireUploads();
    window.addEventListener("hashchange", () => { state = readHash(); syncControls(); renderAll(); });
    window.addEventListener("resize", debounce(() => { placeGridMark(); placePointMark(); placeStripMark(); }, 100));
  }

  function describe() {
    const parts = [info.source, info.family.toUpperCase(), `${info.image_size}×${info.image_size}`,
      `${info.channels === 1 ? "grey" : "RGB"}`, `z ${info.z_dim}`,
      info.num_classes ? `${info.num_classes} classes` : "unconditional"];
    if (info.attention.length) {
      parts.push("attention " + info.attention.map((a) => `${a.name} (γ ${a.gamma.toFixed(3)})`).join(", "));
    }
    els.model.textContent = parts.filter(Boolean).join(" · ");
    document.title = `gankit explore · ${info.family} ${info.image_size}px`;
    if (info.num_classes) {
      els["class-field"].hidden = false;
      for (let k = 0; k < info.num_classes; k++) els.class.add(new Option(String(k), String(k)));
    }
    els.seed.max = els["walk-a"].max = els["walk-b"].max = info.limits.max_seed;
    els.truncation.max = info.limits.max_truncation;
    for (const n of [1, 4, 9, 16, 25, 36, 49, 64]) if (n <= info.limits.max_n) ensureOption(els.n, n);
    ensureOption(els.n, info.limits.max_n);
    for (const s of [2, 4, 8, 12, 16, 24, 32]) if (s <= info.limits.max_steps) ensureOption(els["walk-steps"], s);
    describeProjection();
  }

  async function start() {
    try {
      const response = await fetch("/api/info");
      if (!response.ok) throw new Error(await errorOf(response));
      info = await response.json();
    } catch (e) {
      setStatus(`cannot read the model: ${e.message || e}`, true);
      return;
    }
    describe();
    state = readHash();
    syncControls();
    wire();
    renderAll();
    document.body.dataset.ready = "1";
  }

  start();
})();

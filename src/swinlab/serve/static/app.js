// swinlab demo page: upload an image, show the top-5 classes as bars and the
// attention overlay of a chosen block (default: the last block of the last stage).
"use strict";

const $ = (id) => document.getElementById(id);
let currentFile = null;
let attentionUrl = null;

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function errorText(response) {
  try {
    const body = await response.json();
    return `${response.status}: ${body.detail}`;
  } catch (e) {
    return `${response.status} ${response.statusText}`;
  }
}

async function loadInfo() {
  const response = await fetch("/info");
  const info = await response.json();
  $("model-line").textContent =
    `${info.model} (${info.runtime}), ${info.num_classes} classes, ${info.img_size} px input`;
  const select = $("block-select");
  select.innerHTML = "";
  info.attention_blocks.forEach((label, k) => {
    const option = document.createElement("option");
    option.value = String(k);
    option.textContent = label;
    select.appendChild(option);
  });
  if (info.attention_blocks.length) {
    select.value = String(info.attention_blocks.length - 1);
  } else {
    $("attention-panel").hidden = true;
  }
}

function showPredictions(predictions) {
  const list = $("top5");
  list.innerHTML = "";
  for (const p of predictions) {
    const item = document.createElement("li");
    const pct = (100 * p.probability).toFixed(1);
    item.innerHTML =
      `<div class="label"><span class="cls"></span><span class="prob">${pct}%</span></div>` +
      `<div class="track"><div class="bar" style="width:${Math.max(0.5, 100 * p.probability)}%"></div></div>`;
    item.querySelector(".cls").textContent = `${p.rank}. ${p.class}`;
    list.appendChild(item);
  }
}

async function showAttention() {
  if (!currentFile || $("attention-panel").hidden) return;
  const form = new FormData();
  form.append("file", currentFile);
  const response = await fetch(`/attention?block=${$("block-select").value}`, { method: "POST", body: form });
  if (!response.ok) {
    setStatus(`attention: ${await errorText(response)}`, true);
    return;
  }
  if (attentionUrl) URL.revokeObjectURL(attentionUrl);
  attentionUrl = URL.createObjectURL(await response.blob());
  $("attention-img").src = attentionUrl;
}

async function classify(file) {
  currentFile = file;
  setStatus(`classifying ${file.name} ...`, false);
  const form = new FormData();
  form.append("file", file);
  const response = await fetch("/predict?topk=5", { method: "POST", body: form });
  if (!response.ok) {
    $("result").hidden = true;
    setStatus(await errorText(response), true);
    return;
  }
  const body = await response.json();
  const result = body.results[0];
  $("preview").src = URL.createObjectURL(file);
  $("file-name").textContent = `${result.file} (${result.width}x${result.height})`;
  showPredictions(result.predictions);
  $("result").hidden = false;
  await showAttention();
  setStatus(`done: ${result.predictions[0].class}`, false);
}

function setup() {
  const zone = $("drop-zone");
  $("file-input").addEventListener("change", (e) => {
    if (e.target.files.length) classify(e.target.files[0]);
  });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) classify(e.dataTransfer.files[0]);
  });
  $("block-select").addEventListener("change", showAttention);
  loadInfo().catch((e) => setStatus(`cannot reach the server: ${e}`, true));
}

setup();

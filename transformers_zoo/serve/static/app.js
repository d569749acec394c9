// The playground: plain JavaScript against the same API as any client (no build step, nothing fetched from
// elsewhere). Chat streams /v1/chat/completions as server-sent events; the other tabs call /zoo/*.
"use strict";

const $ = (sel) => document.querySelector(sel);
const keyInput = $("#api-key");
keyInput.value = localStorage.getItem("tzoo-api-key") || "";
keyInput.addEventListener("change", () => { localStorage.setItem("tzoo-api-key", keyInput.value); loadModels(); });

function headers() {
  const h = { "Content-Type": "application/json" };
  if (keyInput.value) h.Authorization = "Bearer " + keyInput.value;
  return h;
}

function status(text) { $("#status").textContent = text || ""; }

async function api(path, body) {
  const response = await fetch(path, { method: body ? "POST" : "GET", headers: headers(),
                                       body: body ? JSON.stringify(body) : undefined });
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function el(tag, props, ...children) {
  const node = Object.assign(document.createElement(tag), props || {});
  for (const child of children) node.append(child);
  return node;
}

// -- tabs and models --------------------------------------------------------------------------------------
for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => {
    document.querySelectorAll("#tabs button, .tab").forEach((n) => n.classList.remove("active"));
    button.classList.add("active");
    $("#tab-" + button.dataset.tab).classList.add("active");
  });
}

let models = [];

async function loadModels() {
  try {
    models = (await (await api("/v1/models")).json()).data;
    for (const select of document.querySelectorAll("select.model")) {
      const fit = models.filter((m) => m.capabilities.includes(select.dataset.capability));
      select.replaceChildren(...fit.map((m) => el("option", { value: m.id, textContent: `${m.id} (${m.family})` })));
      if (!fit.length) select.append(el("option", { value: "", textContent: "(no model serves this)" }));
    }
    status("");
  } catch (err) { status(err.message); }
}

function modelOf(tab) { return $(`#tab-${tab} select.model`).value; }

function onSubmit(form, handler) {
  $(form).addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $(form).querySelector("button[type=submit]");
    button.disabled = true;
    status("");
    try { await handler(); } catch (err) { status(err.message); } finally { button.disabled = false; }
  });
}

// -- chat ---------------------------------------------------------------------------------------------------
let conversation = [];
$("#chat-clear").addEventListener("click", () => { conversation = []; $("#chat-log").replaceChildren(); });
$("#chat-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("#chat-form").requestSubmit(); }
});

async function* serverSentEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

onSubmit("#chat-form", async () => {
  const text = $("#chat-input").value.trim();
  if (!text) return;
  $("#chat-input").value = "";
  const log = $("#chat-log");
  log.append(el("div", { className: "msg user", textContent: text }));
  conversation.push({ role: "user", content: text });
  const answer = el("div", { className: "msg assistant streaming" });
  log.append(answer);
  const model = modelOf("chat");
  // a model without a chat template continues the text instead (/v1/completions)
  const chat = (models.find((m) => m.id === model) || { capabilities: [] }).capabilities.includes("chat");
  const sampling = { model, stream: true, temperature: Number($("#chat-temperature").value),
                     max_tokens: Number($("#chat-max-tokens").value) };
  try {
    const response = chat ? await api("/v1/chat/completions", { ...sampling, messages: conversation })
                          : await api("/v1/completions", { ...sampling, prompt: text });
    for await (const chunk of serverSentEvents(response)) {
      for (const choice of chunk.choices) {
        const piece = chat ? choice.delta && choice.delta.content : choice.text;
        if (piece) answer.textContent += piece;
        if (choice.finish_reason) answer.dataset.finish = choice.finish_reason;
      }
      log.scrollTop = log.scrollHeight;
    }
    conversation.push({ role: "assistant", content: answer.textContent });
  } finally {
    answer.classList.remove("streaming");
    answer.dataset.done = "true";
  }
});

// -- translate, fill mask, classify, search ------------------------------------------------------------------
onSubmit("#translate-form", async () => {
  const out = await (await api("/zoo/translate", {
    model: modelOf("translate"), text: $("#translate-input").value,
    beam_size: Number($("#translate-beam").value), n_best: Number($("#translate-nbest").value),
  })).json();
  $("#translate-out").replaceChildren(...out.translations.map((t) =>
    el("li", {}, t.text || "(empty)", el("span", { className: "score", textContent: `score ${t.score.toFixed(3)}` }))));
});

function bar(label, p) {
  return el("div", { className: "bar" }, el("span", { className: "label", textContent: label }),
            el("span", { className: "fill", style: `width:${Math.max(1, p * 300)}px` }),
            el("span", { className: "score", textContent: p.toFixed(4) }));
}

onSubmit("#fill-form", async () => {
  const out = await (await api("/zoo/fill-mask", {
    model: modelOf("fill-mask"), text: $("#fill-input").value, top_k: Number($("#fill-k").value),
  })).json();
  $("#fill-out").replaceChildren(...out.masks.map((candidates, i) =>
    el("div", {}, el("h4", { textContent: `mask ${i + 1}` }),
       ...candidates.map((c) => bar(JSON.stringify(c.token), c.probability)))));
});

onSubmit("#classify-form", async () => {
  const out = await (await api("/zoo/classify", { model: modelOf("classify"), input: $("#classify-input").value })).json();
  const result = out.results[0];
  $("#classify-out").replaceChildren(el("p", { textContent: "label: " + result.label }),
    ...Object.entries(result.probabilities).map(([label, p]) => bar(label, p)));
});

onSubmit("#search-form", async () => {
  const out = await (await api("/zoo/search", {
    model: modelOf("search"), query: $("#search-input").value, k: Number($("#search-k").value),
  })).json();
  $("#search-out").replaceChildren(...out.hits.map((h) =>
    el("li", {}, h.text, el("span", { className: "score", textContent: `${h.id} · ${h.score.toFixed(3)}` }))));
});

// -- attention ------------------------------------------------------------------------------------------------
let attention = null;

function options(select, count, label) {
  const keep = Number(select.value) || 0;
  select.replaceChildren(...Array.from({ length: count }, (_, i) => el("option", { value: i, textContent: label(i) })));
  select.value = String(Math.min(keep, count - 1));
}

function drawAttention() {
  if (!attention) return;
  const map = attention.maps[Number($("#attention-map").value) || 0];
  const weights = map.weights[Number($("#attention-layer").value) || 0][Number($("#attention-head").value) || 0];
  const canvas = $("#attention-canvas");
  const ctx = canvas.getContext("2d");
  const cell = 22, font = "12px system-ui, sans-serif";
  ctx.font = font;
  const labelWidth = Math.max(...map.queries.map((q) => ctx.measureText(q).width)) + 10;
  const labelHeight = Math.max(...map.keys.map((k) => ctx.measureText(k).width)) + 10;
  canvas.width = labelWidth + cell * map.keys.length + 2;
  canvas.height = labelHeight + cell * map.queries.length + 2;
  ctx.font = font;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const top = Math.max(1e-9, ...weights.map((row) => Math.max(...row)));  // the darkest cell: the largest weight
  weights.forEach((row, q) => row.forEach((raw, k) => {
    const w = raw / top;
    const shade = Math.round(255 * (1 - w));
    ctx.fillStyle = `rgb(${shade},${Math.round(255 - w * 160)},255)`;
    ctx.fillRect(labelWidth + k * cell, labelHeight + q * cell, cell - 1, cell - 1);
  }));
  ctx.fillStyle = "#1d2330";
  ctx.textBaseline = "middle";
  map.queries.forEach((t, q) => ctx.fillText(t, 4, labelHeight + q * cell + cell / 2));
  map.keys.forEach((t, k) => {
    ctx.save();
    ctx.translate(labelWidth + k * cell + cell / 2, labelHeight - 4);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(t, 0, 0);
    ctx.restore();
  });
  $("#attention-note").textContent = `${map.name}: rows are queries, columns keys; darkest = ${top.toFixed(3)}` +
    (attention.output !== undefined ? ` · output: ${attention.output}` : "");
}

function chooseMap() {  // each map has its own numbers of layers and heads (an encoder may be shallower)
  const map = attention.maps[Number($("#attention-map").value) || 0];
  options($("#attention-layer"), map.layers, (i) => `layer ${i + 1}`);
  options($("#attention-head"), map.heads, (i) => `head ${i + 1}`);
  drawAttention();
}

onSubmit("#attention-form", async () => {
  attention = await (await api("/zoo/attention", { model: modelOf("attention"), text: $("#attention-input").value })).json();
  options($("#attention-map"), attention.maps.length, (i) => attention.maps[i].name);
  chooseMap();
});
$("#attention-map").addEventListener("change", chooseMap);
for (const id of ["#attention-layer", "#attention-head"]) $(id).addEventListener("change", drawAttention);

loadModels();

// edgecls in the browser: the exported .tflite file in MediaPipe Tasks' ImageClassifier (the same
// C++ task as Android and iOS, compiled to WebAssembly), with what `edgecls classify` computes
// on top: softmax(logits / temperature) from the file's logits head, class groups and their flag,
// "uncertain" below a chosen confidence. Nothing is sent anywhere: every file is read here.
import { FilesetResolver, ImageClassifier } from "./mediapipe/vision_bundle.mjs";

const UNCERTAIN = "uncertain";
const params = new URLSearchParams(location.search);

// ---------------------------------------------------------------------------------------------
// Model loading
async function load() {
  const response = await fetch("model.json");
  if (!response.ok) throw new Error(`model.json: HTTP ${response.status}`);
  const config = await response.json();
  const base = new URL("mediapipe/wasm", document.baseURI).href;
  const fileset = await FilesetResolver.forVisionTasks(base);
  const delegate = params.get("delegate") === "GPU" ? "GPU" : "CPU";
  const classifier = await ImageClassifier.createFromOptions(fileset, {
    baseOptions: { modelAssetPath: new URL(config.model, document.baseURI).href, delegate },
    maxResults: -1, // every class: the page computes the top-k itself
    runningMode: "IMAGE",
  });
  // The first run sets up the graph and XNNPACK's packed weights (hundreds of ms): done here, so
  // the time shown for the first photo is the model's, as for every other one.
  classifier.classify(new ImageData(config.input_size[1], config.input_size[0]));
  keepForOffline([fileset.wasmLoaderPath, fileset.wasmBinaryPath]);
  return { config, classifier, delegate };
}

// The service worker caches the page when it installs; the WebAssembly build this browser chose
// (SIMD or not) is cached here, so the page works with no network from the second visit on.
function keepForOffline(urls) {
  if (!("serviceWorker" in navigator) || !window.caches) return;
  navigator.serviceWorker.ready
    .then(async (registration) => {
      const name = await new Promise((resolve) => {
        const channel = new MessageChannel();
        channel.port1.onmessage = (event) => resolve(event.data);
        registration.active.postMessage("cache-name", [channel.port2]);
      });
      const cache = await caches.open(name);
      for (const url of urls) if (!(await cache.match(url))) await cache.add(url);
    })
    .catch(() => {}); // no cache: the page still works online
}

// ---------------------------------------------------------------------------------------------
// Pixels, as edgecls's preprocessing makes them: EXIF orientation applied, transparency over
// white, JPEGs reduced as libjpeg's DCT scaling does (Pillow's draft, which edgecls uses), then
// Pillow's bilinear resize (a triangle filter widened by the scale: antialiased), in integers
// as Pillow computes it. MediaPipe then gets an image at the model's input size and resizes nothing.

class ImageProblem extends Error {}

async function toBlob(input) {
  if (typeof input === "string" || input instanceof URL) {
    const response = await fetch(input);
    if (!response.ok) throw new ImageProblem(`cannot fetch ${input} (HTTP ${response.status})`);
    return response.blob();
  }
  return input;
}

function sniff(bytes) {
  const u = (i) => bytes[i];
  const be16 = (i) => (u(i) << 8) | u(i + 1);
  const be32 = (i) => ((u(i) << 24) >>> 0) + (u(i + 1) << 16) + (u(i + 2) << 8) + u(i + 3);
  const le16 = (i) => u(i) | (u(i + 1) << 8);
  const le32 = (i) => (u(i) | (u(i + 1) << 8) | (u(i + 2) << 16)) + u(i + 3) * 16777216;
  if (u(0) === 0x89 && u(1) === 0x50 && u(2) === 0x4e && u(3) === 0x47) return { type: "png", width: be32(16), height: be32(20) };
  if (u(0) === 0x47 && u(1) === 0x49 && u(2) === 0x46) return { type: "gif", width: le16(6), height: le16(8) };
  if (u(0) === 0x42 && u(1) === 0x4d) return { type: "bmp", width: Math.abs(le32(18) | 0), height: Math.abs(le32(22) | 0) };
  if (u(0) === 0xff && u(1) === 0xd8 && u(2) === 0xff) {
    // The frame header (SOFn) holds the size; walk the segments to it.
    let pos = 2;
    while (pos + 9 < bytes.length) {
      if (u(pos) !== 0xff) break;
      const marker = u(pos + 1);
      if (marker === 0xff) { pos += 1; continue; }
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
        // Sampling factors: how much larger the luma plane is than each chroma plane.
        const components = u(pos + 9);
        const factors = [];
        for (let c = 0; c < components && pos + 12 + 3 * c < bytes.length; c++) factors.push(u(pos + 11 + 3 * c));
        let chroma = [1, 1];
        if (components === 3 && factors.length === 3 && factors[1] === factors[2]) {
          chroma = [(factors[0] >> 4) / (factors[1] >> 4), (factors[0] & 15) / (factors[1] & 15)];
        }
        return { type: "jpeg", height: be16(pos + 5), width: be16(pos + 7), chroma };
      }
      pos += 2 + be16(pos + 2);
    }
    return { type: "jpeg" };
  }
  if (u(0) === 0x52 && u(1) === 0x49 && u(8) === 0x57 && u(9) === 0x45) return { type: "webp" };
  return { type: "other" };
}

async function decode(input, config) {
  if (input instanceof ImageData) return { data: input.data, width: input.width, height: input.height, jpeg: false };
  let source = input;
  let jpeg = false;
  let chroma = [1, 1];
  let known = null;
  if (typeof input === "string" || input instanceof URL || input instanceof Blob) {
    const blob = await toBlob(input);
    if (blob.size === 0) throw new ImageProblem("the file is empty (0 bytes)");
    // JPEG headers can run to 64 KB of EXIF before the size: read enough of the file.
    known = sniff(new Uint8Array(await blob.slice(0, 256 * 1024).arrayBuffer()));
    jpeg = known.type === "jpeg";
    chroma = known.chroma || chroma;
    if (known.width && known.height && known.width * known.height > config.max_pixels) {
      throw new ImageProblem(`the image is too large to decode safely (${known.width}x${known.height} pixels; the limit is ${config.max_pixels})`);
    }
    source = blob;
  }
  let bitmap;
  try {
    try {
      bitmap = await createImageBitmap(source, { imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none" });
    } catch (error) {
      // A browser that predates one of these option values rejects the call itself (TypeError),
      // not the image: its defaults (EXIF orientation applied) are the next best thing.
      if (!(error instanceof TypeError)) throw error;
      bitmap = await createImageBitmap(source);
    }
  } catch (error) {
    const what = known && known.type !== "other" ? `a damaged or unsupported ${known.type.toUpperCase()} file` : "not an image this browser can read";
    throw new ImageProblem(`cannot decode the image (${what})`);
  }
  try {
    const { width, height } = bitmap;
    if (!width || !height) throw new ImageProblem("the image has no pixels");
    if (width * height > config.max_pixels) {
      throw new ImageProblem(`the image is too large to decode safely (${width}x${height} pixels; the limit is ${config.max_pixels})`);
    }
    const canvas = makeCanvas(width, height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.fillStyle = "#fff"; // transparent areas go white, as in edgecls
    context.fillRect(0, 0, width, height);
    context.drawImage(bitmap, 0, 0);
    return { data: context.getImageData(0, 0, width, height).data, width, height, jpeg, chroma };
  } finally {
    bitmap.close();
  }
}

function makeCanvas(width, height) {
  if (typeof OffscreenCanvas !== "undefined") return new OffscreenCanvas(width, height);
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

// RGBA -> RGB (or L for one-channel models, with Pillow's integer weights).
function toChannels(rgba, count, channels) {
  const out = new Uint8Array(count * channels);
  if (channels === 3) {
    for (let i = 0, j = 0; i < count; i++, j += 4) { out[3 * i] = rgba[j]; out[3 * i + 1] = rgba[j + 1]; out[3 * i + 2] = rgba[j + 2]; }
  } else {
    for (let i = 0, j = 0; i < count; i++, j += 4) out[i] = (rgba[j] * 19595 + rgba[j + 1] * 38470 + rgba[j + 2] * 7471 + 0x8000) >> 16;
  }
  return out;
}

// Pillow's draft picks the largest of 8, 4, 2 that keeps both sides at least the model's, and
// libjpeg decodes at that scale. Its reduced IDCT gives, to within rounding, the mean of each
// scale x scale block of the full decode. At 1/2 scale libjpeg also decodes subsampled chroma at its
// own resolution instead of upsampling it, while the browser's full decode upsampled it with a
// triangle filter, which the block mean turns into a [1 6 1]/8 blur: undone here by its
// first-order inverse (measured on the ALL smears: half the pixel error of the block mean alone).
function draftScale(width, height, size) {
  const ratio = Math.min(Math.floor(width / size[1]), Math.floor(height / size[0]));
  return [8, 4, 2].find((s) => ratio >= s) || 1;
}

function boxMean(src, width, height, channels, scale) {
  const w = Math.ceil(width / scale), h = Math.ceil(height / scale);
  const out = new Float64Array(w * h * channels);
  for (let y = 0; y < h; y++) {
    const y0 = y * scale, y1 = Math.min(height, y0 + scale);
    for (let x = 0; x < w; x++) {
      const x0 = x * scale, x1 = Math.min(width, x0 + scale);
      const n = (y1 - y0) * (x1 - x0);
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) sum += src[(yy * width + xx) * channels + c];
        out[(y * w + x) * channels + c] = sum / n;
      }
    }
  }
  return { data: out, width: w, height: h };
}

function unblur(plane, w, h, kx, ky) {
  if (kx) {
    const out = new Float64Array(plane.length);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const i = y * w + x;
      out[i] = plane[i] * (1 + 2 * kx) - kx * (plane[x > 0 ? i - 1 : i] + plane[x < w - 1 ? i + 1 : i]);
    }
    plane = out;
  }
  if (ky) {
    const out = new Float64Array(plane.length);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const i = y * w + x;
      out[i] = plane[i] * (1 + 2 * ky) - ky * (plane[y > 0 ? i - w : i] + plane[y < h - 1 ? i + w : i]);
    }
    plane = out;
  }
  return plane;
}

function draft(pixels, width, height, channels, scale, chroma) {
  const { data, width: w, height: h } = boxMean(pixels, width, height, channels, scale);
  const out = new Uint8Array(data.length);
  const kx = scale === 2 && chroma[0] === 2 ? 0.125 : 0;
  const ky = scale === 2 && chroma[1] === 2 ? 0.125 : 0;
  if (channels !== 3 || (!kx && !ky)) {
    for (let i = 0; i < data.length; i++) out[i] = Math.floor(data[i] + 0.5);
    return { data: out, width: w, height: h };
  }
  const n = w * h;
  const Y = new Float64Array(n), Cb = new Float64Array(n), Cr = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const r = data[3 * i], g = data[3 * i + 1], b = data[3 * i + 2];
    Y[i] = 0.299 * r + 0.587 * g + 0.114 * b;
    Cb[i] = -0.168736 * r - 0.331264 * g + 0.5 * b;
    Cr[i] = 0.5 * r - 0.418688 * g - 0.081312 * b;
  }
  const cb = unblur(Cb, w, h, kx, ky), cr = unblur(Cr, w, h, kx, ky);
  const clamp = (v) => (v < 0 ? 0 : v > 255 ? 255 : Math.floor(v + 0.5));
  for (let i = 0; i < n; i++) {
    out[3 * i] = clamp(Y[i] + 1.402 * cr[i]);
    out[3 * i + 1] = clamp(Y[i] - 0.344136 * cb[i] - 0.714136 * cr[i]);
    out[3 * i + 2] = clamp(Y[i] + 1.772 * cb[i]);
  }
  return { data: out, width: w, height: h };
}

const PRECISION_BITS = 32 - 8 - 2; // Pillow's Resample.c, 8-bit images
const ONE = 2 ** PRECISION_BITS;

function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = 1.0 * filterscale; // the bilinear (triangle) filter's support is 1
  const bounds = [], weights = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    const k = new Float64Array(xmax);
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      let t = Math.abs((x + xmin - center + 0.5) * ss);
      const w = t < 1.0 ? 1.0 - t : 0.0;
      k[x] = w;
      total += w;
    }
    const fixed = new Float64Array(xmax);
    for (let x = 0; x < xmax; x++) {
      const v = total !== 0 ? k[x] / total : k[x];
      fixed[x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    bounds.push(xmin);
    weights.push(fixed);
  }
  return { bounds, weights };
}

const clip8 = (v) => { const q = Math.floor(v / ONE); return q < 0 ? 0 : q > 255 ? 255 : q; };

function resize(src, width, height, channels, outW, outH) {
  let data = src, w = width;
  if (outW !== width) {
    const { bounds, weights } = coefficients(width, outW);
    const out = new Uint8Array(outW * height * channels);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < outW; x++) {
        const k = weights[x], x0 = bounds[x];
        for (let c = 0; c < channels; c++) {
          let sum = ONE / 2;
          for (let i = 0; i < k.length; i++) sum += data[(y * w + x0 + i) * channels + c] * k[i];
          out[(y * outW + x) * channels + c] = clip8(sum);
        }
      }
    }
    data = out;
    w = outW;
  }
  if (outH !== height) {
    const { bounds, weights } = coefficients(height, outH);
    const out = new Uint8Array(w * outH * channels);
    for (let y = 0; y < outH; y++) {
      const k = weights[y], y0 = bounds[y];
      for (let x = 0; x < w; x++) {
        for (let c = 0; c < channels; c++) {
          let sum = ONE / 2;
          for (let i = 0; i < k.length; i++) sum += data[((y0 + i) * w + x) * channels + c] * k[i];
          out[(y * w + x) * channels + c] = clip8(sum);
        }
      }
    }
    data = out;
  }
  return data;
}

async function toModelInput(input, config) {
  const [height, width] = config.input_size;
  const channels = config.channels;
  const image = await decode(input, config);
  let pixels = toChannels(image.data, image.width * image.height, channels);
  let w = image.width, h = image.height;
  if (image.jpeg) {
    const scale = draftScale(w, h, config.input_size);
    if (scale > 1) ({ data: pixels, width: w, height: h } = draft(pixels, w, h, channels, scale, image.chroma));
  }
  const resized = resize(pixels, w, h, channels, width, height);
  const out = new ImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) out.data[4 * i + c] = resized[i * channels + (channels === 3 ? c : 0)];
    out.data[4 * i + 3] = 255;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Scores -> the record `edgecls classify --format json` writes.
function probabilities(result, config) {
  const n = config.labels.length;
  const head = result.classifications.find((h) => h.headIndex === config.head) || result.classifications[config.head];
  if (!head || head.categories.length !== n) throw new Error("the model's output does not have one score per label");
  const raw = new Float64Array(n);
  for (const category of head.categories) raw[category.index] = category.score;
  const t = config.temperature;
  if (config.reads_logits) return softmax(Array.from(raw, (v) => v / t));
  if (t === 1) return Array.from(raw);
  return softmax(Array.from(raw, (v) => Math.log(Math.max(v, config.probability_floor)) / t));
}

function softmax(values) {
  const top = Math.max(...values);
  const exps = values.map((v) => Math.exp(v - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / total);
}

const round = (value, digits) => Math.round(value * 10 ** digits) / 10 ** digits;

function toRecord(probs, config, { topK = 3, minConfidence = 0, latencyMs = 0, path = "" } = {}) {
  const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
  const top = order.slice(0, Math.max(1, Math.min(topK, probs.length)));
  const record = { path };
  record.label = probs[top[0]] >= minConfidence ? config.labels[top[0]] : UNCERTAIN;
  record.probability = round(probs[top[0]], 6);
  record.top_k = top.map((i) => ({ label: config.labels[i], probability: round(probs[i], 6) }));
  const groups = {};
  for (const [name, members] of Object.entries(config.groups)) {
    groups[name] = members.reduce((sum, i) => sum + probs[i], 0);
    record[`${name}_probability`] = round(groups[name], 6);
  }
  const point = config.operating_point;
  if (point && point.group in groups) record.flag = groups[point.group] >= point.threshold;
  record.latency_ms = round(latencyMs, 3);
  return record;
}

// ---------------------------------------------------------------------------------------------
// The JS API: window.edgecls.ready, window.edgecls.classify(urlOrBlobOrImage, options)
const ready = load();
let queue = Promise.resolve();

async function classify(input, options = {}) {
  const model = await ready;
  const start = performance.now();
  const pixels = await toModelInput(input, model.config);
  // MediaPipe's graph runs one image at a time; calls from several places wait their turn.
  const run = queue.then(() => {
    const t0 = performance.now();
    const result = model.classifier.classify(pixels);
    return { result, latencyMs: performance.now() - t0 };
  });
  queue = run.catch(() => {});
  const { result, latencyMs } = await run;
  const path = options.path ?? (typeof input === "string" ? input : input && input.name) ?? "";
  const record = toRecord(probabilities(result, model.config), model.config, { ...options, latencyMs, path: String(path) });
  Object.defineProperty(record, "total_ms", { value: performance.now() - start, enumerable: false });
  return record;
}

window.edgecls = {
  ready: ready.then((model) => ({ model: model.config.card.name, labels: model.config.labels, delegate: model.delegate })),
  classify,
};

// ---------------------------------------------------------------------------------------------
// The page
const $ = (id) => document.getElementById(id);
const status = $("status");
const results = $("results");
const confidence = $("min-confidence");
const confidenceValue = $("min-confidence-value");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

const pct = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.0005 ? 0 : 1)}%`;

function showModel(config) {
  const card = config.card;
  document.title = `${card.name} · edgecls`;
  $("model-name").textContent = card.dataset ? `${card.dataset} (${card.name})` : card.name;
  const facts = $("model-facts");
  const row = (name, value) => value !== "" && value != null && facts.append(el("dt", { text: name }), el("dd", { text: String(value) }));
  row("Classes", config.labels.join(", "));
  for (const [group, members] of Object.entries(config.groups)) row(`Group "${group}"`, members.map((i) => config.labels[i]).join(", "));
  const point = config.operating_point;
  if (point && point.group) {
    const why = point.target_sensitivity ? ` (chosen for ${Math.round(point.target_sensitivity * 100)}% sensitivity on validation data)` : "";
    row("Flag", `${point.group} probability ≥ ${round(point.threshold, 3)}${why}`);
  }
  row("Intended use", card.intended_use);
  row("Licence", card.licence);
  row("Data", card.data_source);
  const m = card.metrics;
  const split = m.split ? ` (${m.split} split${m.test_images ? `, ${m.test_images} images` : ""})` : "";
  if (m.accuracy != null) row("Accuracy", `${pct(m.accuracy)}${split}`);
  if (m.balanced_accuracy != null) row("Balanced accuracy", pct(m.balanced_accuracy));
  if (m.macro_auc != null) row("Macro ROC AUC", round(m.macro_auc, 3));
  if (m.accuracy_drop_points != null) row("int8 vs float", `${m.accuracy_drop_points > 0 ? `${round(m.accuracy_drop_points, 2)} accuracy points below` : "as accurate as"} the float model${m.agreement_with_float != null ? `; same top class on ${pct(m.agreement_with_float)} of images` : ""}`);
  row("Parity gate", card.parity_gate);
  row("Quantization", card.quantization);
  row("Temperature", config.temperature !== 1 ? `${config.temperature} (probabilities are calibrated)` : "");
  row("Created", card.created && `${card.created}${card.edgecls_version ? ` with edgecls ${card.edgecls_version}` : ""}`);
  if (card.card_file) facts.append(el("dt", { text: "Model card" }), el("dd", {}, el("a", { href: card.card_file, text: card.card_file })));
  if (card.metadata === "none") row("Warning", "this file has no metadata: labels are class numbers and inputs are scaled to 0..1");
}

function resultCard(name, thumbnail) {
  const item = el("li", { class: "result pending" });
  const img = thumbnail ? el("img", { src: thumbnail, alt: "", class: "thumb" }) : el("div", { class: "thumb none", "aria-hidden": "true" });
  const body = el("div", { class: "body" }, el("p", { class: "name", text: name }), el("p", { class: "verdict", text: "Classifying…" }));
  item.append(img, body);
  results.prepend(item);
  return { item, body };
}

function fillResult({ item, body }, record, config) {
  item.classList.remove("pending");
  const verdict = body.querySelector(".verdict");
  verdict.textContent = "";
  if (record.label === UNCERTAIN) {
    verdict.append(el("strong", { text: "Uncertain" }), ` — best guess ${record.top_k[0].label}, ${pct(record.probability)}`);
  } else {
    verdict.append(el("strong", { text: record.label }), ` ${pct(record.probability)}`);
  }
  const bars = el("ul", { class: "bars", "aria-label": "Top classes" });
  for (const { label, probability } of record.top_k) {
    const bar = el("span", { class: "bar" });
    bar.style.width = `${Math.max(0.5, 100 * probability)}%`;
    bars.append(el("li", {}, el("span", { class: "label", text: label }), el("span", { class: "value", text: pct(probability) }), el("span", { class: "track", "aria-hidden": "true" }, bar)));
  }
  body.append(bars);
  const point = config.operating_point;
  for (const group of Object.keys(config.groups)) {
    const p = record[`${group}_probability`];
    const flagged = point && point.group === group && record.flag;
    const line = el("p", { class: `group${flagged ? " flagged" : ""}` }, `${group}: ${pct(p)}`);
    if (point && point.group === group) {
      line.append(" ", el("span", { class: "badge", text: flagged ? `FLAG (≥ ${pct(point.threshold)})` : `below the flag threshold (${pct(point.threshold)})` }));
    }
    body.append(line);
  }
  body.append(el("p", { class: "time", text: `Model time ${record.latency_ms.toFixed(1)} ms` }));
}

function failResult({ item, body }, message) {
  item.classList.remove("pending");
  item.classList.add("error");
  const verdict = body.querySelector(".verdict");
  verdict.textContent = message;
  verdict.setAttribute("role", "alert");
}

async function handleFiles(files) {
  let first = true;
  for (const file of files) {
    const isImage = !file.type || file.type.startsWith("image/");
    const card = resultCard(file.name || "photo", isImage && file.size > 0 && file.size < 32 * 1024 * 1024 ? URL.createObjectURL(file) : null);
    if (first) card.item.scrollIntoView({ block: "start" }); // the answer, not the buttons, after a photo
    first = false;
    try {
      const record = await classify(file, { minConfidence: Number(confidence.value) / 100, path: file.name });
      fillResult(card, record, (await ready).config);
    } catch (error) {
      const image = card.item.querySelector("img");
      if (image) image.remove();
      const message = error instanceof ImageProblem ? error.message : `cannot classify it (${error.message || error})`;
      failResult(card, message.charAt(0).toUpperCase() + message.slice(1));
    }
  }
}

function wirePage() {
  for (const id of ["camera-input", "file-input"]) {
    $(id).addEventListener("change", (event) => {
      handleFiles([...event.target.files]);
      event.target.value = "";
    });
  }
  confidence.addEventListener("input", () => { confidenceValue.textContent = `${confidence.value}%`; });
  const drop = document.body;
  drop.addEventListener("dragover", (event) => { event.preventDefault(); document.body.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    document.body.classList.remove("dragging");
    handleFiles([...event.dataTransfer.files]);
  });
  wireLiveCamera();
}

// A live preview needs a secure context (HTTPS, or localhost); the file input's camera works everywhere.
function wireLiveCamera() {
  const button = $("live-button");
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    $("live-note").hidden = false;
    return;
  }
  button.hidden = false;
  const video = $("live-video");
  const shoot = $("live-shoot");
  let stream = null;
  button.addEventListener("click", async () => {
    if (stream) {
      stream.getTracks().forEach((t) => t.stop());
      stream = null;
      $("live").hidden = true;
      button.textContent = "Live camera";
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    } catch (error) {
      status.textContent = `The camera is not available (${error.name}). Use "Take a photo" instead.`;
      return;
    }
    video.srcObject = stream;
    $("live").hidden = false;
    button.textContent = "Stop camera";
  });
  shoot.addEventListener("click", async () => {
    if (!stream) return;
    const canvas = makeCanvas(video.videoWidth, video.videoHeight);
    canvas.getContext("2d").drawImage(video, 0, 0);
    const blob = canvas.convertToBlob ? await canvas.convertToBlob({ type: "image/png" }) : await new Promise((r) => canvas.toBlob(r, "image/png"));
    handleFiles([new File([blob], `camera ${new Date().toLocaleTimeString()}.png`, { type: "image/png" })]);
  });
}

wirePage();
ready.then(
  (model) => {
    showModel(model.config);
    status.textContent = "Ready. Take a photo or choose images.";
    document.body.classList.add("ready");
    for (const input of document.querySelectorAll("input[type=file]")) input.disabled = false;
  },
  (error) => {
    status.textContent = `The model could not be loaded: ${error.message || error}`;
    status.classList.add("error");
  },
);

if ("serviceWorker" in navigator && window.isSecureContext) {
  navigator.serviceWorker.register("sw.js").catch(() => {});
}

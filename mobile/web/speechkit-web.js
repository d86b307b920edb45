// speechkit-web: run a speechkit codec bundle in the browser with onnxruntime-web.
//
// The same call sequence and checks as the Python runtime (mobile/speechkit_rt, see mobile/README.md):
//   open:   manifest.json -> format / version / keys checked -> every listed file's size and sha256
//           checked with WebCrypto (crypto.subtle.digest) -> graphs loaded from the checked bytes
//   encode: mono float32 at sample_rate -> zero-pad to a multiple of hop_length
//           -> graph "encoder": wav f32 [1, T'] -> codes i64 [1, K, N] -> keep codes[:, :k]
//   decode: codes i64 [1, k, N] -> graph "decoder" -> wav f32 [1, N * hop] -> trim to num_samples
//
// Supported: plain ONNX codec bundles (quantization mode "none", "int8", ... any bundle whose graphs
// are .onnx files plus derived initializers: DFT bases and windows rebuilt here from the manifest's
// recipes, sha256-checked with WebCrypto and passed to onnxruntime-web as externalData). Not supported yet: packed low-bit weights (graphs with
// extra.weights_file: rtn/gptq/decoupleq 2-4 bit), Single-Codec global codes, .zip bundles,
// Core ML graphs, .sktk token files, streaming step graphs. Each of those is refused with a message.

export const FORMAT = "speechkit-bundle";
export const FORMAT_VERSION = 1;
export const MAX_MANIFEST_BYTES = 16 << 20;
const TOP_LEVEL_KEYS = [
  "format", "format_version", "task", "model_kind", "model_name", "sample_rate", "frame_rate",
  "token_layout", "graphs", "quantization", "files", "speechkit_version", "created", "metrics", "extra",
];
const GRAPH_KEYS = ["file", "runtime", "inputs", "outputs", "state", "derived", "extra"];
// Derived initializers (speechkit_rt/derived.py): kind -> its parameter keys.
const DERIVED_KINDS = {
  dft_basis: ["n_fft", "win_length", "window", "direction"],
  window: ["n_fft", "win_length", "window", "power"],
};
const DERIVED_COMMON_KEYS = ["name", "kind", "dtype", "shape", "offset", "length", "sha256"];
const TENSOR_KEYS = ["name", "dtype", "shape"];
const QUANT_KEYS = ["mode", "bits", "group_size", "method", "details"];
const SHA256 = /^[0-9a-f]{64}$/;
const PHASE_INPUT = "initial_phase";

/** Base class of every refusal of this module. */
export class SpeechkitWebError extends Error {
  constructor(message) {
    super(message);
    this.name = this.constructor.name;
  }
}
/** The bundle is refused: tampered, malformed, of a newer format, or something this runtime cannot run. */
export class BundleError extends SpeechkitWebError {}
/** Input audio (or WAV file) refused. */
export class AudioError extends SpeechkitWebError {}
/** Tokens malformed or of another codec. */
export class BitstreamError extends SpeechkitWebError {}

// ---- bundle sources -------------------------------------------------------------------------------

/** Files of a bundle served under a base URL (a folder served over HTTP). Extra files cannot be listed. */
export function urlSource(baseUrl, fetchImpl = globalThis.fetch.bind(globalThis)) {
  const base = new URL(baseUrl.endsWith("/") ? baseUrl : baseUrl + "/", globalThis.location?.href);
  return {
    describe: base.href,
    listFiles: null, // a web server does not list folders: the "no unlisted file" rule is not checkable
    async read(rel) {
      const response = await fetchImpl(new URL(rel, base));
      if (!response.ok) throw new BundleError(`${rel}: cannot fetch it (HTTP ${response.status})`);
      return new Uint8Array(await response.arrayBuffer());
    },
  };
}

/** Files of a bundle the user picked (a FileList from <input webkitdirectory>, or a Map of path -> bytes). */
export function filesSource(files) {
  const map = new Map();
  if (files instanceof Map) {
    for (const [rel, value] of files) map.set(rel, value);
  } else {
    for (const file of files) {
      // webkitRelativePath is "<folder>/<path>": strip the picked folder's own name.
      const rel = (file.webkitRelativePath || file.name).split("/").slice(file.webkitRelativePath ? 1 : 0).join("/");
      map.set(rel, file);
    }
  }
  return {
    describe: "picked files",
    listFiles: () => [...map.keys()].filter((rel) => rel !== "manifest.json").sort(),
    async read(rel) {
      if (!map.has(rel)) throw new BundleError(`${rel}: listed in manifest.json but missing from the bundle`);
      const value = map.get(rel);
      return value instanceof Uint8Array ? value : new Uint8Array(await value.arrayBuffer());
    },
  };
}

// ---- manifest checks ------------------------------------------------------------------------------

function fail(where, problem) {
  throw new BundleError(`manifest.json: ${where} ${problem}`);
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function checkKeys(obj, known, required, where) {
  if (!isObject(obj)) fail(where, "must be an object");
  for (const key of required) if (!(key in obj)) fail(where, `lacks required key '${key}'`);
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) fail(where, `has unknown key '${key}' (format_version ${FORMAT_VERSION} does not define it)`);
  }
}

/** A safe POSIX path inside a bundle: no leading '/', '..', '.', '\\', ':' or control character. */
export function isRelativePath(rel) {
  if ([...rel].some((c) => c === "\\" || c === ":" || c.charCodeAt(0) < 32)) return false;
  return rel.split("/").every((part) => part !== "" && part !== "." && part !== "..");
}

/** Check a parsed manifest as speechkit_rt.bundle.validate_manifest does (the rules an app must apply). */
export function validateManifest(manifest) {
  if (!isObject(manifest) || manifest.format !== FORMAT) {
    throw new BundleError(`manifest.json: not a speechkit bundle (format ${JSON.stringify(manifest?.format)}, expected '${FORMAT}')`);
  }
  const version = manifest.format_version;
  if (!Number.isInteger(version) || version < 1) fail("format_version", `must be a positive integer, got ${version}`);
  if (version > FORMAT_VERSION) {
    throw new BundleError(`manifest.json: bundle format_version ${version} is newer than this runtime supports (${FORMAT_VERSION}): upgrade speechkit-web`);
  }
  checkKeys(manifest, TOP_LEVEL_KEYS, TOP_LEVEL_KEYS, "top level");
  if (!Number.isInteger(manifest.sample_rate) || manifest.sample_rate < 1) fail("sample_rate", "must be a positive integer");
  if (typeof manifest.frame_rate !== "number" || !(manifest.frame_rate > 0)) fail("frame_rate", "must be positive");
  const layout = manifest.token_layout;
  if (!isObject(layout) || !Number.isInteger(layout.num_codebooks) || !Array.isArray(layout.codebook_sizes)) {
    fail("token_layout", "needs integer num_codebooks and an array codebook_sizes");
  }
  if (layout.codebook_sizes.length !== layout.num_codebooks) {
    fail("token_layout.codebook_sizes", `has ${layout.codebook_sizes.length} entries for ${layout.num_codebooks} codebooks`);
  }
  layout.codebook_sizes.forEach((size, i) => {
    if (!Number.isInteger(size) || size < 1) fail(`token_layout.codebook_sizes[${i}]`, `must be an integer >= 1, got ${size}`);
  });
  checkKeys(manifest.quantization, QUANT_KEYS, ["mode"], "quantization");
  if (!isObject(manifest.files)) fail("files", "must be an object");
  for (const [rel, entry] of Object.entries(manifest.files)) {
    if (!isRelativePath(rel) || rel === "manifest.json") fail("files", `has an unsafe or reserved path '${rel}'`);
    checkKeys(entry, ["sha256", "bytes"], ["sha256", "bytes"], `files['${rel}']`);
    if (typeof entry.sha256 !== "string" || !SHA256.test(entry.sha256)) fail(`files['${rel}'].sha256`, "must be 64 lowercase hex digits");
    if (!Number.isInteger(entry.bytes) || entry.bytes < 0) fail(`files['${rel}'].bytes`, "must be an integer >= 0");
  }
  if (!isObject(manifest.graphs) || Object.keys(manifest.graphs).length === 0) fail("graphs", "must name at least one graph");
  for (const [name, graph] of Object.entries(manifest.graphs)) {
    const where = `graphs.${name}`;
    checkKeys(graph, GRAPH_KEYS, ["file", "runtime", "inputs", "outputs"], where);
    for (const side of ["inputs", "outputs"]) {
      if (!Array.isArray(graph[side]) || graph[side].length === 0) fail(`${where}.${side}`, "must list at least one tensor");
      graph[side].forEach((tensor, i) => checkKeys(tensor, TENSOR_KEYS, TENSOR_KEYS, `${where}.${side}[${i}]`));
    }
    if (graph.derived !== undefined) checkDerived(graph.derived, `${where}.derived`, manifest.files);
    const listed = graph.file in manifest.files || Object.keys(manifest.files).some((rel) => rel.startsWith(graph.file + "/"));
    if (typeof graph.file !== "string" || !isRelativePath(graph.file) || !listed) {
      fail(`${where}.file`, `references '${graph.file}', which manifest.json 'files' does not list`);
    }
  }
}

/** Check a graph's `derived` object as speechkit_rt.derived.check_section does (no rebuild yet). */
function checkDerived(section, where, files) {
  checkKeys(section, ["location", "initializers"], ["location", "initializers"], where);
  const location = section.location;
  if (typeof location !== "string" || !location || /[\/\\:]/.test(location)) fail(`${where}.location`, `must be a plain file name, got ${JSON.stringify(location)}`);
  if (location in files) fail(`${where}.location`, "names a bundle file; it must be a virtual location");
  if (!Array.isArray(section.initializers) || section.initializers.length === 0) fail(`${where}.initializers`, "must be a non-empty list");
  const names = new Set();
  section.initializers.forEach((entry, i) => {
    const at = `${where}.initializers[${i}]`;
    if (!isObject(entry)) fail(at, "must be an object");
    if (!(entry.kind in DERIVED_KINDS)) {
      fail(`${at}.kind`, `${JSON.stringify(entry.kind)} is not a derived-initializer kind this runtime can rebuild (${Object.keys(DERIVED_KINDS).join(", ")}): upgrade speechkit-web`);
    }
    const keys = [...DERIVED_COMMON_KEYS, ...DERIVED_KINDS[entry.kind]];
    checkKeys(entry, keys, keys, at);
    for (const key of ["n_fft", "win_length", "offset", "length"]) {
      if (!Number.isInteger(entry[key]) || entry[key] < 0) fail(`${at}.${key}`, `must be an integer >= 0, got ${entry[key]}`);
    }
    if (entry.window !== "hann_periodic") fail(`${at}.window`, `must be 'hann_periodic', got ${JSON.stringify(entry.window)}`);
    if (entry.dtype !== "float32") fail(`${at}.dtype`, `must be 'float32', got ${JSON.stringify(entry.dtype)}`);
    if (!Array.isArray(entry.shape) || !entry.shape.every((d) => Number.isInteger(d) && d >= 1)) fail(`${at}.shape`, "must be a list of positive integers");
    if (entry.length !== 4 * entry.shape.reduce((a, b) => a * b, 1)) fail(`${at}.length`, `${entry.length} is not 4 bytes x shape [${entry.shape}]`);
    if (!(entry.win_length >= 1 && entry.win_length <= entry.n_fft)) fail(at, "needs 1 <= win_length <= n_fft");
    if (entry.kind === "dft_basis" && !["forward", "inverse"].includes(entry.direction)) fail(`${at}.direction`, "must be 'forward' or 'inverse'");
    if (entry.kind === "window" && ![1, 2].includes(entry.power)) fail(`${at}.power`, "must be 1 or 2");
    if (typeof entry.sha256 !== "string" || !SHA256.test(entry.sha256)) fail(`${at}.sha256`, "must be 64 lowercase hex digits");
    if (names.has(entry.name)) fail(`${at}.name`, `repeats ${JSON.stringify(entry.name)}`);
    names.add(entry.name);
  });
}

// ---- derived initializers: the float64 steps of speechkit_rt/features.py, in the same order -------

/** padded_window: periodic Hann of winLength (float32 values) zero-padded (centred) to nFft, as float64. */
function paddedWindow(winLength, nFft) {
  const out = new Float64Array(nFft);
  const left = Math.floor((nFft - winLength) / 2);
  for (let i = 0; i < winLength; i++) out[left + i] = Math.fround(0.5 - 0.5 * Math.cos((2 * Math.PI * i) / winLength));
  return out;
}

/** dft_basis: float32 [2F, 1, nFft], real rows then imaginary rows ("forward" or "inverse"). */
export function dftBasis(nFft, winLength, direction) {
  const window = paddedWindow(winLength, nFft);
  const bins = Math.floor(nFft / 2) + 1;
  const cos = new Float64Array(nFft);
  const sin = new Float64Array(nFft);
  for (let m = 0; m < nFft; m++) {
    const phase = (2 * Math.PI * m) / nFft;
    cos[m] = Math.cos(phase);
    sin[m] = Math.sin(phase);
  }
  const out = new Float32Array(2 * bins * nFft);
  for (let f = 0; f < bins; f++) {
    const weight = direction === "forward" ? 1 : f === 0 || (nFft % 2 === 0 && f === bins - 1) ? 1 : 2;
    for (let n = 0; n < nFft; n++) {
      const r = (f * n) % nFft;
      const w = window[n];
      if (direction === "forward") {
        out[f * nFft + n] = cos[r] * w;
        out[(bins + f) * nFft + n] = -sin[r] * w;
      } else {
        out[f * nFft + n] = ((weight * cos[r]) / nFft) * w;
        out[(bins + f) * nFft + n] = ((-weight * sin[r]) / nFft) * w;
      }
    }
  }
  return out;
}

/** window_power: the padded window to the power 1 or 2 (in float64), float32 [nFft]. */
export function windowPower(winLength, nFft, power) {
  const window = paddedWindow(winLength, nFft);
  return Float32Array.from(window, (w) => (power === 2 ? w * w : w));
}

/** Rebuild one (checked) recipe and verify the sha256 of its bytes; returns a Float32Array. */
export async function rebuildDerived(entry) {
  const values = entry.kind === "dft_basis" ? dftBasis(entry.n_fft, entry.win_length, entry.direction) : windowPower(entry.win_length, entry.n_fft, entry.power);
  if (values.length * 4 !== entry.length) {
    throw new BundleError(`derived initializer '${entry.name}': the ${entry.kind} recipe makes ${values.length} values, its shape [${entry.shape}] needs ${entry.length / 4}`);
  }
  if ((await sha256Hex(new Uint8Array(values.buffer))) !== entry.sha256) {
    throw new BundleError(`derived initializer '${entry.name}' (${entry.kind}): the rebuilt tensor's sha256 differs from the manifest's: recipe tampered or corrupted`);
  }
  return values;
}

/** A graph's derived initializers as onnxruntime-web externalData: one in-memory file at `location`. */
async function derivedExternalData(section) {
  const size = Math.max(...section.initializers.map((e) => e.offset + e.length));
  const file = new Uint8Array(size);
  for (const entry of section.initializers) file.set(new Uint8Array((await rebuildDerived(entry)).buffer), entry.offset);
  return [{ path: section.location, data: file }];
}

/** Hex sha256 of bytes with WebCrypto. */
export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Parse JSON refusing NaN / Infinity (JSON.parse already does: they are not JSON). */
function parseManifest(bytes) {
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    throw new BundleError(`manifest.json: ${bytes.byteLength} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`);
  }
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (err) {
    throw new BundleError(`manifest.json: not valid JSON (${err.message})`);
  }
}

/**
 * Open and verify a bundle: manifest rules, then every listed file's size and sha256.
 * @param source urlSource(...) / filesSource(...), or a URL string of the bundle folder.
 * @returns {{manifest: object, files: Map<string, Uint8Array>}} the verified file bytes.
 */
export async function openBundle(source) {
  if (typeof source === "string") source = urlSource(source);
  const manifest = parseManifest(await source.read("manifest.json"));
  validateManifest(manifest);
  if (source.listFiles) {
    const unlisted = source.listFiles().filter((rel) => !(rel in manifest.files));
    if (unlisted.length) {
      throw new BundleError(`${unlisted[0]}: present in the bundle but not listed in manifest.json 'files' (${unlisted.length} unlisted file(s) in all); refused, since it cannot be hash-checked`);
    }
  }
  const files = new Map();
  for (const [rel, entry] of Object.entries(manifest.files)) {
    const data = await source.read(rel);
    if (data.byteLength !== entry.bytes) {
      throw new BundleError(`size mismatch for ${rel}: ${data.byteLength} bytes, manifest says ${entry.bytes}: bundle truncated or corrupted`);
    }
    if ((await sha256Hex(data)) !== entry.sha256) {
      throw new BundleError(`sha256 mismatch for ${rel}: bundle tampered or corrupted`);
    }
    files.set(rel, data);
  }
  return { manifest, files };
}

// ---- audio ----------------------------------------------------------------------------------------

/** Check mono float audio as the SDK does (empty, NaN/Inf, digital silence). */
export function checkAudio(wav, name = "audio") {
  if (!(wav instanceof Float32Array)) throw new AudioError(`${name} must be a Float32Array, got ${wav?.constructor?.name}`);
  if (wav.length === 0) throw new AudioError(`${name} is empty (0 samples)`);
  let bad = 0;
  let nonzero = false;
  for (const x of wav) {
    if (!Number.isFinite(x)) bad += 1;
    else if (x !== 0) nonzero = true;
  }
  if (bad) throw new AudioError(`${name} contains ${bad} NaN or Inf samples`);
  if (!nonzero) throw new AudioError(`${name} is digital silence (all samples are zero)`);
  return wav;
}

/** Read a WAV file (PCM 8/16/24/32-bit or float 32/64, plain or extensible) -> {samples: mono Float32Array, sampleRate, channels}. */
export function readWav(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.byteLength < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new AudioError("not a RIFF/WAVE file");
  let fmt = null;
  let data = null;
  for (let at = 12; at + 8 <= bytes.byteLength; ) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === "fmt " && size >= 16) {
      let format = view.getUint16(body, true);
      if (format === 0xfffe && size >= 26) format = view.getUint16(body + 24, true); // extensible: sub-format GUID
      fmt = { format, channels: view.getUint16(body + 2, true), sampleRate: view.getUint32(body + 4, true), bits: view.getUint16(body + 14, true) };
    } else if (id === "data") {
      data = { offset: body, size: Math.min(size, bytes.byteLength - body) };
    }
    at = body + size + (size & 1);
  }
  if (!fmt || !data) throw new AudioError("WAV file lacks a fmt or data chunk");
  const { format, channels, sampleRate, bits } = fmt;
  if (channels < 1) throw new AudioError("WAV file has 0 channels");
  const width = bits / 8;
  const frames = Math.floor(data.size / (width * channels));
  let read;
  if (format === 1 && bits === 8) read = (o) => (view.getUint8(o) - 128) / 128;
  else if (format === 1 && bits === 16) read = (o) => view.getInt16(o, true) / 32768;
  else if (format === 1 && bits === 24) read = (o) => ((view.getUint8(o) | (view.getUint8(o + 1) << 8) | (view.getInt8(o + 2) << 16))) / 8388608;
  else if (format === 1 && bits === 32) read = (o) => view.getInt32(o, true) / 2147483648;
  else if (format === 3 && bits === 32) read = (o) => view.getFloat32(o, true);
  else if (format === 3 && bits === 64) read = (o) => view.getFloat64(o, true);
  else throw new AudioError(`unsupported WAV encoding (format tag ${format}, ${bits} bits)`);
  const samples = new Float32Array(frames);
  for (let i = 0; i < frames; i++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += read(data.offset + (i * channels + c) * width);
    samples[i] = sum / channels;
  }
  return { samples, sampleRate, channels };
}

/** Float audio -> 16-bit PCM mono WAV bytes (for download or an <audio> element). */
export function writeWav(samples, sampleRate) {
  const out = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const put = (at, text) => [...text].forEach((c, i) => out.setUint8(at + i, c.charCodeAt(0)));
  put(0, "RIFF"); out.setUint32(4, 36 + samples.length * 2, true); put(8, "WAVE");
  put(12, "fmt "); out.setUint32(16, 16, true); out.setUint16(20, 1, true); out.setUint16(22, 1, true);
  out.setUint32(24, sampleRate, true); out.setUint32(28, sampleRate * 2, true); out.setUint16(32, 2, true); out.setUint16(34, 16, true);
  put(36, "data"); out.setUint32(40, samples.length * 2, true);
  samples.forEach((x, i) => out.setInt16(44 + 2 * i, Math.max(-32768, Math.min(32767, Math.round(x * 32768))), true));
  return new Uint8Array(out.buffer);
}

// ---- the codec ------------------------------------------------------------------------------------

/** Bits a code of a codebook of `size` entries takes: ceil(log2(size)). */
export function bitsPerCode(size) {
  return Math.max(1, Math.ceil(Math.log2(size)));
}

/** A deterministic uniform [0, 1) generator (mulberry32) for the mel-rvq Griffin-Lim start phase. */
function uniformRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class CodecRuntime {
  /**
   * Open a verified codec bundle. Use `await CodecRuntime.open(source, {ort})`.
   * @param source a bundle folder URL, urlSource(...) or filesSource(...).
   * @param options.ort the onnxruntime-web module (import * as ort from ".../ort.wasm.min.mjs").
   * @param options.numThreads wasm threads (1 unless the page is cross-origin isolated).
   */
  static async open(source, { ort, numThreads = 1 } = {}) {
    if (!ort) throw new SpeechkitWebError("CodecRuntime.open needs the onnxruntime-web module: {ort}");
    const { manifest, files } = await openBundle(source);
    const runtime = new CodecRuntime(manifest, files, ort);
    ort.env.wasm.numThreads = numThreads;
    for (const name of ["encoder", "decoder"]) runtime.sessions[name] = await runtime.createSession(name);
    return runtime;
  }

  constructor(manifest, files, ort) {
    if (manifest.task !== "codec") throw new BundleError(`bundle '${manifest.model_name}' is a '${manifest.task}' bundle, not a codec`);
    for (const name of ["encoder", "decoder"]) {
      if (!(name in manifest.graphs)) throw new BundleError(`bundle '${manifest.model_name}' has no graph '${name}' (it has ${Object.keys(manifest.graphs).sort().join(", ")})`);
    }
    const layout = manifest.token_layout;
    if (layout.global_codebook_sizes?.length) {
      throw new BundleError(`bundle '${manifest.model_name}' (${manifest.model_kind}) has global codes; speechkit-web does not run Single-Codec bundles yet`);
    }
    if (!layout.codebook_sizes.length) throw new BundleError("manifest.json: token_layout.codebook_sizes is empty for a codec");
    this.manifest = manifest;
    this.files = files;
    this.ort = ort;
    this.sessions = {};
    this.kind = manifest.model_kind;
    this.name = manifest.model_name;
    this.sampleRate = manifest.sample_rate;
    this.frameRate = manifest.frame_rate;
    this.codebookSizes = layout.codebook_sizes.slice();
    const ratio = manifest.sample_rate / manifest.frame_rate;
    const hop = manifest.extra.hop_length ?? Math.round(ratio);
    if (!Number.isInteger(hop) || hop < 1 || Math.abs(hop - ratio) > 1e-6 * ratio) {
      throw new BundleError(`manifest.json: hop length ${hop} does not match sample_rate / frame_rate = ${ratio} (a codec's frames must be a whole number of samples)`);
    }
    this.hopLength = hop;
  }

  async createSession(name) {
    const graph = this.manifest.graphs[name];
    if (graph.runtime !== "onnxruntime") {
      throw new BundleError(`graph '${name}' is a ${graph.runtime} graph; speechkit-web runs onnxruntime graphs`);
    }
    if (graph.extra?.weights_file) {
      throw new BundleError(`graph '${name}' has packed ${this.manifest.quantization.mode} weights (${graph.extra.weights_file}); speechkit-web runs plain ONNX bundles only (quant none / int8 / w4) for now`);
    }
    const options = { executionProviders: ["wasm"], logSeverityLevel: 3 };
    if (graph.derived) options.externalData = await derivedExternalData(graph.derived); // refuses a bad rebuild
    let session;
    try {
      session = await this.ort.InferenceSession.create(this.files.get(graph.file), options);
    } catch (err) {
      throw new BundleError(`${graph.file}: onnxruntime-web cannot load it (${err.message ?? err})`);
    }
    // The loaded graph must have the inputs and outputs the manifest declares, in order.
    for (const [what, declared, actual] of [["inputs", graph.inputs, session.inputNames], ["outputs", graph.outputs, session.outputNames]]) {
      const names = declared.map((t) => t.name);
      if (names.join("\u0000") !== actual.join("\u0000")) {
        throw new BundleError(`graph '${name}' (${graph.file}): ${what} are [${actual}], manifest.json declares [${names}]`);
      }
    }
    return session;
  }

  /** Bits per second with the first `numCodebooks` codebooks (all by default). */
  bitrate(numCodebooks = this.codebookSizes.length) {
    return this.frameRate * this.codebookSizes.slice(0, numCodebooks).reduce((sum, size) => sum + bitsPerCode(size), 0);
  }

  /** The number of codebooks whose bitrate is nearest `kbps` (ties go to fewer), as the SDK. */
  numCodebooksFor(kbps) {
    const wanted = (kbps * 1000) / this.bitrate(1);
    return Math.min(this.codebookSizes.length, Math.max(1, Math.floor(wanted + 0.5 - 1e-9)));
  }

  /** Bytes of the packed token payload (frame-major, ceil(log2(size)) bits per code, as in .sktk). */
  payloadBytes(tokens) {
    const bitsPerFrame = this.codebookSizes.slice(0, tokens.numCodebooks).reduce((s, size) => s + bitsPerCode(size), 0);
    return Math.ceil((bitsPerFrame * tokens.numFrames) / 8);
  }

  /**
   * Mono audio at the codec's rate -> tokens {codes: BigInt64Array [1, k, N] row-major, numCodebooks, numFrames, numSamples}.
   * Resample first (e.g. with an OfflineAudioContext) if your audio is at another rate.
   */
  async encode(wav, sampleRate, numCodebooks = this.codebookSizes.length) {
    const total = this.codebookSizes.length;
    if (!Number.isInteger(numCodebooks) || numCodebooks < 1 || numCodebooks > total) {
      throw new RangeError(`numCodebooks must be in 1..${total}, got ${numCodebooks}`);
    }
    if (sampleRate !== this.sampleRate) {
      throw new AudioError(`audio is at ${sampleRate} Hz, the codec takes ${this.sampleRate} Hz: resample it first`);
    }
    checkAudio(wav);
    const hop = this.hopLength;
    const padded = new Float32Array(Math.ceil(wav.length / hop) * hop);
    padded.set(wav);
    const out = await this.sessions.encoder.run({ wav: new this.ort.Tensor("float32", padded, [1, padded.length]) });
    const codes = out[this.sessions.encoder.outputNames[0]];
    const numFrames = padded.length / hop;
    const expected = [1, total, numFrames];
    if (codes.dims.join() !== expected.join()) {
      throw new BundleError(`graph 'encoder' returned codes of shape [${codes.dims}], expected [${expected}]`);
    }
    // [1, K, N] row-major: the first k codebooks are the first k * N values.
    const data = codes.type === "int64" ? codes.data : BigInt64Array.from(codes.data, BigInt);
    return { codes: data.slice(0, numCodebooks * numFrames), numCodebooks, numFrames, numSamples: wav.length, kind: this.kind };
  }

  /** Tokens from encode() -> float32 audio [numSamples] at sampleRate. */
  async decode(tokens, { phaseSeed = 0 } = {}) {
    const { codes, numCodebooks, numFrames } = tokens;
    if (tokens.kind !== undefined && tokens.kind !== this.kind) {
      throw new BitstreamError(`tokens were made by a '${tokens.kind}' model, this codec is '${this.kind}'`);
    }
    if (codes.length !== numCodebooks * numFrames || numCodebooks < 1 || numCodebooks > this.codebookSizes.length) {
      throw new BitstreamError(`codes hold ${codes.length} values for ${numCodebooks} codebooks x ${numFrames} frames`);
    }
    for (let k = 0; k < numCodebooks; k++) {
      for (let n = 0; n < numFrames; n++) {
        const code = codes[k * numFrames + n];
        if (code < 0n || code >= BigInt(this.codebookSizes[k])) {
          throw new BitstreamError(`code ${code} at codebook ${k}, frame ${n} is outside 0..${this.codebookSizes[k] - 1}`);
        }
      }
    }
    const feeds = { codes: new this.ort.Tensor("int64", codes, [1, numCodebooks, numFrames]) };
    const phase = this.manifest.graphs.decoder.inputs.find((t) => t.name === PHASE_INPUT);
    if (phase) {
      // mel-rvq: a uniform Griffin-Lim start phase; any draw is valid (not the Python runtime's samples).
      const bins = phase.shape[1];
      const random = uniformRandom(phaseSeed);
      const values = Float32Array.from({ length: bins * (numFrames + 1) }, () => random() * 2 * Math.PI);
      feeds[PHASE_INPUT] = new this.ort.Tensor("float32", values, [1, bins, numFrames + 1]);
    }
    const out = await this.sessions.decoder.run(feeds);
    const wav = out[this.sessions.decoder.outputNames[0]].data;
    return Float32Array.from(tokens.numSamples != null ? wav.subarray(0, tokens.numSamples) : wav);
  }

  async release() {
    for (const session of Object.values(this.sessions)) await session.release();
    this.sessions = {};
  }
}

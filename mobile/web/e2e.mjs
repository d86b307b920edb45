// End-to-end test of speechkit-web in headless Chromium (Debian's `chromium`, driven by playwright-core).
//
//   .venv/bin/python mobile/web/make_fixtures.py /tmp/skweb-fx     # bundle, tampered copy, reference
//   node mobile/web/e2e.mjs --fixtures /tmp/skweb-fx [--chromium /usr/bin/chromium]
//
// Checks: the browser's codes equal the Python runtime's and its decoded audio is within tolerance
// (for all K codebooks and for k = 1); a tampered bundle (one flipped byte) is refused by the WebCrypto
// sha256 check; an unlisted file, a newer format_version, a tampered derived-initializer recipe (its
// rebuilt DFT basis fails the sha256) and an unknown derived kind are refused; the demo page decodes the
// bundled sample and shows the bitrate. Prints a JSON report; exit 0 all passed, 1 a check failed,
// 3 something needed (chromium, node package, fixtures) is missing.
import { existsSync, readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join, resolve } from "node:path";
import { serve } from "./server.mjs";

const MIN_CODES_EQUAL = 0.99; // the Python tests' bound; measured: every code equal
const MAX_AUDIO_ABS = 1e-4; // wasm vs native onnxruntime float kernels; measured ~1e-7

function missing(message) {
  console.error(`e2e: MISSING: ${message}`);
  process.exit(3);
}

function parseArgs(argv) {
  const args = { fixtures: null, chromium: process.env.CHROMIUM ?? null };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--fixtures") args.fixtures = resolve(argv[++i]);
    else if (argv[i] === "--chromium") args.chromium = argv[++i];
    else missing(`unknown argument ${argv[i]}; usage: node e2e.mjs --fixtures DIR [--chromium PATH]`);
  }
  if (!args.fixtures || !existsSync(join(args.fixtures, "reference.json"))) {
    missing(`fixtures folder with reference.json (make it with: .venv/bin/python mobile/web/make_fixtures.py DIR), got ${args.fixtures}`);
  }
  if (!args.chromium) {
    try {
      args.chromium = execFileSync("sh", ["-c", "command -v chromium || command -v chromium-browser"]).toString().trim();
    } catch {
      missing("chromium is not installed (Debian: apt-get install -y chromium), or pass --chromium PATH");
    }
  }
  return args;
}

async function loadPlaywright() {
  try {
    return (await import("playwright-core")).chromium;
  } catch {
    missing("npm package playwright-core (run: cd mobile/web && npm ci)");
  }
}

// Runs in the page: encode + decode the fixture WAV with k codebooks, return plain arrays.
async function browserCodec({ k }) {
  const { CodecRuntime, readWav } = await import("./speechkit-web.js");
  const { ort } = window.speechkitDemo;
  const codec = await CodecRuntime.open("fixtures/bundle/", { ort });
  const { samples, sampleRate } = readWav(await (await fetch("fixtures/input.wav")).arrayBuffer());
  const tokens = await codec.encode(samples, sampleRate, k);
  const audio = await codec.decode(tokens);
  await codec.release();
  return { shape: [1, tokens.numCodebooks, tokens.numFrames], codes: Array.from(tokens.codes, Number), audio: Array.from(audio), bitrate: codec.bitrate(k) };
}

// Runs in the page: each case must be refused with a BundleError whose message matches.
async function browserRefusals() {
  const { CodecRuntime, filesSource, BundleError } = await import("./speechkit-web.js");
  const { ort } = window.speechkitDemo;
  const fetchBytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
  const good = new Map();
  const manifest = JSON.parse(new TextDecoder().decode(await fetchBytes("fixtures/bundle/manifest.json")));
  good.set("manifest.json", await fetchBytes("fixtures/bundle/manifest.json"));
  for (const rel of Object.keys(manifest.files)) good.set(rel, await fetchBytes(`fixtures/bundle/${rel}`));
  const withExtra = new Map(good).set("extra.bin", new Uint8Array([1, 2, 3]));
  const newer = new Map(good).set("manifest.json", new TextEncoder().encode(JSON.stringify({ ...manifest, format_version: 2 })));
  // Derived initializers (DFT bases, windows): a changed recipe must fail the sha256 of its rebuild,
  // and a kind this runtime does not know must be refused before any rebuild.
  const withRecipe = (change) => {
    const copy = JSON.parse(JSON.stringify(manifest));
    change(copy.graphs.decoder.derived.initializers.find((e) => e.kind === "dft_basis"));
    return new Map(good).set("manifest.json", new TextEncoder().encode(JSON.stringify(copy)));
  };
  const cases = {
    tampered: "fixtures/tampered/",
    unlisted: filesSource(withExtra),
    newer: filesSource(newer),
    tampered_recipe: filesSource(withRecipe((entry) => { entry.direction = "forward"; })),
    unknown_kind: filesSource(withRecipe((entry) => { entry.kind = "fft_twiddles"; })),
    good_files: filesSource(good),
  };
  const results = {};
  for (const [name, source] of Object.entries(cases)) {
    try {
      const codec = await CodecRuntime.open(source, { ort });
      await codec.release();
      results[name] = { refused: false };
    } catch (err) {
      results[name] = { refused: true, bundleError: err instanceof BundleError, message: err.message };
    }
  }
  return results;
}

function compare(reference, got) {
  const shapeOk = got.shape.join() === reference.codes_shape.join();
  let equal = 0;
  for (let i = 0; i < reference.codes.length; i++) equal += got.codes[i] === reference.codes[i] ? 1 : 0;
  const codesEqual = reference.codes.length ? equal / reference.codes.length : 0;
  let maxAbs = got.audio.length === reference.audio.length ? 0 : Infinity;
  for (let i = 0; i < Math.min(got.audio.length, reference.audio.length); i++) {
    maxAbs = Math.max(maxAbs, Math.abs(got.audio[i] - reference.audio[i]));
  }
  return {
    k: reference.num_codebooks, shape: got.shape, shape_ok: shapeOk, codes_equal: codesEqual,
    audio_len: got.audio.length, audio_len_expected: reference.audio.length, audio_max_abs: maxAbs,
    bitrate_ok: got.bitrate === reference.bitrate_bps,
    pass: shapeOk && codesEqual >= MIN_CODES_EQUAL && maxAbs <= MAX_AUDIO_ABS && got.bitrate === reference.bitrate_bps,
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const chromium = await loadPlaywright();
  if (!existsSync(new URL("./node_modules/onnxruntime-web/dist/ort.wasm.min.mjs", import.meta.url))) {
    missing("npm package onnxruntime-web (run: cd mobile/web && npm ci)");
  }
  const { server, url } = await serve({ port: 0, mounts: { "/fixtures/": args.fixtures } });
  const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
  const report = { chromium: browser.version(), checks: {} };
  const pageErrors = [];
  try {
    const page = await browser.newPage();
    page.on("pageerror", (err) => pageErrors.push(String(err)));
    page.on("console", (msg) => msg.type() === "error" && pageErrors.push(msg.text()));
    await page.goto(`${url}index.html?bundle=fixtures/bundle/`);
    await page.waitForFunction(() => ["ready", "error"].includes(document.getElementById("status").dataset.state), null, { timeout: 60000 });
    const loadStatus = await page.textContent("#status");

    for (const file of ["reference.json", "reference_k1.json"]) {
      const reference = JSON.parse(readFileSync(join(args.fixtures, file), "utf8"));
      const got = await page.evaluate(browserCodec, { k: reference.num_codebooks });
      report.checks[`parity_k${reference.num_codebooks}`] = compare(reference, got);
    }

    const refusals = await page.evaluate(browserRefusals);
    const expect = { tampered: /sha256 mismatch for decoder\.onnx/, unlisted: /extra\.bin: present in the bundle but not listed/, newer: /format_version 2 is newer/,
      tampered_recipe: /rebuilt tensor's sha256 differs/, unknown_kind: /'fft_twiddles'|"fft_twiddles" is not a derived-initializer kind/ };
    for (const [name, pattern] of Object.entries(expect)) {
      const r = refusals[name];
      report.checks[`refuses_${name}`] = { ...r, pass: r.refused && r.bundleError && pattern.test(r.message) };
    }
    report.checks.accepts_verified_files = { ...refusals.good_files, pass: !refusals.good_files.refused };

    // The demo page itself: loaded the bundle, decodes the bundled sample, shows the bitrate.
    await page.click("#use-sample");
    await page.waitForFunction(() => ["done", "error"].includes(document.getElementById("status").dataset.state), null, { timeout: 60000 });
    const demo = {
      load_status: loadStatus, status: await page.textContent("#status"), bitrate: await page.textContent("#r-bitrate"),
      size: await page.textContent("#r-size"), decoded_src: await page.getAttribute("#decoded", "src"),
    };
    const reference = JSON.parse(readFileSync(join(args.fixtures, "reference.json"), "utf8"));
    const kbps = (reference.bitrate_bps / 1000).toFixed(2);
    demo.pass = demo.status.startsWith("done") && demo.bitrate.startsWith(`${kbps} kbps`) && /^\d+ bytes/.test(demo.size) && demo.decoded_src?.startsWith("blob:");
    report.checks.demo_page = demo;
  } finally {
    await browser.close();
    server.close();
  }
  report.page_errors = pageErrors;
  report.pass = Object.values(report.checks).every((c) => c.pass);
  console.log(JSON.stringify(report, null, 1));
  process.exit(report.pass ? 0 : 1);
}

main().catch((err) => {
  console.error(`e2e: ERROR: ${err.stack ?? err}`);
  process.exit(1);
});

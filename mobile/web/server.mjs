// A tiny static server for the demo and the e2e test (no dependencies).
//   node server.mjs [--port 8000] [--mount /fixtures/=/tmp/skweb-fx]
// Serves this folder at /, the repository's bundled speech sample at /sample.wav, and each --mount
// folder under its prefix. Paths are resolved inside their folder only ("..", symlinks out refused).
import { createServer } from "node:http";
import { readFile, realpath, stat } from "node:fs/promises";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const SAMPLE = resolve(HERE, "../../speechkit/assets/sample_speech.wav");
const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".json": "application/json", ".wasm": "application/wasm", ".wav": "audio/wav", ".css": "text/css",
};

async function inside(root, rel) {
  const path = resolve(root, "." + sep + rel);
  const real = await realpath(path);
  const realRoot = await realpath(root);
  if (real !== realRoot && !real.startsWith(realRoot + sep)) throw new Error("outside");
  if (!(await stat(real)).isFile()) throw new Error("not a file");
  return real;
}

/** Start the server; resolves to {server, url}. port 0 picks a free port. */
export async function serve({ port = 8000, mounts = {}, host = "127.0.0.1" } = {}) {
  const table = [...Object.entries(mounts), ["/", HERE]].sort((a, b) => b[0].length - a[0].length);
  const server = createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
      if (path === "/favicon.ico") return res.writeHead(204).end(); // browsers ask; keep the console clean
      let file;
      if (path === "/sample.wav") file = SAMPLE;
      else {
        const [prefix, root] = table.find(([p]) => path.startsWith(p));
        file = await inside(root, path.slice(prefix.length) || "index.html");
      }
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
      res.end(body);
    } catch {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found\n");
    }
  });
  await new Promise((ok) => server.listen(port, host, ok));
  return { server, url: `http://${host}:${server.address().port}/` };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const mounts = {};
  let port = 8000;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--port") port = Number(args[++i]);
    else if (args[i] === "--mount") {
      const [prefix, dir] = args[++i].split("=");
      mounts[prefix.endsWith("/") ? prefix : prefix + "/"] = resolve(dir);
    } else {
      console.error(`usage: node server.mjs [--port N] [--mount /prefix/=DIR]`);
      process.exit(2);
    }
  }
  const { url } = await serve({ port, mounts });
  console.log(`serving ${HERE} at ${url} (demo: ${url}index.html)`);
}

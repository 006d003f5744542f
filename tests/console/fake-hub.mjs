// A fake Hugging Face Hub for the console's pull test (scripts/console-e2e.sh starts it): one
// repo, hearth-test/tiny-GGUF, at a fixed commit, holding a README and a GGUF whose bytes are the
// file at $HEARTH_FAKE_HUB_GGUF, streamed from disk at about 15 MB/s ($HEARTH_FAKE_HUB_RATE bytes
// per second) so that a pull's progress shows for a few seconds. It answers what hearth's Hub
// client asks, with the headers the Hub sends: the model listing
// (GET /api/models/{repo}/revision/{rev}?blobs=true) and HEAD or GET (with Range) on
// /{repo}/resolve/{rev}/{file}. Any other repo is RepoNotFound (404), as on the Hub.
// Prints its URL (http://127.0.0.1:PORT) on the first line of stdout once it listens; logs each
// request on stderr.
import http from 'node:http';
import fs from 'node:fs';
import crypto from 'node:crypto';

const REPO = 'hearth-test/tiny-GGUF';
const COMMIT = '7e57c0de7e57c0de7e57c0de7e57c0de7e57c0de';
const GGUF_NAME = 'smollm2-Q4_1.gguf';
const README = '# tiny-GGUF\n\nSmolLM2-135M-Instruct in Q4_1, served by the console tests\' fake Hub.\n';
const RATE = Number(process.env.HEARTH_FAKE_HUB_RATE) > 0 ? Number(process.env.HEARTH_FAKE_HUB_RATE) : 15e6;
const CHUNK = 64 * 1024;

const ggufPath = process.env.HEARTH_FAKE_HUB_GGUF;
if (!ggufPath) {
  process.stderr.write('fake-hub: set HEARTH_FAKE_HUB_GGUF to the GGUF file to serve\n');
  process.exit(2);
}

/** The sha256 of a file, read as a stream: the LFS checksum the client verifies. */
function sha256Of(file) {
  return new Promise((resolve, reject) => {
    const hash = crypto.createHash('sha256');
    fs.createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** What git names a small file's blob (the Hub sends it as the ETag of non-LFS files). */
function gitBlobId(bytes) {
  return crypto.createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

const readme = Buffer.from(README, 'utf8');
const files = new Map([
  ['README.md', { size: readme.length, bytes: readme, etag: gitBlobId(readme) }],
  [GGUF_NAME, { size: fs.statSync(ggufPath).size, path: ggufPath, sha256: await sha256Of(ggufPath) }],
]);

function listing() {
  return {
    id: REPO,
    modelId: REPO,
    sha: COMMIT,
    siblings: Array.from(files, ([name, f]) => (f.sha256
      ? { rfilename: name, size: f.size, lfs: { sha256: f.sha256, size: f.size } }
      : { rfilename: name, size: f.size })),
  };
}

/** The Hub's error answer: the code in X-Error-Code (the client reads it), a JSON body. */
function fail(req, res, status, code, message) {
  const body = JSON.stringify({ error: message });
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-error-code': code,
    'x-error-message': message,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves when the response can take more, or when the client went away. */
function writable(res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Streams `path` from `start` at about RATE bytes per second. */
async function throttled(res, path, start) {
  const source = fs.createReadStream(path, { start, highWaterMark: CHUNK });
  let gone = false;
  res.on('close', () => {
    gone = true;
    source.destroy();
  });
  const began = Date.now();
  let sent = 0;
  try {
    for await (const chunk of source) {
      if (gone) break;
      if (!res.write(chunk)) await writable(res);
      sent += chunk.length;
      const ahead = (sent / RATE) * 1000 - (Date.now() - began);
      if (ahead > 0) await sleep(ahead);
    }
    if (!gone) res.end();
  } catch (e) {
    if (!gone) res.destroy(e);
  }
}

function serveFile(req, res, file) {
  const total = file.size;
  const headers = { 'x-repo-commit': COMMIT, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
  if (file.sha256) {
    headers['x-linked-etag'] = `"${file.sha256}"`;
    headers['x-linked-size'] = String(total);
    headers.etag = `"${file.sha256}"`;
  } else {
    headers.etag = `W/"${file.etag}"`;
  }
  let start = 0;
  let status = 200;
  const range = /^bytes=(\d+)-$/.exec(String(req.headers.range || '').trim());
  if (range) {
    start = Number(range[1]);
    if (start >= total) {
      res.writeHead(416, { 'content-range': `bytes */${total}`, 'content-length': '0' });
      res.end();
      return;
    }
    status = 206;
    headers['content-range'] = `bytes ${start}-${total - 1}/${total}`;
  }
  headers['content-length'] = String(total - start);
  res.writeHead(status, headers);
  if (req.method === 'HEAD') {
    res.end();
  } else if (file.bytes) {
    res.end(file.bytes.subarray(start));
  } else {
    throttled(res, file.path, start);
  }
}

function handle(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    fail(req, res, 405, 'MethodNotAllowed', `${req.method} is not served here`);
    return;
  }
  let segments;
  try {
    segments = new URL(req.url, 'http://fake-hub').pathname.replace(/^\/+/, '').split('/').map(decodeURIComponent);
  } catch (_) {
    fail(req, res, 400, 'BadRequest', 'the path is not valid');
    return;
  }
  let repo;
  let revision;
  let file = null;
  if (segments.length === 6 && segments[0] === 'api' && segments[1] === 'models' && segments[4] === 'revision') {
    repo = `${segments[2]}/${segments[3]}`;
    revision = segments[5];
  } else if (segments.length >= 5 && segments[2] === 'resolve') {
    repo = `${segments[0]}/${segments[1]}`;
    revision = segments[3];
    file = segments.slice(4).join('/');
  } else {
    fail(req, res, 404, 'NotFound', 'not found');
    return;
  }
  if (repo !== REPO) {
    fail(req, res, 404, 'RepoNotFound', 'Repository not found');
    return;
  }
  if (revision !== 'main' && revision !== COMMIT) {
    fail(req, res, 404, 'RevisionNotFound', `Invalid rev id: ${revision}`);
    return;
  }
  if (file === null) {
    const body = JSON.stringify(listing());
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  const entry = files.get(file);
  if (!entry) {
    fail(req, res, 404, 'EntryNotFound', `${file} does not exist on "${revision}"`);
    return;
  }
  serveFile(req, res, entry);
}

const server = http.createServer((req, res) => {
  res.on('finish', () => process.stderr.write(`${req.method} ${req.url} ${res.statusCode}${req.headers.range ? ` (${req.headers.range})` : ''}\n`));
  handle(req, res);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`http://127.0.0.1:${server.address().port}\n`);
});

// Drive headless Chromium over the DevTools protocol: open URL, wait for the
// page's <video> to start playing, sample its currentTime for SECONDS seconds,
// take a screenshot and print one JSON line of what was seen.
//
//   node --experimental-websocket tests/browser/play.mjs URL SECONDS SHOT.png
//
// Node built-ins only (Node 20: WebSocket needs --experimental-websocket).
// Exit 0: ran to the end and printed the JSON (the caller judges the figures).
// Exit 1: Chromium could not be started/connected, or the video never started
// (one line on stderr; the JSON is still printed with whatever was seen).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const [url, secondsArg, shotPath] = process.argv.slice(2);
const SECONDS = Number(secondsArg);
if (!url || !shotPath || !(SECONDS > 0)) {
  console.error('usage: node --experimental-websocket play.mjs URL SECONDS SCREENSHOT.png');
  process.exit(2);
}
if (typeof WebSocket === 'undefined') {
  console.error('play.mjs: no global WebSocket; run node with --experimental-websocket');
  process.exit(1);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now() / 1000;
const round = (x, n = 3) => (x == null ? null : Math.round(x * 10 ** n) / 10 ** n);

// Everything that ends up in the JSON line.
const out = { url, start_wait_s: null, first_time: null, last_time: null, advanced_s: null,
  samples: [], last_state: null, mse: null, console: [], screenshot: null };
const note = (s) => { if (out.console.length < (Number(process.env.PLAY_CONSOLE_MAX) || 50)) out.console.push(String(s).slice(0, 500)); };

// ---- Chromium process and cleanup ------------------------------------------
const profile = mkdtempSync(join(tmpdir(), 'play-chromium-'));
let chrome = null, chromeExited = null, stderrTail = '', ws = null, finished = false;

function killChrome() {
  // detached => Chromium leads its own process group; kill renderers too.
  if (chrome && chrome.exitCode === null && chrome.signalCode === null) {
    try { process.kill(-chrome.pid, 'SIGKILL'); } catch { try { chrome.kill('SIGKILL'); } catch {} }
  }
}
async function cleanup() {
  try { ws?.close(); } catch {}
  killChrome();
  if (chromeExited) await Promise.race([chromeExited, sleep(3000)]);
  rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}
// Last-resort synchronous cleanup (e.g. an uncaught throw).
process.on('exit', () => { killChrome(); try { rmSync(profile, { recursive: true, force: true }); } catch {} });

async function finish(errMsg) {
  if (finished) return;
  finished = true;
  if (errMsg) console.error(`play.mjs: ${errMsg}`);
  if (out.samples.length) { // figures from whatever samples we have (also when cut short)
    out.first_time = out.samples[0][1];
    out.last_time = out.samples.at(-1)[1];
    out.advanced_s = round(out.last_time - out.first_time);
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  await cleanup();
  process.exit(errMsg ? 1 : 0);
}
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => finish(`killed by ${sig}`));
setTimeout(() => finish(`hard timeout (${SECONDS + 60} s)`), (SECONDS + 60) * 1000);

chrome = spawn(CHROMIUM, [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required', '--mute-audio',
  '--remote-debugging-port=0', `--user-data-dir=${profile}`, '--window-size=1280,800',
  'about:blank',
], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
chromeExited = new Promise((r) => chrome.once('exit', r));
chrome.stderr.on('data', (d) => { stderrTail = (stderrTail + d).slice(-2000); });
chrome.once('error', (e) => finish(`cannot start ${CHROMIUM}: ${e.message}`));
chrome.once('exit', (code, sig) => {
  const last = stderrTail.trim().split('\n').pop() || '';
  finish(`chromium exited early (code ${code}, signal ${sig}): ${last}`);
});

// ---- DevTools connection ---------------------------------------------------
async function devtoolsPort() {
  const deadline = now() + 20;
  while (now() < deadline) {
    try {
      const [port, path] = readFileSync(join(profile, 'DevToolsActivePort'), 'utf8').split('\n');
      if (/^\d+$/.test(port) && path) return Number(port);
    } catch {}
    await sleep(100);
  }
  throw new Error(`no DevToolsActivePort in ${profile} after 20 s`);
}

let nextId = 1;
const pending = new Map();
function send(method, params = {}) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params }));
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject, method }));
}
function onMessage(ev) {
  const msg = JSON.parse(ev.data);
  if (msg.id) {
    const p = pending.get(msg.id);
    pending.delete(msg.id);
    if (msg.error) p?.reject(new Error(`${p.method}: ${msg.error.message}`));
    else p?.resolve(msg.result);
  } else if (msg.method === 'Runtime.consoleAPICalled') {
    const args = msg.params.args.map((a) => a.value ?? a.description ?? a.type).join(' ');
    note(`[console.${msg.params.type}] ${args}`);
  } else if (msg.method === 'Runtime.exceptionThrown') {
    const d = msg.params.exceptionDetails;
    note(`[exception] ${d.exception?.description ?? d.text}`);
  } else if (msg.method === 'Log.entryAdded') {
    const e = msg.params.entry;
    note(`[log.${e.level}] ${e.text}${e.url ? ` (${e.url})` : ''}`);
  }
}

// Evaluate an expression in the page, returning its JSON value.
async function evaluate(expression) {
  const r = await send('Runtime.evaluate', { expression, returnByValue: true });
  if (r.exceptionDetails) throw new Error(r.exceptionDetails.text);
  return r.result.value;
}
const STATE_JS = `(() => {
  const v = document.querySelector('video'), s = { video: !!v };
  if (v) Object.assign(s, { t: v.currentTime, paused: v.paused, readyState: v.readyState,
                            error: v.error ? v.error.code : null });
  if (window.blStatus !== undefined)
    try { s.blStatus = JSON.parse(JSON.stringify(window.blStatus)); } catch (e) { s.blStatus = String(e); }
  return s;
})()`;
const MSE_JS = `(() => { const r = {}, MS = window.MediaSource, v = document.createElement('video');
  for (const c of ['video/mp4; codecs="avc1.64001f,mp4a.40.2"', 'video/mp4; codecs="avc1.42c01e"',
                   'video/mp4; codecs="avc1.42c01e,mp4a.40.2"'])
    r[c] = { mse: MS ? MS.isTypeSupported(c) : null, canPlayType: v.canPlayType(c) };
  return r; })()`;

// ---- Main -----------------------------------------------------------------
async function main() {
  const port = await devtoolsPort();
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  const page = targets.find((t) => t.type === 'page');
  if (!page) throw new Error(`no page target on port ${port}`);
  ws = new WebSocket(page.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`websocket to ${page.webSocketDebuggerUrl} failed`));
  });
  ws.onmessage = onMessage;
  ws.onclose = () => finish('devtools websocket closed');
  await Promise.all([send('Runtime.enable'), send('Page.enable'), send('Log.enable')]);

  const t0 = now();
  const nav = await send('Page.navigate', { url });
  if (nav.errorText) return finish(`navigating to ${url} failed: ${nav.errorText}`);

  // Wait (<= 20 s) for a <video> whose currentTime has moved past 0.
  let started = false;
  while (now() - t0 < 20) {
    try {
      out.last_state = await evaluate(STATE_JS);
      if (out.last_state.t > 0) { started = true; break; }
    } catch {} // e.g. context destroyed while navigating
    await sleep(100);
  }
  out.mse = await evaluate(MSE_JS).catch((e) => String(e));
  if (!started) {
    await screenshot();
    const st = out.last_state;
    return finish(!st?.video ? 'no <video> element after 20 s'
      : `video never started in 20 s (currentTime 0, readyState ${st.readyState}, error ${st.error})`);
  }
  out.start_wait_s = round(now() - t0);

  // Sample every 0.5 s for SECONDS seconds.
  const s0 = now();
  for (let i = 0; i * 0.5 <= SECONDS; i++) {
    await sleep(Math.max(0, (s0 + i * 0.5 - now()) * 1000));
    const st = await evaluate(STATE_JS).catch((e) => ({ error: String(e) }));
    out.last_state = st;
    // A third element when the page says how far behind live it is (window.blStatus).
    const behind = st.blStatus && typeof st.blStatus.behind_s === 'number' ? round(st.blStatus.behind_s) : null;
    if (typeof st.t === 'number') out.samples.push([round(now() - s0), round(st.t), behind]);
  }
  await screenshot();
  await finish(null);
}

async function screenshot() {
  try {
    const { data } = await send('Page.captureScreenshot', { format: 'png' });
    writeFileSync(shotPath, Buffer.from(data, 'base64'));
    out.screenshot = shotPath;
  } catch (e) { note(`[screenshot] ${e.message}`); }
}

main().catch((e) => finish(e.message));

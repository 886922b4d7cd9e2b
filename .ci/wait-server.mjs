// node wait-server.mjs LOGFILE PID [SECONDS]
//
// Waits until the clink-mcp server with process id PID, which writes JSON
// log lines (--log-format json) to LOGFILE, has logged the URL it serves MCP
// on and answers GET /readyz with 200; then prints that URL. Exits 1 if the
// process ends first or SECONDS (default 30) pass.
import { readFileSync } from 'node:fs';

const [logFile, pidArg, secondsArg] = process.argv.slice(2);
const pid = Number(pidArg);
const deadline = Date.now() + 1000 * Number(secondsArg ?? 30);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function alive() {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function servedURL() {
  let text = '';
  try {
    text = readFileSync(logFile, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue; // the sandbox banner is plain text
    try {
      const rec = JSON.parse(line);
      if (rec.msg === 'serving MCP over streamable HTTP' && rec.url) return rec.url;
    } catch {
      // a line still being written
    }
  }
  return undefined;
}

let url;
let last = 'no "serving MCP over streamable HTTP" log line yet';
while (Date.now() < deadline) {
  if (!alive()) {
    console.error(`wait-server: the server (pid ${pid}) exited before it was ready`);
    process.exit(1);
  }
  url ??= servedURL();
  if (url) {
    const readyz = new URL('/readyz', url);
    try {
      const res = await fetch(readyz, { signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      if (res.status === 200) {
        console.log(url);
        process.exit(0);
      }
      last = `GET ${readyz}: HTTP ${res.status}`;
    } catch (err) {
      last = `GET ${readyz}: ${err.cause?.code ?? err.message}`;
    }
  }
  await sleep(100);
}
console.error(`wait-server: the server was not ready in time (${last})`);
process.exit(1);

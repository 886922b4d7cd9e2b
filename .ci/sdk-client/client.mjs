// The official MCP TypeScript SDK client (streamable HTTP transport) against
// `clink-mcp serve --sandbox --http ... --principals FILE`:
//
//   node client.mjs URL        with the principal's token in CLINK_CI_TOKEN
//
// It checks that requests without a token or with a wrong one are refused
// with 401 (by plain HTTP and through the SDK), that the tool list has both
// create tools, and that calling each succeeds with a session id (and, for
// a checkout session, a URL) in its structured content, which the SDK
// validates against the tool's output schema. Exits 1 on the first failure.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';

const [url] = process.argv.slice(2);
const token = process.env.CLINK_CI_TOKEN;
if (!url || !token) {
  console.error('usage: CLINK_CI_TOKEN=TOKEN node client.mjs URL');
  process.exit(2);
}

let passed = 0;
function ok(what) {
  passed++;
  console.log(`  ok   ${what}`);
}
function fail(what, detail) {
  console.error(`  FAIL ${what}`);
  if (detail !== undefined) {
    console.error(typeof detail === 'string' ? detail : JSON.stringify(detail, null, 2));
  }
  console.error(`sdk-client: ${passed} passed, 1 failed`);
  process.exit(1);
}

// A wrong token must never get near the tools: the server must refuse the
// request itself, before MCP, with 401 and a Bearer challenge.
const wrongToken = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: {
    protocolVersion: LATEST_PROTOCOL_VERSION,
    capabilities: {},
    clientInfo: { name: 'clink-mcp-ci', version: '0' },
  },
};
for (const [what, auth] of [
  ['no Authorization header', undefined],
  ['a wrong bearer token', `Bearer ${wrongToken}`],
]) {
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  if (auth) headers.authorization = auth;
  const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(initialize) });
  const body = await res.text();
  if (res.status !== 401) {
    fail(`POST /mcp with ${what} is refused with 401`, `got HTTP ${res.status}: ${body.slice(0, 500)}`);
  }
  const challenge = res.headers.get('www-authenticate') ?? '';
  if (!/^Bearer\b/i.test(challenge)) {
    fail(`POST /mcp with ${what}: 401 has a Bearer challenge`, `WWW-Authenticate: ${JSON.stringify(challenge)}`);
  }
  if (body.includes(wrongToken) || body.includes(token)) {
    fail(`POST /mcp with ${what}: the refusal does not echo the token`, body.slice(0, 500));
  }
  ok(`POST /mcp with ${what}: 401, ${challenge.split(/[ ,]/)[0]} challenge`);
}

function connect(bearer) {
  const client = new Client({ name: 'clink-mcp-ci-sdk-client', version: '0.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${bearer}` } },
  });
  return { client, connected: client.connect(transport) };
}

// The SDK, with a wrong token, must fail to connect with a 401.
{
  const { client, connected } = connect(wrongToken);
  try {
    await connected;
    fail('SDK connect with a wrong token is refused', 'it connected');
  } catch (err) {
    if (err?.code !== 401) {
      fail('SDK connect with a wrong token is refused with 401', `got ${err?.name}: ${err?.message} (code ${err?.code})`);
    }
    ok(`SDK connect with a wrong token: refused (${err.message.slice(0, 80)})`);
  } finally {
    await client.close().catch(() => {});
  }
}

// The right token: initialize, list, call.
const { client, connected } = connect(token);
try {
  await connected;
} catch (err) {
  fail('SDK connect with the principal token', `${err?.name}: ${err?.message} (code ${err?.code})`);
}
const server = client.getServerVersion();
ok(`SDK connect with the principal token: ${server?.name} ${server?.version}, protocol ${client.transport?.protocolVersion ?? '?'}`);

const { tools } = await client.listTools().catch((err) => fail('tools/list', String(err)));
const names = tools.map((t) => t.name);
for (const want of ['create_agent_payment_session', 'create_checkout_session']) {
  if (!names.includes(want)) fail(`tools/list has ${want}`, `tools: ${names.join(', ')}`);
}
ok(`tools/list: ${names.join(', ')}`);

function text(result) {
  return (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
}

async function call(name, args, wantURL) {
  let result;
  try {
    result = await client.callTool({ name, arguments: args });
  } catch (err) {
    fail(`tools/call ${name}`, `${err?.name}: ${err?.message}`);
  }
  if (result.isError) fail(`tools/call ${name} succeeds`, `isError: true: ${text(result)}`);
  const sc = result.structuredContent;
  if (!sc || typeof sc.sessionId !== 'string' || sc.sessionId === '') {
    fail(`tools/call ${name}: structured content has a sessionId`, result);
  }
  if (wantURL && !/^https?:\/\/\S+$/.test(sc.url ?? '')) {
    fail(`tools/call ${name}: structured content has a url`, result);
  }
  ok(`tools/call ${name}: sessionId ${sc.sessionId}${wantURL ? `, url ${sc.url}` : ''}`);
}

await call(
  'create_agent_payment_session',
  { customerEmail: 'alice@example.com', amount: 25.5, currency: 'USD' },
  false,
);
await call(
  'create_checkout_session',
  { amount: 20, currency: 'USD', customerEmail: 'bob@example.com' },
  true,
);

await client.close();
console.log(`sdk-client: ${passed} passed, 0 failed`);

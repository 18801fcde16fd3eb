// The official TypeScript MCP SDK client listing tools through Caddy with
// a bearer token, then calling `deploy` whether or not it was listed.
// Usage: node ts-list-filter.mjs <endpoint> <token>
// Prints one JSON line: {tools, hiddenStatus, hiddenScope, hiddenError}
// ({error} when connecting or listing failed). hiddenStatus is the HTTP
// status of a refused deploy call, and hiddenScope the scope its
// challenge names.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [endpoint, token] = process.argv.slice(2);
const out = {};
let refused;

const recordingFetch = async (url, init) => {
  const resp = await fetch(url, init);
  if (resp.status === 403) refused = { status: 403, challenge: resp.headers.get('www-authenticate') || '' };
  return resp;
};

try {
  const client = new Client({ name: 'ts-list-filter', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(endpoint), {
    fetch: recordingFetch,
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  }));
  out.tools = (await client.listTools()).tools.map((t) => t.name);
  try {
    await client.callTool({ name: 'deploy', arguments: { service: 'api' } });
  } catch (e) {
    out.hiddenError = String(e?.message ?? e);
  }
  if (refused) {
    out.hiddenStatus = refused.status;
    out.hiddenScope = (refused.challenge.match(/scope="([^"]*)"/) || [])[1];
  }
  await client.close();
} catch (e) {
  out.error = String(e?.message ?? e);
}
console.log(JSON.stringify(out));

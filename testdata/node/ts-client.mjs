// The official TypeScript MCP SDK as a client of Caddy, for the Go tests.
// Usage:
//   node ts-client.mjs <endpoint> [token]
//   node ts-client.mjs <endpoint> --client-credentials <client_id> <secret> <issuer> <scope>
// Prints one JSON line: {tools, echo} on success, or {error, status,
// resourceMetadataUrl, scope, fetched} when the server refused. Without a
// token the SDK runs its OAuth discovery: it reads resource_metadata from
// the 401 challenge and fetches that document, which `fetched` records.
// With --client-credentials the SDK's ClientCredentialsProvider runs the
// whole flow: 401, protected resource metadata, authorization server
// metadata, token request, then the MCP calls with the token; `requests`
// records each request as "METHOD URL STATUS", in order.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

const [endpoint, token, ...rest] = process.argv.slice(2);
const out = { fetched: [], requests: [] };
let challenge;

// Record every URL the SDK fetches and the challenge of any 401.
const recordingFetch = async (url, init) => {
  out.fetched.push(String(url));
  const resp = await fetch(url, init);
  out.requests.push(`${init?.method ?? 'GET'} ${String(url)} ${resp.status}`);
  if (resp.status === 401 && !challenge) challenge = resp.headers.get('www-authenticate');
  return resp;
};

// Enough of an OAuth client for the SDK to start discovery; it never gets
// to the authorization step in this test.
const authProvider = {
  get redirectUrl() { return 'http://127.0.0.1:1/callback'; },
  get clientMetadata() { return { client_name: 'ts-e2e', redirect_uris: ['http://127.0.0.1:1/callback'] }; },
  clientInformation: () => undefined,
  saveClientInformation: () => {},
  tokens: () => undefined,
  saveTokens: () => {},
  redirectToAuthorization: () => { throw new Error('authorization redirect'); },
  saveCodeVerifier: () => {},
  codeVerifier: () => '',
};

const opts = { fetch: recordingFetch };
if (token === '--client-credentials') {
  const [clientId, clientSecret, expectedIssuer, scope] = rest;
  opts.authProvider = new ClientCredentialsProvider({ clientId, clientSecret, expectedIssuer, scope });
} else if (token) opts.requestInit = { headers: { Authorization: `Bearer ${token}` } };
else opts.authProvider = authProvider;

try {
  const client = new Client({ name: 'ts-e2e', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(endpoint), opts);
  try {
    await client.connect(transport);
  } catch (e) {
    // The SDK's documented pattern: after a 401 its auth() ran and, for a
    // machine client, obtained a token; connect again to use it.
    if (!(token === '--client-credentials' && /unauthorized/i.test(String(e?.message ?? e)))) throw e;
    out.reconnected = true;
    await client.connect(new StreamableHTTPClientTransport(new URL(endpoint), opts));
  }
  const tools = await client.listTools();
  out.tools = tools.tools.map((t) => t.name);
  const res = await client.callTool({ name: 'echo', arguments: { text: 'from typescript' } });
  out.echo = res.structuredContent ?? res.content;
  await client.close();
} catch (e) {
  out.error = String(e?.message ?? e);
  out.status = e?.code;
}
if (challenge) {
  const param = (name) => (challenge.match(new RegExp(`${name}="([^"]*)"`)) || [])[1];
  out.challenge = challenge;
  out.resourceMetadataUrl = param('resource_metadata');
  out.scope = param('scope');
}
console.log(JSON.stringify(out));

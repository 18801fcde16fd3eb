// A real DPoP client (oauth4webapi) for the Go tests:
//   node dpop-client.mjs <issuer> <resource> <scope> <json-rpc body>
// Gets a DPoP-bound access token by the client credentials grant (client
// mcp-client of oidc-server.mjs, resource = the MCP endpoint), then POSTs
// the body to the resource with a fresh proof; on use_dpop_nonce it
// retries once with the nonce the server sent. Prints one JSON line:
//   {"token", "key" (the private JWK, for the Go test's own proofs),
//    "proofs" (every DPoP header sent to the resource), "statuses",
//    "nonceRetry", "body", "error"}
import * as oauth from 'oauth4webapi';

const [issuerURL, resourceURL, scope, body] = process.argv.slice(2);
const out = { proofs: [], statuses: [], nonceRetry: false };
const insecure = { [oauth.allowInsecureRequests]: true };
try {
  const issuer = new URL(issuerURL);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { ...insecure, algorithm: 'oidc' }));
  const client = { client_id: 'mcp-client' };
  const keyPair = await oauth.generateKeyPair('ES256', { extractable: true });
  const DPoP = oauth.DPoP(client, keyPair);
  const grant = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretPost(process.env.CLIENT_SECRET || 'mcp-client-secret'),
    new URLSearchParams({ scope, resource: resourceURL }), { ...insecure, DPoP });
  const tokens = await oauth.processClientCredentialsResponse(as, client, grant);
  if (tokens.token_type.toLowerCase() !== 'dpop') throw new Error('token_type ' + tokens.token_type);
  out.token = tokens.access_token;
  out.key = await crypto.subtle.exportKey('jwk', keyPair.privateKey);
  const record = async (url, init) => {
    out.proofs.push(new Headers(init.headers).get('dpop'));
    const res = await fetch(url, init);
    out.statuses.push(res.status);
    return res;
  };
  const call = () => oauth.protectedResourceRequest(tokens.access_token, 'POST', new URL(resourceURL),
    new Headers({ 'content-type': 'application/json', accept: 'application/json, text/event-stream' }), body,
    { ...insecure, DPoP, [oauth.customFetch]: record });
  let res;
  try {
    res = await call();
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err;
    out.nonceRetry = true; // the handle keeps the DPoP-Nonce the server sent
    res = await call();
  }
  out.body = await res.text();
} catch (err) {
  out.error = String(err && err.stack || err);
}
console.log(JSON.stringify(out));

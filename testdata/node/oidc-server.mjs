// A real OAuth 2.0 / OpenID provider (oidc-provider) for the Go tests.
// Listens on 127.0.0.1 (a free port), then prints one line:
//   READY {"issuer": "http://127.0.0.1:PORT"}
// Clients:
//   mcp-client        confidential, client_credentials (the MCP client)
//   mcp-gateway       the resource server (Caddy), may introspect; client_secret_basic
//   mcp-gateway-post  the same, with client_secret_post
// Resources (RFC 8707): urn:mcp:opaque issues opaque access tokens,
// urn:mcp:jwt (and each URL in $JWT_RESOURCES) issues RFC 9068 JWT access
// tokens (typ at+jwt, aud = the resource).
import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'oidc-test-rs256', use: 'sig', alg: 'RS256' };

const SCOPES = ['mcp:read', 'mcp:write', 'deploy:write'];
const RESOURCES = { 'urn:mcp:opaque': 'opaque', 'urn:mcp:jwt': 'jwt' };
// JWT_RESOURCES: more resources (comma-separated URLs, such as an MCP
// endpoint behind Caddy) that get JWT access tokens with aud = the resource.
for (const r of (process.env.JWT_RESOURCES || '').split(',').filter(Boolean)) RESOURCES[r] = 'jwt';
const TTL = Number(process.env.ACCESS_TOKEN_TTL || 3600);
const secret = process.env.CLIENT_SECRET || 'mcp-client-secret';
const gatewaySecret = process.env.GATEWAY_SECRET || 'mcp-gateway-secret';

const provider = new Provider(issuer, {
  clients: [
    { client_id: 'mcp-client', client_secret: secret, grant_types: ['client_credentials'], redirect_uris: [], response_types: [], scope: SCOPES.join(' ') },
    { client_id: 'mcp-gateway', client_secret: gatewaySecret, grant_types: [], redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic' },
    { client_id: 'mcp-gateway-post', client_secret: gatewaySecret, grant_types: [], redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_post' },
  ],
  jwks: { keys: [signingKey] },
  scopes: SCOPES,
  features: {
    devInteractions: { enabled: false },
    // DPoP (RFC 9449): a token request with a DPoP proof gets a DPoP-bound
    // token (cnf.jkt); on by default in oidc-provider 9, said here on purpose.
    dPoP: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // The resource server's own clients may introspect any token.
      allowedPolicy: async (ctx, client) => client.clientId.startsWith('mcp-gateway'),
    },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => 'urn:mcp:opaque',
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        const format = RESOURCES[resourceIndicator];
        if (!format) throw new errors.InvalidTarget();
        return {
          scope: SCOPES.join(' '),
          audience: resourceIndicator,
          accessTokenTTL: TTL,
          accessTokenFormat: format,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
server.on('request', provider.callback());
console.log('READY ' + JSON.stringify({ issuer }));

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

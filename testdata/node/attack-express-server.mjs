// The official TypeScript MCP SDK server, as its README shows it
// (createMcpExpressApp, a stateless StreamableHTTPServerTransport per
// request, JSON answers), for the attack regression suite
// (e2e_attacks_test.go). Tools: echo and deploy. Every tool execution is
// recorded; GET /__runs returns them (the suite's judge: a refused request
// must never run a tool). Listens on 127.0.0.1 (a free port), then prints
// one line:  READY {"addr": "127.0.0.1:PORT"}
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import * as z from 'zod/v4';

const runs = [];

function getServer() {
  const server = new McpServer({ name: 'attack-express', version: '1.0.0' });
  server.registerTool('echo', { description: 'Echo the text back.', inputSchema: { text: z.string() } },
    async ({ text }) => {
      runs.push({ name: 'echo', arguments: { text } });
      return { content: [{ type: 'text', text }] };
    });
  server.registerTool('deploy', { description: 'Pretend to deploy a service.', inputSchema: { service: z.string() } },
    async ({ service }) => {
      runs.push({ name: 'deploy', arguments: { service } });
      return { content: [{ type: 'text', text: `deployed ${service}` }] };
    });
  return server;
}

const app = createMcpExpressApp();
app.post('/mcp', async (req, res) => {
  const server = getServer();
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on('close', () => { transport.close(); server.close(); });
  try {
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  } catch (err) {
    if (!res.headersSent) {
      res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null });
    }
  }
});
app.get('/__runs', (req, res) => res.json(runs));

const listener = app.listen(0, '127.0.0.1', () => {
  const { port } = listener.address();
  console.log('READY ' + JSON.stringify({ addr: `127.0.0.1:${port}` }));
});
process.on('SIGTERM', () => listener.close(() => process.exit(0)));

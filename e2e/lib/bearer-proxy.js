// A tiny reverse proxy for test harnesses whose MCP client cannot do OAuth (the
// official conformance suite's `server` mode): it adds
// `Authorization: Bearer <token>` to every request and streams the answer back
// untouched (SSE included). Host, Origin and every other header pass through as sent,
// so mcp-server's DNS-rebinding checks see exactly what the client sent.
// An Authorization header sent by the client is replaced: the proxy holds one
// identity, obtained through the real OAuth flow.
import http from 'node:http';

export async function startBearerProxy({ target, accessToken }) {
  const upstream = new URL(target);
  const server = http.createServer(async (req, res) => {
    let token;
    try {
      token = await accessToken();
    } catch (e) {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`bearer proxy could not get a token: ${e.message}`);
      return;
    }
    const headers = { ...req.headers, authorization: `Bearer ${token}` };
    const forward = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers,
      setHost: false,
    }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, answer.rawHeaders);
      res.flushHeaders();
      answer.pipe(res);
    });
    forward.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`upstream error: ${e.message}`);
    });
    res.on('close', () => forward.destroy());
    req.pipe(forward);
  });
  server.keepAliveTimeout = 5000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}

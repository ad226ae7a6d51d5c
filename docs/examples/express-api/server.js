// An Express API protected by @latchkey/js. The page (docs/examples/html-page) signs in through
// Latchkey, asks it for a session token and calls this API with `Authorization: Bearer …`;
// this server verifies the token locally against Latchkey's JWK Set.
//
//   LATCHKEY_ISSUER=http://127.0.0.1:8080 PAGE_ORIGIN=http://127.0.0.1:5173 PORT=3001 node server.js
import express from 'express';
import { requireAuth, withAuth } from '@latchkey/js/express';

export function createApp({ issuer, pageOrigin }) {
  const app = express();
  app.disable('x-powered-by');

  // CORS for the page's origin only. `Authorization` makes the page's calls preflighted; the
  // page may read WWW-Authenticate to tell a missing token from a refused one.
  app.use((req, res, next) => {
    if (req.headers.origin === pageOrigin) {
      res.setHeader('Access-Control-Allow-Origin', pageOrigin);
      res.setHeader('Access-Control-Expose-Headers', 'WWW-Authenticate');
      res.setHeader('Vary', 'Origin');
      if (req.method === 'OPTIONS') {
        res.setHeader('Access-Control-Allow-Methods', 'GET, POST');
        res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type');
        res.setHeader('Access-Control-Max-Age', '600');
        return res.status(204).end();
      }
    }
    next();
  });

  // Session tokens carry the page's origin as `azp`: accept the page's tokens only.
  const auth = { issuer, authorizedParties: [pageOrigin], realm: 'example-api' };

  // Signed in or not: `req.auth` is the token's claims, or null.
  app.get('/api/hello', withAuth(auth), (req, res) => {
    res.json({ message: req.auth ? `Hello, ${req.auth.sub}` : 'Hello, stranger' });
  });

  // Signed in only: 401 with a WWW-Authenticate challenge otherwise.
  app.get('/api/me', requireAuth(auth), (req, res) => {
    res.json(req.auth);
  });

  return app;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const issuer = process.env.LATCHKEY_ISSUER ?? 'http://127.0.0.1:8080';
  const pageOrigin = process.env.PAGE_ORIGIN ?? 'http://127.0.0.1:5173';
  const port = Number(process.env.PORT ?? 3001);
  createApp({ issuer, pageOrigin }).listen(port, '127.0.0.1', () => {
    console.log(`example API listening on http://127.0.0.1:${port} (issuer ${issuer}, page ${pageOrigin})`);
  });
}

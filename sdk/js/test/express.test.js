import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { requireAuth, withAuth } from '../src/express.js';
import { APP, FakeIssuer, ISSUER } from './helpers.js';

/** A node:http server running `middleware` and then echoing req.auth (as Express would). */
async function serve(middleware) {
  const server = createServer((req, res) => {
    middleware(req, res, (err) => {
      if (err) { res.statusCode = 500; res.end(String(err)); return; }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ auth: req.auth, error: req.authError?.message ?? null }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/`;
  return { url, close: () => new Promise((r) => server.close(r)) };
}

async function setup() {
  const issuer = new FakeIssuer();
  await issuer.addKey('k1');
  const options = { issuer: ISSUER, authorizedParties: [APP], fetch: issuer.fetch, realm: 'api' };
  return { issuer, options };
}

test('requireAuth: 401 with a bare challenge without a token, invalid_token with a bad one', async () => {
  const { issuer, options } = await setup();
  const app = await serve(requireAuth(options));
  try {
    let res = await fetch(app.url);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="api"');

    res = await fetch(app.url, { headers: { authorization: 'Bearer not.a.token' } });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate'), /^Bearer realm="api", error="invalid_token", error_description="[^"]+"$/);
    assert.equal((await res.json()).error, 'invalid_token');

    const expired = await issuer.token({ now: Math.floor(Date.now() / 1000) - 120 });
    res = await fetch(app.url, { headers: { authorization: `Bearer ${expired}` } });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate'), /error="invalid_token", error_description="the token expired"/);

    // Another scheme is no bearer token (a bare challenge); a malformed bearer one is refused.
    res = await fetch(app.url, { headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="api"');
    for (const bad of ['Bearer', 'Bearer a b', 'Bearer ä.b.c']) {
      res = await fetch(app.url, { headers: { authorization: bad } }).catch(() => null);
      if (!res) continue; // not every value is a valid HTTP header
      assert.equal(res.status, 401, bad);
      assert.match(res.headers.get('www-authenticate'), /error="invalid_token"/, bad);
    }

    res = await fetch(app.url, { headers: { authorization: `bearer ${await issuer.token()}` } });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.auth.sub, 'usr_1');
    assert.equal(body.auth.azp, APP);
  } finally {
    await app.close();
  }
});

test('the token may come from a cookie (name configurable); the header wins', async () => {
  const { issuer, options } = await setup();
  const app = await serve(requireAuth({ ...options, cookieName: '__session' }));
  try {
    const good = await issuer.token();
    let res = await fetch(app.url, { headers: { cookie: `theme=dark; __session=${good}` } });
    assert.equal(res.status, 200);
    res = await fetch(app.url, { headers: { cookie: `latchkey_token=${good}` } });
    assert.equal(res.status, 401, 'the default cookie name is not read when another is configured');
    res = await fetch(app.url, { headers: { cookie: `__session=${good}`, authorization: 'Bearer x.y.z' } });
    assert.equal(res.status, 401);
  } finally {
    await app.close();
  }
});

test('withAuth: claims or null, never an answer of its own', async () => {
  const { issuer, options } = await setup();
  const app = await serve(withAuth(options));
  try {
    let body = await (await fetch(app.url)).json();
    assert.deepEqual(body, { auth: null, error: null });
    body = await (await fetch(app.url, { headers: { authorization: `Bearer ${await issuer.token({ claims: { azp: 'https://x.test' } })}` } })).json();
    assert.equal(body.auth, null);
    assert.match(body.error, /another party/);
    body = await (await fetch(app.url, { headers: { authorization: `Bearer ${await issuer.token()}` } })).json();
    assert.equal(body.auth.sub, 'usr_1');
  } finally {
    await app.close();
  }
});

test('requireAuth: 503 when the signing keys cannot be fetched', async () => {
  const { issuer, options } = await setup();
  issuer.down = true;
  const app = await serve(requireAuth(options));
  try {
    const res = await fetch(app.url, { headers: { authorization: `Bearer ${await issuer.token()}` } });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('www-authenticate'), null);
  } finally {
    await app.close();
  }
});

// The browser module's token logic, outside a browser: an injected fetch stands in for
// Latchkey's token endpoint, and Date.now is mocked. (The module in Chromium, against a real
// Latchkey, is tested from tests/integration/sdk_js.rs.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLatchkey, initials, LatchkeyError } from '../src/browser.js';

const ISSUER = 'https://id.example.test';

function jwt(claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${b64({ alg: 'ES256', typ: 'JWT', kid: 'k' })}.${b64(claims)}.c2ln`;
}

/** A token endpoint: answers from `script` (a function of the call number). */
function endpoint(script) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init });
    const n = calls.length;
    await new Promise((r) => setImmediate(r));
    return script(n);
  };
  return { fetch, calls };
}

const ok = (n, lifetime = 60) => {
  const iat = 1_000 + n;
  return Response.json({ jwt: jwt({ sub: 'usr_1', sid: 'ses_1', iat, exp: iat + lifetime, n }), expires_at: iat + lifetime });
};

test('concurrent getToken() calls share one request, and a fresh token costs none', async (t) => {
  const { fetch, calls } = endpoint((n) => ok(n));
  const client = createLatchkey({ issuer: `${ISSUER}/`, fetch, autoStart: false });
  t.after(() => client.stop());
  const tokens = await Promise.all([client.getToken(), client.getToken(), client.getToken()]);
  assert.equal(calls.length, 1);
  assert.equal(new Set(tokens).size, 1);
  assert.equal(calls[0].url, `${ISSUER}/v1/session/token`);
  assert.equal(calls[0].init.method, 'POST');
  assert.equal(calls[0].init.credentials, 'include');
  assert.equal(await client.getToken(), tokens[0]);
  assert.equal(calls.length, 1);
  assert.equal(client.state, 'signed-in');
  assert.equal(client.claims.sub, 'usr_1');
});

test('a token with less than ten seconds left is refreshed first', async (t) => {
  let now = 5_000_000;
  t.mock.method(Date, 'now', () => now);
  const { fetch, calls } = endpoint((n) => ok(n));
  const client = createLatchkey({ issuer: ISSUER, fetch, autoStart: false });
  t.after(() => client.stop());
  const first = await client.getToken();
  now += 49_000;
  assert.equal(await client.getToken(), first, '11 s left: still handed out');
  now += 2_000;
  const second = await client.getToken();
  assert.notEqual(second, first);
  assert.equal(calls.length, 2);
  assert.equal(await client.getToken({ forceRefresh: true }) === second, false);
});

test('a 401 means signed out: onSignedOut fires once, getToken() gives null', async (t) => {
  let alive = true;
  const { fetch, calls } = endpoint((n) => (alive ? ok(n) : new Response('{}', { status: 401 })));
  const client = createLatchkey({ issuer: ISSUER, fetch, autoStart: false, template: 'my api' });
  t.after(() => client.stop());
  let signedOut = 0;
  const states = [];
  client.onSignedOut(() => { signedOut += 1; });
  client.onChange((s) => states.push(s));
  assert.ok(await client.getToken());
  assert.equal(calls[0].url, `${ISSUER}/v1/session/token/my%20api`);
  alive = false;
  assert.equal(await client.getToken({ forceRefresh: true }), null);
  assert.equal(await client.getToken(), null);
  assert.equal(signedOut, 1);
  assert.deepEqual(states, ['signed-in', 'signed-out']);
  assert.equal(client.claims, null);
});

test('an unreachable Latchkey: the current token while it lasts, then an error', async (t) => {
  let now = 5_000_000;
  t.mock.method(Date, 'now', () => now);
  let up = true;
  const { fetch } = endpoint((n) => {
    if (!up) throw new TypeError('Failed to fetch');
    return ok(n);
  });
  const client = createLatchkey({ issuer: ISSUER, fetch, autoStart: false });
  t.after(() => client.stop());
  const token = await client.getToken();
  up = false;
  now += 55_000;
  assert.equal(await client.getToken(), token, 'not expired yet: still usable');
  now += 10_000;
  await assert.rejects(client.getToken(), LatchkeyError);
  assert.equal(client.state, 'signed-in', 'an outage is not a sign-out');
});

test('a session never signed in is not reported as signed out', async (t) => {
  const { fetch } = endpoint(() => new Response('{}', { status: 401 }));
  const client = createLatchkey({ issuer: ISSUER, fetch, autoStart: false });
  t.after(() => client.stop());
  let signedOut = 0;
  client.onSignedOut(() => { signedOut += 1; });
  assert.equal(await client.getToken(), null);
  assert.equal(client.state, 'signed-out');
  assert.equal(signedOut, 0);
});

test('the issuer must be an http(s) URL', () => {
  assert.throws(() => createLatchkey({ issuer: 'id.example.test' }), TypeError);
  assert.throws(() => createLatchkey({}), TypeError);
});

test('initials come from the name, else the email', () => {
  assert.equal(initials({ name: 'Ada Lovelace' }), 'AL');
  assert.equal(initials({ name: 'grace brewster murray hopper' }), 'GH');
  assert.equal(initials({ given_name: 'Émile', family_name: 'Zola' }), 'ÉZ');
  assert.equal(initials({ name: 'Cher' }), 'C');
  assert.equal(initials({ email: 'kay@example.com' }), 'K');
  assert.equal(initials({}), '?');
});

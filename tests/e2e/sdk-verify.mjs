// The JavaScript SDK's verifier (sdk/js/src/verify.js) against a running Latchkey: real session
// tokens, its real JWK Set, a real key rotation and a withdrawn key. Started by the Rust test
// `sdk_js::verifier_against_a_running_latchkey`, which provides LATCHKEY_URL, a session
// (SESSION_SECRET), two allowed origins (APP_ORIGIN, OTHER_ORIGIN) and CLOCK_DIR: write
// `req-<n>` with {"rotate": true} or {"withdraw": kid}, wait for `ack-<n>`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createVerifier, InvalidTokenError } from '../../sdk/js/src/verify.js';

const { LATCHKEY_URL: base, SESSION_SECRET, APP_ORIGIN, OTHER_ORIGIN, CLOCK_DIR } = process.env;
assert.ok(base && SESSION_SECRET && APP_ORIGIN && OTHER_ORIGIN && CLOCK_DIR);

let seq = 0;
async function server(cmd) {
  seq += 1;
  const tmp = join(CLOCK_DIR, `req-${seq}.tmp`);
  writeFileSync(tmp, JSON.stringify(cmd));
  renameSync(tmp, join(CLOCK_DIR, `req-${seq}`));
  const ack = join(CLOCK_DIR, `ack-${seq}`);
  const deadline = Date.now() + 10_000;
  while (!existsSync(ack)) {
    if (Date.now() > deadline) throw new Error(`no answer to ${JSON.stringify(cmd)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return JSON.parse(readFileSync(ack, 'utf8'));
}

async function mint(origin = APP_ORIGIN) {
  const res = await fetch(`${base}/v1/session/token`, {
    method: 'POST',
    headers: { origin, cookie: `latchkey_session=${SESSION_SECRET}` },
  });
  assert.equal(res.status, 200);
  return (await res.json()).jwt;
}

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const parts = (jwt) => jwt.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url')));

async function refused(promise, pattern) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof InvalidTokenError, `expected InvalidTokenError, got ${e?.stack ?? e}`);
    assert.match(e.message, pattern);
    return true;
  });
}

test('session tokens from a running Latchkey: accepted, and every kind of bad token refused', async () => {
  // The server runs on the system clock here; `time` (unix seconds) moves the verifier's.
  let time = null;
  const at = (extra = {}) => createVerifier({
    issuer: base, authorizedParties: [APP_ORIGIN], currentTime: () => time, clockSkew: 5, ...extra,
  });
  const verifier = at();
  const token = await mint();
  const claims = await verifier.verify(token);
  assert.equal(claims.azp, APP_ORIGIN);
  assert.equal(claims.iss, base);
  assert.equal(parts(token)[0].typ, 'JWT');

  // Expired and not yet valid (beyond the 5 s skew), and valid just within it.
  time = claims.exp + 6;
  await refused(verifier.verify(token), /expired/);
  time = claims.exp + 4;
  assert.ok(await verifier.verify(token));
  time = claims.nbf - 6;
  await refused(verifier.verify(token), /not valid yet/);
  time = null;

  // Another issuer (even a trailing slash), another authorised party, another audience.
  await refused(at({ issuer: `${base}/` }).verify(token), /issuer/);
  await refused(verifier.verify(await mint(OTHER_ORIGIN)), /another party/);
  await refused(at({ authorizedParties: [OTHER_ORIGIN] }).verify(token), /another party/);
  await refused(at({ acceptAccessTokens: false, audience: 'https://api.example.test' }).verify(token.replace(/^[^.]+/, b64({ ...parts(token)[0], typ: 'at+jwt' }))), /access tokens|signature/);

  // Tampered payload, alg none, HS256 keyed with the published public key.
  const [header, payload] = parts(token);
  const [h, , s] = token.split('.');
  await refused(verifier.verify(`${h}.${b64({ ...payload, sub: 'usr_someone_else' })}.${s}`), /signature/);
  await refused(verifier.verify(`${b64({ ...header, alg: 'none' })}.${b64(payload)}.`), /algorithm/);
  const jwks = await (await fetch(`${base}/.well-known/jwks.json`)).json();
  const publicJwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(publicJwk, 'the signing key is published');
  const hsHead = b64({ ...header, alg: 'HS256' });
  for (const secret of [JSON.stringify(publicJwk), publicJwk.x ?? publicJwk.n]) {
    const sig = createHmac('sha256', secret).update(`${hsHead}.${b64(payload)}`).digest('base64url');
    await refused(verifier.verify(`${hsHead}.${b64(payload)}.${sig}`), /algorithm/);
  }
});

test('an unknown kid is found after a key rotation; a withdrawn key stops verifying', async () => {
  // The JWK Set cache runs on its own clock (ms), moved by hand.
  let cacheMs = 1_000_000;
  const verifier = createVerifier({ issuer: base, authorizedParties: [APP_ORIGIN], now: () => cacheMs });
  const before = await mint();
  await verifier.verify(before);
  const oldKid = parts(before)[0].kid;

  const rotated = await server({ rotate: true });
  assert.equal(rotated.retired, oldKid);
  const after = await mint();
  assert.equal(parts(after)[0].kid, rotated.kid);
  // Within 30 s of the last JWK Set fetch the new key is not looked up…
  await refused(verifier.verify(after), /unknown key/);
  // …after that it is, once, and found.
  cacheMs += 30_000;
  assert.equal((await verifier.verify(after)).sub, (await verifier.verify(before)).sub);

  // The retired key still verifies the tokens it signed until it is withdrawn; then, at the
  // next JWK Set refresh, it no longer does.
  await server({ withdraw: oldKid });
  assert.ok(await verifier.verify(before), 'cached until the JWK Set is fetched again');
  cacheMs += 600_000;
  await refused(verifier.verify(before), /unknown key/);
  assert.ok(await verifier.verify(after));
});

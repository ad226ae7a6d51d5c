import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { exportSPKI } from 'jose';
import { createVerifier, InvalidTokenError, JwksUnavailableError } from '../src/verify.js';
import { APP, Clock, FakeIssuer, ISSUER, b64url } from './helpers.js';

async function setup(extra = {}) {
  const issuer = new FakeIssuer();
  const first = await issuer.addKey('k1');
  const clock = new Clock();
  const verifier = createVerifier({ issuer: ISSUER, authorizedParties: [APP], fetch: issuer.fetch, now: clock.now, ...extra });
  return { issuer, first, clock, verifier };
}

async function refused(promise, pattern) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof InvalidTokenError, `expected InvalidTokenError, got ${e}`);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

const now = () => Math.floor(Date.now() / 1000);

test('a valid session token is accepted and its claims returned', async () => {
  const { issuer, verifier } = await setup();
  const claims = await verifier.verify(await issuer.token({ claims: { org_id: 'org_1' } }));
  assert.equal(claims.sub, 'usr_1');
  assert.equal(claims.azp, APP);
  assert.equal(claims.org_id, 'org_1');
});

test('every algorithm Latchkey signs with is accepted (ES256, RS256, EdDSA)', async () => {
  const { issuer, verifier } = await setup();
  for (const [kid, alg] of [['r1', 'RS256'], ['e1', 'EdDSA']]) {
    await issuer.addKey(kid, alg);
  }
  for (const kid of ['k1', 'r1', 'e1']) {
    assert.equal((await verifier.verify(await issuer.token({ kid }))).sub, 'usr_1', kid);
  }
});

test('an expired token is refused (beyond the clock skew only)', async () => {
  const { issuer, verifier } = await setup();
  await refused(verifier.verify(await issuer.token({ now: now() - 70 })), /expired/);
  // 3 s past exp is within the default 5 s skew.
  assert.ok(await verifier.verify(await issuer.token({ now: now() - 63 })));
});

test('a token that is not valid yet is refused', async () => {
  const { issuer, verifier } = await setup();
  await refused(verifier.verify(await issuer.token({ claims: { nbf: now() + 30 } })), /not valid yet/);
});

test('a token from another issuer is refused', async () => {
  const { issuer, verifier } = await setup();
  await refused(verifier.verify(await issuer.token({ claims: { iss: 'https://evil.example.test' } })), /issuer/);
  await refused(verifier.verify(await issuer.token({ claims: { iss: `${ISSUER}/` } })), /issuer/);
});

test('a token for another authorised party or audience is refused', async () => {
  const { issuer, verifier } = await setup();
  await refused(verifier.verify(await issuer.token({ claims: { azp: 'https://other.example.test' } })), /another party/);
  await refused(verifier.verify(await issuer.token({ claims: { azp: undefined } })), /another party/);
  await refused(verifier.verify(await issuer.token({ claims: { aud: 'https://api.other.test' } })), /audience/);
  const withAudience = createVerifier({ issuer: ISSUER, authorizedParties: [APP], audience: 'https://api.test', fetch: issuer.fetch });
  assert.ok(await withAudience.verify(await issuer.token({ claims: { aud: 'https://api.test' } })));
});

test('RFC 9068 access tokens are accepted only when configured, for the configured audience', async () => {
  const { issuer, verifier } = await setup();
  const at = (aud) => issuer.token({ header: { typ: 'at+jwt' }, claims: { aud, azp: undefined, client_id: 'cli_1' } });
  await refused(verifier.verify(await at('https://api.test')), /access tokens/);
  const api = createVerifier({ issuer: ISSUER, audience: 'https://api.test', acceptAccessTokens: true, fetch: issuer.fetch });
  assert.equal((await api.verify(await at('https://api.test'))).client_id, 'cli_1');
  await refused(api.verify(await at('https://other.test')), /audience/);
  // …and that verifier, with no authorised parties, takes no session tokens.
  await refused(api.verify(await issuer.token()), /session tokens/);
  const appTyp = await issuer.token({ header: { typ: 'application/at+jwt' }, claims: { aud: 'https://api.test' } });
  assert.ok(await api.verify(appTyp));
});

test('a token of another type is refused', async () => {
  const { issuer, verifier } = await setup();
  await refused(verifier.verify(await issuer.token({ header: { typ: 'logout+jwt' } })), /type/);
  await refused(verifier.verify(await issuer.token({ header: { typ: undefined } })), /type/);
});

test('a tampered token is refused', async () => {
  const { issuer, verifier } = await setup();
  const [h, , s] = (await issuer.token()).split('.');
  const forged = b64url({ iss: ISSUER, sub: 'usr_admin', azp: APP, iat: now(), nbf: now(), exp: now() + 60 });
  await refused(verifier.verify(`${h}.${forged}.${s}`), /signature/);
  const [h2, p2] = (await issuer.token({ claims: { sid: 'ses_2' } })).split('.');
  await refused(verifier.verify(`${h2}.${p2}.${s}`), /signature/);
});

test('alg none is refused', async () => {
  const { verifier } = await setup();
  const payload = b64url({ iss: ISSUER, sub: 'usr_1', azp: APP, iat: now(), nbf: now(), exp: now() + 60 });
  await refused(verifier.verify(`${b64url({ alg: 'none', typ: 'JWT', kid: 'k1' })}.${payload}.`), /not a signed JWT|algorithm/);
  await refused(verifier.verify(`${b64url({ alg: 'none', typ: 'JWT', kid: 'k1' })}.${payload}.e30`), /algorithm/);
});

test('HS256 signed with the public key is refused', async () => {
  const { issuer, first, verifier } = await setup();
  const pem = await exportSPKI(first.publicKey);
  const payload = b64url({ iss: ISSUER, sub: 'usr_1', azp: APP, iat: now(), nbf: now(), exp: now() + 60 });
  for (const secret of [pem, JSON.stringify(first.jwk)]) {
    const head = b64url({ alg: 'HS256', typ: 'JWT', kid: 'k1' });
    const sig = createHmac('sha256', secret).update(`${head}.${payload}`).digest('base64url');
    await refused(verifier.verify(`${head}.${payload}.${sig}`), /algorithm/);
  }
  // A header naming another asymmetric algorithm than the key's is refused too.
  await issuer.addKey('r1', 'RS256');
  const rs = await issuer.token({ kid: 'r1' });
  const [, p, s] = rs.split('.');
  await refused(verifier.verify(`${b64url({ alg: 'ES256', typ: 'JWT', kid: 'r1' })}.${p}.${s}`), /does not match/);
});

test('an unknown kid is looked up again (at most once per 30 s) and found after a rotation', async () => {
  const { issuer, clock, verifier } = await setup();
  await verifier.verify(await issuer.token());
  assert.equal(issuer.jwksRequests, 1);
  // A token from a key that is not published yet: one lookup, then none for 30 s.
  const unknown = await issuer.token({ kid: 'k1', header: { kid: 'k2' } });
  clock.advance(31);
  await refused(verifier.verify(unknown), /unknown key/);
  assert.equal(issuer.jwksRequests, 2);
  await issuer.addKey('k2');
  const rotated = await issuer.token({ kid: 'k2' });
  await refused(verifier.verify(rotated), /unknown key/);
  assert.equal(issuer.jwksRequests, 2, 'no second lookup within the cooldown');
  clock.advance(30);
  assert.equal((await verifier.verify(rotated)).sub, 'usr_1');
  assert.equal(issuer.jwksRequests, 3);
  // Known keys cost no lookups.
  await verifier.verify(await issuer.token({ kid: 'k1' }));
  assert.equal(issuer.jwksRequests, 3);
});

test('a key removed from the JWK Set stops verifying once the cached set is refreshed', async () => {
  const { issuer, clock, verifier } = await setup();
  const old = await issuer.token({ kid: 'k1' });
  await verifier.verify(old);
  await issuer.addKey('k2');
  const signedBeforeRemoval = await issuer.token({ kid: 'k1' });
  issuer.removeKey('k1');
  // Still cached: accepted until the set is fetched again.
  assert.ok(await verifier.verify(signedBeforeRemoval));
  clock.advance(601);
  await refused(verifier.verify(signedBeforeRemoval), /unknown key/);
  assert.ok(await verifier.verify(await issuer.token({ kid: 'k2' })));
});

test('a cached JWK Set is used while the issuer is unreachable (stale-if-error), then not', async () => {
  const { issuer, clock, verifier } = await setup();
  await verifier.verify(await issuer.token());
  issuer.down = true;
  clock.advance(601);
  assert.ok(await verifier.verify(await issuer.token()));
  clock.advance(86_400);
  await assert.rejects(verifier.verify(await issuer.token()), JwksUnavailableError);
  issuer.down = false;
  assert.ok(await verifier.verify(await issuer.token()));
});

test('without any JWK Set, an unreachable issuer is an outage, not an invalid token', async () => {
  const { issuer, verifier } = await setup();
  issuer.down = true;
  await assert.rejects(verifier.verify(await issuer.token()), JwksUnavailableError);
});

test('a verifier must be told whom to accept', () => {
  assert.throws(() => createVerifier({ issuer: ISSUER }), TypeError);
  assert.throws(() => createVerifier({ authorizedParties: [APP] }), TypeError);
});

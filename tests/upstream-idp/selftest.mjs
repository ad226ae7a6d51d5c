#!/usr/bin/env node
// Starts the emulator and drives it with openid-client (the relying party tests/e2e uses):
// discovery, code + PKCE flows for Google Workspace and consumer users and for a Microsoft member
// and guest, claim shapes, refresh (rotation at Microsoft), suspension, outage mode, RISC SETs.
// Exits non-zero on the first failure. Usage: node selftest.mjs
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import { createRemoteJWKSet, jwtVerify, decodeJwt } from 'jose';

const REDIRECT = 'http://127.0.0.1:9/callback'; // never contacted: the flow stops at the redirect
const CONTOSO = '11111111-1111-4111-8111-111111111111';
const FABRIKAM = '22222222-2222-4222-8222-222222222222';
const CONSUMER = '9188040d-6c67-4c5b-b112-36a304b66dad';

const CONFIG = {
  ttl: { AccessToken: 600 },
  google: {
    clients: [{ client_id: 'google-client', client_secret: 'google-secret', redirect_uris: [REDIRECT] }],
    users: [
      { email: 'alice@acme.test', hd: 'acme.test', name: 'Alice Doe' },
      { email: 'bob@gmail.test', name: 'Bob Roe' },
    ],
  },
  microsoft: {
    clients: [{ client_id: 'ms-client', client_secret: 'ms-secret', redirect_uris: [REDIRECT] }],
    tenants: [
      { tid: CONTOSO, domains: ['contoso.test'], name: 'Contoso' },
      { tid: FABRIKAM, domains: ['fabrikam.test'], name: 'Fabrikam' },
    ],
    users: [
      { tid: CONTOSO, email: 'carol@contoso.test', name: 'Carol Lee', xms_edov: true },
      { tid: CONTOSO, email: 'dave@fabrikam.test', preferred_username: 'dave_fabrikam.test#EXT#@contoso.test', acct: 1, name: 'Dave Guest' },
      { tid: FABRIKAM, email: 'erin@fabrikam.test', name: 'Erin Fox' },
      { tid: CONSUMER, email: 'frank@outlook.test', name: 'Frank Home' },
      { tid: FABRIKAM, email: 'carol@contoso.test', name: 'Carol Impostor' }, // same address, other tenant
    ],
  },
};

const checks = [];
async function check(name, fn) {
  await fn();
  checks.push(name);
  console.error(`ok - ${name}`);
}

/** Starts server.mjs with the config on its stdin pipe; resolves with its ready line. */
async function startEmulator() {
  const { writeFileSync, mkdtempSync } = await import('node:fs');
  const dir = mkdtempSync('/tmp/upstream-idp-');
  writeFileSync(`${dir}/config.json`, JSON.stringify(CONFIG));
  const child = spawn(process.execPath, [new URL('./server.mjs', import.meta.url).pathname, '--port', '0', '--config', `${dir}/config.json`], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [line] = await once(createInterface({ input: child.stdout }), 'line');
  return { child, ready: JSON.parse(line) };
}

/** A cookie-keeping, redirect-following stand-in for the browser, up to the redirect URI. */
async function browse(start, { jar = new Map(), choose } = {}) {
  let url = new URL(start);
  let form;
  for (let hop = 0; hop < 20; hop += 1) {
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const init = form
      ? { method: 'POST', body: form, headers: { 'content-type': 'application/x-www-form-urlencoded' } }
      : { headers: {} };
    if (cookie) init.headers.cookie = cookie;
    form = undefined;
    const res = await fetch(url, { ...init, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      jar.set(pair.slice(0, i), pair.slice(i + 1));
    }
    const location = res.headers.get('location');
    const page = location ? '' : await res.text();
    const autoSubmit = page.includes('document.forms[0].submit()') && page.match(/<form method="post" action="([^"]+)">/);
    if (autoSubmit) {
      // A self-submitting form (oidc-provider ends the previous user's session this way).
      form = new URLSearchParams([...page.matchAll(/name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1], m[2]])).toString();
      url = new URL(autoSubmit[1].replaceAll('&#x2F;', '/').replaceAll('&#x3A;', ':'), url);
      continue;
    }
    if (!location && choose && res.status === 200) {
      // The account chooser: press the button of the wanted user, as a browser would.
      // `choose` is an email or a user id.
      const button = [...page.matchAll(/<form method="(\w+)" action="([^"]+)">((?:(?!<\/form>).)*?)<button name="user" value="([^"]+)" data-email="([^"]+)"/g)]
        .find((m) => m[4] === choose || m[5] === choose);
      if (!button) throw new Error(`no button for ${choose} in ${page}`);
      const fields = new URLSearchParams([...button[3].matchAll(/name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1], m[2].replaceAll('&#38;', '&')]));
      fields.set('user', button[4]);
      url = new URL(button[2], url);
      if (button[1] === 'post') form = fields.toString();
      else url.search = fields.toString();
      continue;
    }
    if (!location) throw new Error(`stopped at ${url} with ${res.status}: ${page.slice(0, 2000)}`);
    url = new URL(location, url);
    if (url.href.startsWith(REDIRECT)) return url;
  }
  throw new Error('too many redirects');
}

async function discover(issuer, clientId, secret) {
  return client.discovery(new URL(issuer), clientId, undefined, client.ClientSecretBasic(secret), {
    execute: [client.allowInsecureRequests],
  });
}

/** Authorization code + PKCE through the emulator; returns the validated token response. */
async function codeFlow(config, extra, browser = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid email profile',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  const callback = await browse(url, browser);
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce,
  });
  assert.equal(tokens.claims().nonce, nonce);
  return tokens;
}

async function admin(ready, method, path, body) {
  const res = await fetch(`${ready.admin}/${path}`, {
    method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body),
  });
  const json = await res.json();
  assert.equal(res.status, 200, `admin ${path}: ${JSON.stringify(json)}`);
  return json;
}

/** Runs a promise expected to fail with an OAuth error; returns that error. */
async function refused(promise) {
  try {
    await promise;
  } catch (err) {
    // openid-client puts the HTTP status on OAuth errors, and the Response as the cause of others.
    if (err.status === undefined && err.cause?.status) err.status = err.cause.status;
    return err;
  }
  throw new Error('expected a refusal');
}

async function googleChecks(ready, state) {
  const google = await discover(ready.google_issuer, 'google-client', 'google-secret');
  await check('Google discovery', () => assert.equal(google.serverMetadata().issuer, ready.google_issuer));

  await check('Google hd narrows the account chooser', async () => {
    const url = client.buildAuthorizationUrl(google, { redirect_uri: REDIRECT, scope: 'openid email', hd: 'acme.test', state: 'x', nonce: 'y' });
    const res = await fetch(url, { redirect: 'manual' });
    const page = await (await fetch(new URL(res.headers.get('location'), url), { headers: { cookie: cookiesOf(res) } })).text();
    assert.ok(page.includes('alice@acme.test') && !page.includes('bob@gmail.test'), page);
  });

  await check('Google Workspace user: claims, hd, offline refresh token', async () => {
    const t = await codeFlow(google, { login_hint: 'alice@acme.test', hd: 'acme.test', access_type: 'offline', prompt: 'consent' });
    const c = t.claims();
    const alice = state.google.users.find((u) => u.email === 'alice@acme.test');
    assert.equal(c.iss, ready.google_issuer);
    assert.equal(c.aud, 'google-client');
    assert.equal(c.azp, 'google-client');
    assert.equal(c.sub, alice.id);
    assert.match(c.sub, /^\d{21}$/);
    assert.deepEqual([c.email, c.email_verified, c.hd, c.name, c.given_name, c.family_name],
      ['alice@acme.test', true, 'acme.test', 'Alice Doe', 'Alice', 'Doe']);
    assert.ok(t.refresh_token, 'access_type=offline + prompt=consent gives a refresh token');
    assert.equal(t.expires_in, 600, 'the config\'s ttl applies');
    const r = await client.refreshTokenGrant(google, t.refresh_token);
    assert.ok(!r.refresh_token || r.refresh_token === t.refresh_token, 'Google does not rotate');
    const info = await client.fetchUserInfo(google, r.access_token, c.sub);
    assert.equal(info.hd, 'acme.test');
    assert.ok(!('azp' in info));
    state.aliceRefresh = t.refresh_token;
  });

  await check('Google: prompt=select_account and an API scope', async () => {
    const scope = 'openid email https://www.googleapis.com/auth/calendar.readonly';
    const t = await codeFlow(google, { login_hint: 'alice@acme.test', prompt: 'select_account consent', access_type: 'offline', scope });
    assert.ok(t.refresh_token);
    assert.ok(t.scope.split(' ').includes('https://www.googleapis.com/auth/calendar.readonly'), t.scope);
  });

  await check('Google consumer user: no hd; no refresh token without access_type=offline', async () => {
    const t = await codeFlow(google, { login_hint: 'bob@gmail.test' });
    const c = t.claims();
    assert.equal(c.email, 'bob@gmail.test');
    assert.equal(c.email_verified, true);
    assert.ok(!('hd' in c), 'consumer accounts have no hd claim');
    assert.equal(t.refresh_token, undefined);
  });

  await check('Google chooser form and one browser signing two users in turn', async () => {
    const jar = new Map();
    assert.equal((await codeFlow(google, {}, { jar, choose: 'alice@acme.test' })).claims().email, 'alice@acme.test');
    assert.equal((await codeFlow(google, {}, { jar })).claims().email, 'alice@acme.test', 'the session is kept');
    assert.equal((await codeFlow(google, { login_hint: 'bob@gmail.test' }, { jar })).claims().email, 'bob@gmail.test');
  });

  await check('Google outage: 503, then a dropped connection at the token endpoint, then restored', async () => {
    await admin(ready, 'POST', 'google/outage', { status: 503 });
    const err = await refused(client.refreshTokenGrant(google, state.aliceRefresh));
    assert.equal(err.status, 503, String(err));
    await admin(ready, 'POST', 'google/outage', { status: 'reset' });
    await refused(client.refreshTokenGrant(google, state.aliceRefresh)); // a network error
    await admin(ready, 'DELETE', 'google/outage');
    assert.ok((await client.refreshTokenGrant(google, state.aliceRefresh)).access_token);
  });

  await check('Google user suspended: invalid_grant, reinstating brings nothing back', async () => {
    const t = await codeFlow(google, { login_hint: 'bob@gmail.test', access_type: 'offline', prompt: 'consent' });
    await admin(ready, 'POST', 'google/users/bob@gmail.test/suspend');
    assert.equal((await refused(client.refreshTokenGrant(google, t.refresh_token))).error, 'invalid_grant');
    const err = await refused(client.fetchUserInfo(google, t.access_token, t.claims().sub));
    assert.equal(err.status, 401, String(err));
    await admin(ready, 'POST', 'google/users/bob@gmail.test/reinstate');
    assert.equal((await refused(client.refreshTokenGrant(google, t.refresh_token))).error, 'invalid_grant');
    assert.ok((await codeFlow(google, { login_hint: 'bob@gmail.test' })).access_token, 'a new sign-in works again');
  });
}

function cookiesOf(res) {
  return res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
}

async function riscChecks(ready) {
  const jwks = createRemoteJWKSet(new URL(`${ready.google_issuer}/oauth2/v3/certs`));
  const received = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; }).on('end', () => {
      received.push({ type: req.headers['content-type'], body });
      res.writeHead(202).end();
    });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
  await check('RISC SET signed with the published Google key, delivered as secevent+jwt', async () => {
    const out = await admin(ready, 'POST', 'google/risc', {
      client_id: 'google-client', user: 'alice@acme.test', event: 'account-disabled', reason: 'hijacking',
      deliver_to: `http://127.0.0.1:${receiver.address().port}/risc`,
    });
    const { payload } = await jwtVerify(out.set, jwks, { issuer: ready.google_issuer, audience: 'google-client' });
    assert.ok(payload.jti && payload.iat);
    const event = payload.events['https://schemas.openid.net/secevent/risc/event-type/account-disabled'];
    assert.equal(event.subject.subject_type, 'iss-sub');
    assert.equal(event.subject.iss, ready.google_issuer);
    assert.match(event.subject.sub, /^\d{21}$/);
    assert.equal(event.reason, 'hijacking');
    assert.equal(out.delivery.status, 202);
    assert.deepEqual(received, [{ type: 'application/secevent+jwt', body: out.set }]);
  });
  await check('a forged RISC SET does not verify', async () => {
    const out = await admin(ready, 'POST', 'google/risc', { client_id: 'google-client', user: 'alice@acme.test', event: 'sessions-revoked', forged: true });
    await refused(jwtVerify(out.set, jwks, { issuer: ready.google_issuer, audience: 'google-client' }));
  });
  await check('admin sign: published key verifies, forged and alg none do not', async () => {
    const claims = { iss: ready.google_issuer, aud: 'google-client', sub: '1', exp: Math.floor(Date.now() / 1000) + 60 };
    const good = (await admin(ready, 'POST', 'sign', { family: 'google', claims })).jwt;
    await jwtVerify(good, jwks, { issuer: ready.google_issuer });
    const forged = (await admin(ready, 'POST', 'sign', { family: 'google', claims, forged: true })).jwt;
    await refused(jwtVerify(forged, jwks));
    const none = (await admin(ready, 'POST', 'sign', { family: 'google', claims, alg: 'none' })).jwt;
    assert.ok(none.endsWith('.'));
    await refused(jwtVerify(none, jwks));
  });
  receiver.close();
}

async function microsoftDiscoveryChecks(ready) {
  const authority = ready.microsoft_authority;
  await check('Microsoft discovery: tenant, domain alias, organizations/common templates', async () => {
    const doc = async (seg) => (await fetch(`${authority}/${seg}/v2.0/.well-known/openid-configuration`)).json();
    assert.equal((await doc(CONTOSO)).issuer, `${authority}/${CONTOSO}/v2.0`);
    const byDomain = await doc('fabrikam.test');
    assert.equal(byDomain.issuer, `${authority}/${FABRIKAM}/v2.0`);
    assert.ok(byDomain.token_endpoint.includes(`/${FABRIKAM}/`));
    for (const seg of ['organizations', 'common']) {
      const d = await doc(seg);
      assert.equal(d.issuer, `${authority}/{tenantid}/v2.0`);
      assert.ok(d.authorization_endpoint.startsWith(`${authority}/${seg}/v2.0/`));
    }
    const keys = async (seg) => (await (await fetch((await doc(seg)).jwks_uri)).json()).keys.map((k) => k.kid);
    assert.deepEqual(await keys(CONTOSO), await keys(FABRIKAM), 'all tenants share one signing key');
    assert.equal((await fetch(`${authority}/nowhere.test/v2.0/.well-known/openid-configuration`)).status, 400);
  });
}

async function microsoftChecks(ready, state) {
  const authority = ready.microsoft_authority;
  const contoso = await discover(`${authority}/${CONTOSO}/v2.0`, 'ms-client', 'ms-secret');
  await check('Microsoft member: claims, pairwise sub, rotated refresh tokens', async () => {
    const t = await codeFlow(contoso, { login_hint: 'carol@contoso.test', scope: 'openid email profile offline_access' });
    const c = t.claims();
    const carol = state.microsoft.users.find((u) => u.email === 'carol@contoso.test');
    assert.equal(c.iss, `${authority}/${CONTOSO}/v2.0`);
    assert.deepEqual([c.tid, c.oid, c.acct, c.xms_edov, c.email, c.preferred_username, c.name, c.given_name, c.family_name],
      [CONTOSO, carol.id, 0, true, 'carol@contoso.test', 'carol@contoso.test', 'Carol Lee', 'Carol', 'Lee']);
    assert.match(c.oid, /^[0-9a-f-]{36}$/);
    assert.notEqual(c.sub, c.oid);
    assert.match(c.sub, /^[A-Za-z0-9_-]{43}$/);
    assert.ok(!('email_verified' in c), 'Microsoft does not verify email');
    assert.ok(t.refresh_token, 'offline_access gives a refresh token');
    const r = await client.refreshTokenGrant(contoso, t.refresh_token);
    assert.ok(r.refresh_token && r.refresh_token !== t.refresh_token, 'Microsoft rotates refresh tokens');
    assert.equal(r.claims().sub, c.sub);
    state.carol = { sub: c.sub, refresh: r.refresh_token, access: r.access_token };
  });

  await check('Microsoft sub is pairwise: another client sees another sub, the same oid', async () => {
    await admin(ready, 'POST', 'microsoft/clients', { client_id: 'ms-other', client_secret: 'other-secret', redirect_uris: [REDIRECT] });
    const other = await discover(`${authority}/${CONTOSO}/v2.0`, 'ms-other', 'other-secret');
    const c = (await codeFlow(other, { login_hint: 'carol@contoso.test' })).claims();
    assert.notEqual(c.sub, state.carol.sub);
    assert.equal(c.aud, 'ms-other');
  });

  await check('Microsoft guest: acct 1, issued by the resource tenant', async () => {
    const c = (await codeFlow(contoso, { login_hint: 'dave@fabrikam.test' })).claims();
    assert.deepEqual([c.acct, c.tid, c.email, c.xms_edov], [1, CONTOSO, 'dave@fabrikam.test', false]);
  });

  await check('Microsoft tenant endpoint refuses another tenant\'s user', async () => {
    const url = client.buildAuthorizationUrl(contoso, { redirect_uri: REDIRECT, scope: 'openid', login_hint: 'erin@fabrikam.test', state: 's', nonce: 'n' });
    const cb = await browse(url);
    assert.equal(cb.searchParams.get('error'), 'access_denied');
  });

  await check('Microsoft /organizations: the token comes from the user\'s home tenant', async () => {
    await multiTenantFlow(ready, 'organizations', 'erin@fabrikam.test', FABRIKAM);
    await multiTenantFlow(ready, 'organizations', undefined, FABRIKAM, 'erin@fabrikam.test');
  });
  await check('Microsoft: the same email in two tenants', async () => {
    const c = (await codeFlow(contoso, { login_hint: 'carol@contoso.test' })).claims();
    assert.equal(c.name, 'Carol Lee', 'a tenant endpoint signs its own user in');
    const impostor = state.microsoft.users.find((u) => u.name === 'Carol Impostor');
    await multiTenantFlow(ready, 'organizations', 'carol@contoso.test', FABRIKAM, impostor.id, 'Carol Impostor');
  });
  await check('Microsoft /common: personal account in the consumer tenant', async () => {
    await multiTenantFlow(ready, 'common', 'frank@outlook.test', CONSUMER);
  });

  await check('Microsoft user suspended: invalid_grant, userinfo refused, reinstating brings nothing back', async () => {
    const ambiguous = await fetch(`${ready.admin}/microsoft/users/carol@contoso.test/suspend`, { method: 'POST' });
    assert.equal(ambiguous.status, 400, 'an address in two tenants names no one user');
    const carol = state.microsoft.users.find((u) => u.name === 'Carol Lee');
    await admin(ready, 'POST', `microsoft/users/${carol.id}/suspend`);
    assert.equal((await refused(client.refreshTokenGrant(contoso, state.carol.refresh))).error, 'invalid_grant');
    assert.equal((await refused(client.fetchUserInfo(contoso, state.carol.access, state.carol.sub))).status, 401);
    await admin(ready, 'POST', `microsoft/users/${carol.id}/reinstate`);
    assert.equal((await refused(client.refreshTokenGrant(contoso, state.carol.refresh))).error, 'invalid_grant');
  });

  await check('Microsoft outage and runtime users', async () => {
    await admin(ready, 'POST', 'microsoft/outage', {});
    const err = await refused(codeFlow(contoso, { login_hint: 'carol@contoso.test' }));
    assert.equal(err.status, 503, String(err));
    await admin(ready, 'DELETE', 'microsoft/outage');
    const added = await admin(ready, 'POST', 'microsoft/users', [{ tid: FABRIKAM, email: 'gina@fabrikam.test' }, { tid: FABRIKAM, email: 'hal@fabrikam.test' }]);
    assert.equal(added.length, 2);
    const fabrikam = await discover(`${authority}/${FABRIKAM}/v2.0`, 'ms-client', 'ms-secret');
    assert.equal((await codeFlow(fabrikam, { login_hint: 'gina@fabrikam.test' })).claims().email, 'gina@fabrikam.test');
  });
}

/**
 * The multi-tenant endpoints publish a template issuer, which openid-client (rightly) refuses,
 * so this flow is done by hand, as a relying party that checks `iss` against `tid` must.
 */
async function multiTenantFlow(ready, segment, email, homeTid, choose, chooseName) {
  const meta = await (await fetch(`${ready.microsoft_authority}/${segment}/v2.0/.well-known/openid-configuration`)).json();
  const verifier = client.randomPKCECodeVerifier();
  const auth = new URL(meta.authorization_endpoint);
  Object.entries({
    client_id: 'ms-client', redirect_uri: REDIRECT, response_type: 'code', scope: 'openid email profile offline_access',
    ...(email ? { login_hint: email } : {}), state: 'st', nonce: 'nn', code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  }).forEach(([k, v]) => auth.searchParams.set(k, v));
  const cb = await browse(auth, { choose });
  const token = async (form) => (await fetch(meta.token_endpoint, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from('ms-client:ms-secret').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  })).json();
  const t = await token({ grant_type: 'authorization_code', code: cb.searchParams.get('code'), redirect_uri: REDIRECT, code_verifier: verifier });
  const { payload } = await jwtVerify(t.id_token, createRemoteJWKSet(new URL(meta.jwks_uri)), { audience: 'ms-client' });
  assert.equal(payload.tid, homeTid);
  if (chooseName) assert.equal(payload.name, chooseName);
  assert.equal(payload.iss, meta.issuer.replace('{tenantid}', homeTid));
  assert.equal(payload.nonce, 'nn');
  const r = await token({ grant_type: 'refresh_token', refresh_token: t.refresh_token });
  assert.equal(decodeJwt(r.id_token).tid, homeTid);
}

async function main() {
  const { child, ready } = await startEmulator();
  try {
    const state = await admin(ready, 'GET', 'state');
    await googleChecks(ready, state);
    await riscChecks(ready);
    await microsoftDiscoveryChecks(ready);
    await microsoftChecks(ready, state);
  } finally {
    child.stdin.end(); // the emulator stops when its stdin pipe closes
  }
  await once(child, 'exit');
  console.log(`all ${checks.length} checks passed`);
}

main().catch((err) => {
  console.error('FAILED:', err);
  process.exit(1);
});

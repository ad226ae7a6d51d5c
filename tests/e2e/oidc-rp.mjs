// A relying party written by others (openid-client, current major) signs a user in through
// Latchkey's real pages in headless Chromium: discovery → authorization code with PKCE →
// sign-in → code exchange with ID token validation → userinfo → refresh → revocation.
// Started by the Rust test `e2e::openid_client_relying_party`, which registers the client and
// passes LATCHKEY_URL, CLIENT_ID, CLIENT_SECRET, CALLBACK_PORT, USER_EMAIL and USER_PASSWORD.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as client from 'openid-client';
import { chromium } from 'playwright-core';

const env = (name) => { const v = process.env[name]; assert.ok(v, `${name} must be set`); return v; };
const base = env('LATCHKEY_URL');
const callbackPort = Number(env('CALLBACK_PORT'));
const redirectUri = `http://127.0.0.1:${callbackPort}/callback`;
const shots = process.env.SCREENSHOT_DIR || new URL('./screenshots/', import.meta.url).pathname;
mkdirSync(shots, { recursive: true });

/** Serves the redirect URI and resolves with the first callback URL it receives. */
function callbackServer() {
  let resolve;
  const received = new Promise((r) => { resolve = r; });
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('signed in');
    resolve(new URL(req.url, redirectUri));
  });
  return new Promise((ready) => server.listen(callbackPort, '127.0.0.1', () => ready({ server, received })));
}

test('openid-client signs in through Latchkey', async () => {
  // client_secret_basic is the registered (and OIDC's default) token endpoint auth method.
  const config = await client.discovery(new URL(base), env('CLIENT_ID'), undefined, client.ClientSecretBasic(env('CLIENT_SECRET')), {
    execute: [client.allowInsecureRequests],
  });
  assert.equal(config.serverMetadata().issuer, base);

  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid email profile offline_access',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    nonce,
    prompt: 'consent',
  });

  const { server, received } = await callbackServer();
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  let callback;
  try {
    const page = await (await browser.newContext()).newPage();
    await page.goto(authUrl.href);
    await page.waitForURL(/\/sign-in/);
    await page.getByLabel('Email address').fill(env('USER_EMAIL'));
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByLabel('Password', { exact: true }).fill(env('USER_PASSWORD'));
    await page.getByRole('button', { name: 'Sign in' }).click();
    // A third-party client asks for consent; a first-party one goes straight back.
    const consent = page.getByRole('button', { name: /^(Allow|Continue|Accept)/ });
    const first = await Promise.race([
      received.then(() => 'callback'),
      consent.first().waitFor({ timeout: 15000 }).then(() => 'consent'),
    ]);
    if (first === 'consent') {
      await page.screenshot({ path: join(shots, 'consent.png'), fullPage: true });
      await consent.first().click();
    }
    callback = await received;
  } catch (e) {
    for (const ctx of browser.contexts()) for (const p of ctx.pages()) {
      await p.screenshot({ path: join(shots, 'oidc-failure.png'), fullPage: true }).catch(() => {});
      console.error(`page: ${p.url()}`);
    }
    throw e;
  } finally {
    await browser.close();
    server.close();
  }

  assert.equal(callback.searchParams.get('iss'), base, 'RFC 9207 iss on the authorization response');
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  assert.equal(claims.iss, base);
  assert.equal(claims.aud, env('CLIENT_ID'));
  assert.equal(claims.email, env('USER_EMAIL'));
  assert.ok(tokens.refresh_token, 'offline_access gives a refresh token');

  const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  assert.equal(info.sub, claims.sub);
  assert.equal(info.email, env('USER_EMAIL'));

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(refreshed.access_token && refreshed.refresh_token);
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'refresh tokens rotate');
  assert.equal(refreshed.claims()?.sub ?? claims.sub, claims.sub);

  const introspection = await client.tokenIntrospection(config, refreshed.access_token);
  assert.equal(introspection.active, true);

  await client.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
  await assert.rejects(client.refreshTokenGrant(config, refreshed.refresh_token), (e) => {
    assert.equal(e.error, 'invalid_grant');
    return true;
  });
  // Reusing the rotated-away token is refused too.
  await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token), (e) => e.error === 'invalid_grant');
});

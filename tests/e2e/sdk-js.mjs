// The JavaScript SDK in headless Chromium: the plain page of docs/examples/html-page, served
// here from another loopback port, loads Latchkey's /v1/sdk/latchkey.js and calls the Express
// example API (docs/examples/express-api, started here). Started by the Rust test
// `sdk_js::browser_module_components_and_express_example_in_chromium`, which provides the
// server, the user (in two organisations), two sessions, and CLOCK_DIR: write `req-<n>` with
// {"advance": seconds} or {"revoke": session id}, wait for `ack-<n>` ({"now": server time}).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { createVerifier } from '../../sdk/js/src/verify.js';

const env = process.env;
const base = env.LATCHKEY_URL;
for (const k of ['LATCHKEY_URL', 'PAGE_PORT', 'API_PORT', 'USER_ID', 'USER_EMAIL', 'USER_PASSWORD', 'GLOBEX_ID',
  'SESSION_A_ID', 'SESSION_A_SECRET', 'SESSION_C_SECRET', 'CLOCK_DIR']) {
  assert.ok(env[k], `${k} must be set`);
}
const shots = env.SCREENSHOT_DIR || new URL('./screenshots/', import.meta.url).pathname;
mkdirSync(shots, { recursive: true });
const repo = new URL('../../', import.meta.url).pathname;
const pageOrigin = `http://127.0.0.1:${env.PAGE_PORT}`;
const apiUrl = `http://127.0.0.1:${env.API_PORT}`;
const pageUrl = `${pageOrigin}/?issuer=${encodeURIComponent(base)}&api=${encodeURIComponent(apiUrl)}`;

let browser;
let pageServer;
let api;
let apiLog = '';

/** Polls `predicate` in the page (real time: the page's own timers may be fake). */
async function until(page, predicate, arg, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await page.evaluate(predicate, arg)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let clockSeq = 0;
/** Asks the Rust side to move the server clock or revoke a session; resolves to its time. */
async function server(cmd) {
  clockSeq += 1;
  const tmp = join(env.CLOCK_DIR, `req-${clockSeq}.tmp`);
  writeFileSync(tmp, JSON.stringify(cmd));
  renameSync(tmp, join(env.CLOCK_DIR, `req-${clockSeq}`));
  const ack = join(env.CLOCK_DIR, `ack-${clockSeq}`);
  const deadline = Date.now() + 10_000;
  while (!existsSync(ack)) {
    if (Date.now() > deadline) throw new Error(`no answer to ${JSON.stringify(cmd)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return JSON.parse(readFileSync(ack, 'utf8'));
}

async function contextWithSession(secret) {
  const context = await browser.newContext();
  await context.addCookies([{ name: 'latchkey_session', value: secret, url: base }]);
  return context;
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `sdk-js-${name}.png`), fullPage: true }).catch(() => {});
}

before(async () => {
  // The example page, as a static file from its own origin.
  const html = readFileSync(join(repo, 'docs/examples/html-page/index.html'));
  pageServer = createServer((req, res) => {
    if (req.url === '/' || req.url.startsWith('/?')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(html);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => pageServer.listen(Number(env.PAGE_PORT), '127.0.0.1', r));

  // The example API, as its README runs it.
  api = spawn(process.execPath, ['server.js'], {
    cwd: join(repo, 'docs/examples/express-api'),
    env: { ...process.env, LATCHKEY_ISSUER: base, PAGE_ORIGIN: pageOrigin, PORT: env.API_PORT },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise((resolve, reject) => {
    const onData = (d) => {
      apiLog += d;
      if (apiLog.includes('listening')) resolve();
    };
    api.stdout.on('data', onData);
    api.stderr.on('data', (d) => { apiLog += d; });
    api.on('exit', (code) => reject(new Error(`the example API exited (${code}):\n${apiLog}`)));
  });

  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  api?.kill();
  await new Promise((r) => (pageServer ? pageServer.close(r) : r()));
});

test('the Express example accepts the page\'s token and refuses calls without one or with a bad one', async () => {
  const context = await contextWithSession(env.SESSION_C_SECRET);
  const page = await context.newPage();
  try {
    await page.goto(pageUrl);
    await until(page, () => document.body.dataset.state === 'signed-in', null, 'the page to be signed in');
    await page.getByRole('button', { name: 'Call GET /api/me' }).click();
    await until(page, () => document.getElementById('output').dataset.status, null, 'the API call');
    const [status, ...json] = (await page.locator('#output').textContent()).split('\n');
    assert.equal(status, '200');
    const claims = JSON.parse(json.join('\n'));
    assert.equal(claims.sub, env.USER_ID);
    assert.equal(claims.azp, pageOrigin);
    assert.equal(claims.iss, base);

    // From the page: no token, a malformed one, a forged one.
    const call = (authorization) => page.evaluate(async ([url, authorization]) => {
      const res = await fetch(url, { headers: authorization ? { authorization } : {} });
      return { status: res.status, challenge: res.headers.get('www-authenticate') };
    }, [`${apiUrl}/api/me`, authorization]);
    assert.deepEqual(await call(null), { status: 401, challenge: 'Bearer realm="example-api"' });
    let refused = await call('Bearer abc.def.ghi');
    assert.equal(refused.status, 401);
    assert.match(refused.challenge, /^Bearer realm="example-api", error="invalid_token"/);
    const good = await page.evaluate(() => window.latchkey.getToken());
    const [h, p, s] = good.split('.');
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: 'usr_someone_else' })).toString('base64url');
    refused = await call(`Bearer ${h}.${forged}.${s}`);
    assert.equal(refused.status, 401);
    assert.match(refused.challenge, /error="invalid_token"/);
    assert.equal((await call(`Bearer ${good}`)).status, 200);

    // A genuine token minted for another party (Latchkey's own origin) is refused too.
    const res = await fetch(`${base}/v1/session/token`, {
      method: 'POST',
      headers: { cookie: `latchkey_session=${env.SESSION_C_SECRET}`, 'x-latchkey-csrf': '1' },
    });
    assert.equal(res.status, 200);
    const other = (await res.json()).jwt;
    const direct = await fetch(`${apiUrl}/api/me`, { headers: { authorization: `Bearer ${other}` } });
    assert.equal(direct.status, 401);
    assert.match(direct.headers.get('www-authenticate'), /error="invalid_token", error_description="the token was issued to another party"/);
  } catch (e) {
    await shot(page, 'express');
    throw e;
  } finally {
    await context.close();
  }
});

test('the user button shows the signed-in user, switches organisation and signs out', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await page.goto(pageUrl);
    await until(page, () => document.body.dataset.state === 'signed-out', null, 'the signed-out state');
    assert.equal(await page.locator('latchkey-user-button').isHidden(), true);

    // Sign in through the hosted pages and come back.
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => u.href.startsWith(`${base}/sign-in`));
    assert.equal(new URL(page.url()).searchParams.get('return_to'), pageUrl);
    await page.getByLabel('Email address').fill(env.USER_EMAIL);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByLabel('Password', { exact: true }).fill(env.USER_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => u.href === pageUrl);
    await until(page, () => document.body.dataset.state === 'signed-in', null, 'the signed-in state');
    assert.equal(await page.locator('latchkey-sign-in-button').isHidden(), true);

    // The user's initials and name.
    const trigger = page.getByRole('button', { name: 'Account menu for Ada Lovelace' });
    await trigger.waitFor();
    assert.match(await trigger.textContent(), /AL\s+Ada Lovelace/);
    assert.equal(await trigger.getAttribute('aria-expanded'), 'false');

    // Keyboard: ArrowDown opens the menu on its first item, Escape closes it and returns focus.
    await trigger.focus();
    await page.keyboard.press('ArrowDown');
    const menu = page.getByRole('menu', { name: 'Account' });
    await menu.waitFor();
    assert.equal(await trigger.getAttribute('aria-expanded'), 'true');
    const manage = page.getByRole('menuitem', { name: 'Manage account' });
    assert.equal(await manage.getAttribute('href'), `${base}/account`);
    assert.equal(await manage.evaluate((el) => el.getRootNode().activeElement === el), true);
    await page.keyboard.press('ArrowDown');
    assert.equal(await page.getByRole('menuitemradio', { name: 'Personal account' })
      .evaluate((el) => el.getRootNode().activeElement === el), true);
    await page.keyboard.press('Escape');
    await menu.waitFor({ state: 'hidden' });
    assert.equal(await trigger.evaluate((el) => el.getRootNode().activeElement === el), true);

    // The organisation switcher, from the keyboard (Enter opens the menu too) and with the
    // mouse: the next token carries the organisation.
    assert.equal(await page.evaluate(() => window.latchkey.claims.org_id ?? null), null);
    await page.keyboard.press('Enter');
    await menu.waitFor();
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    const acme = page.getByRole('menuitemradio', { name: 'Acme' });
    assert.equal(await acme.evaluate((el) => el.getRootNode().activeElement === el), true);
    await page.keyboard.press('Enter');
    await until(page, () => window.latchkey.claims?.org_slug === 'acme', null, 'a token for Acme');
    await trigger.click();
    await page.getByRole('menuitemradio', { name: 'Globex' }).click();
    await until(page, (id) => window.latchkey.claims?.org_id === id, env.GLOBEX_ID, 'a token for Globex');
    const claims = await page.evaluate(async () => {
      const jwt = await window.latchkey.getToken();
      return JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    });
    assert.equal(claims.org_slug, 'globex');
    await trigger.click();
    const globex = page.getByRole('menuitemradio', { name: 'Globex' });
    await globex.waitFor();
    assert.equal(await globex.getAttribute('aria-checked'), 'true');
    assert.equal(await page.getByRole('menuitemradio', { name: 'Acme' }).getAttribute('aria-checked'), 'false');
    await shot(page, 'user-menu');

    // Sign out: the page says so, and the next token request fails.
    await page.getByRole('menuitem', { name: 'Sign out' }).click();
    await until(page, () => document.body.dataset.state === 'signed-out', null, 'the signed-out state');
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    assert.equal(await page.locator('#status').textContent(), 'Your session ended. Sign in again to continue.');
    const status = await page.evaluate(async (issuer) =>
      (await fetch(`${issuer}/v1/session/token`, { method: 'POST', credentials: 'include' })).status, base);
    assert.equal(status, 401);
    await page.reload();
    await until(page, () => document.body.dataset.state === 'signed-out', null, 'signed out after a reload');
  } catch (e) {
    await shot(page, 'user-button');
    throw e;
  } finally {
    await context.close();
  }
});

test('the browser module keeps the session alive across token lifetimes and reports its revocation within one', async () => {
  const context = await contextWithSession(env.SESSION_A_SECRET);
  const page = await context.newPage();
  // The page's timers and Date run on a fake clock that we move along with the server's.
  await page.clock.install();
  try {
    await page.goto(pageUrl);
    await until(page, () => document.body.dataset.state === 'signed-in', null, 'the signed-in state');
    await page.evaluate(() => {
      window.__tokens = [];
      window.__signedOut = 0;
      window.latchkey.onToken((t) => window.__tokens.push(t));
      window.latchkey.onSignedOut(() => { window.__signedOut += 1; });
    });
    const first = await page.evaluate(() => window.latchkey.getToken());
    const jwt = JSON.parse(Buffer.from(first.split('.')[1], 'base64url'));
    assert.equal(jwt.exp - jwt.iat, 60, 'session tokens live a minute');

    // Five refreshes, 50 s apart on both clocks: 250 s, four lifetimes and more.
    let serverNow;
    for (let round = 1; round <= 5; round += 1) {
      ({ now: serverNow } = await server({ advance: 50 }));
      const seen = await page.evaluate(() => window.__tokens.length);
      await page.clock.runFor(50_000);
      await until(page, (n) => window.__tokens.length > n, seen, `refresh ${round}`);
      const token = await page.evaluate(() => window.__tokens.at(-1));
      // Minted after the clock moved, and valid at the server's time now, for this page.
      const movedAt = serverNow;
      ({ now: serverNow } = await server({ advance: 0 }));
      const verifier = createVerifier({ issuer: base, authorizedParties: [pageOrigin], currentTime: () => serverNow, clockSkew: 0 });
      const claims = await verifier.verify(token);
      assert.ok(claims.iat >= movedAt, `round ${round}: minted at ${claims.iat}, the clock moved at ${movedAt}`);
      assert.equal(claims.sid, env.SESSION_A_ID);
      // getToken() hands out the fresh token without another request.
      assert.equal(await page.evaluate(() => window.latchkey.getToken()), token);
    }
    const atServerNow = createVerifier({ issuer: base, authorizedParties: [pageOrigin], currentTime: () => serverNow, clockSkew: 0 });
    await assert.rejects(atServerNow.verify(first), /expired/, 'the first token is long expired');

    // Focus after a while asks for a new token at once.
    await page.clock.runFor(10_000);
    const before = await page.evaluate(() => window.__tokens.length);
    await page.evaluate(() => window.dispatchEvent(new Event('focus')));
    await until(page, (n) => window.__tokens.length > n, before, 'a refresh on focus');

    // Revoked server-side: the page learns it by the next refresh, within one lifetime.
    await server({ revoke: env.SESSION_A_ID });
    assert.equal(await page.evaluate(() => window.__signedOut), 0);
    await server({ advance: 50 });
    await page.clock.runFor(50_000);
    await until(page, () => window.__signedOut === 1, null, 'onSignedOut');
    assert.equal(await page.evaluate(() => window.latchkey.state), 'signed-out');
    assert.equal(await page.evaluate(() => window.latchkey.getToken()), null);
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
  } catch (e) {
    await shot(page, 'keep-alive');
    throw e;
  } finally {
    await context.close();
  }
});

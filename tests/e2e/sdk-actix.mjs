// The plain page of docs/examples/html-page in headless Chromium, served here from its own
// loopback port, calling the actix example API (docs/examples/actix-api, protected by the Rust
// crate latchkey-verify) with the session token the browser module gets from Latchkey. Started
// by the Rust test `verify_sdk::the_html_page_calls_the_actix_example_in_chromium`, which
// provides Latchkey, the API, the user and a session.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = process.env;
for (const k of ['LATCHKEY_URL', 'PAGE_PORT', 'API_URL', 'USER_ID', 'SESSION_SECRET']) {
  assert.ok(env[k], `${k} must be set`);
}
const base = env.LATCHKEY_URL;
const apiUrl = env.API_URL;
const shots = env.SCREENSHOT_DIR || new URL('./screenshots/', import.meta.url).pathname;
mkdirSync(shots, { recursive: true });
const repo = new URL('../../', import.meta.url).pathname;
const pageOrigin = `http://127.0.0.1:${env.PAGE_PORT}`;
const pageUrl = `${pageOrigin}/?issuer=${encodeURIComponent(base)}&api=${encodeURIComponent(apiUrl)}`;

let browser;
let pageServer;

/** Polls `predicate` in the page. */
async function until(page, predicate, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await page.evaluate(predicate)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
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
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await new Promise((r) => (pageServer ? pageServer.close(r) : r()));
});

test('the actix example accepts the page\'s token and refuses calls without one or with a bad one', async () => {
  const context = await browser.newContext();
  await context.addCookies([{ name: 'latchkey_session', value: env.SESSION_SECRET, url: base }]);
  const page = await context.newPage();
  try {
    await page.goto(pageUrl);
    await until(page, () => document.body.dataset.state === 'signed-in', 'the page to be signed in');
    await page.getByRole('button', { name: 'Call GET /api/me' }).click();
    await until(page, () => document.getElementById('output').dataset.status, 'the API call');
    const [status, ...json] = (await page.locator('#output').textContent()).split('\n');
    assert.equal(status, '200');
    const claims = JSON.parse(json.join('\n'));
    assert.equal(claims.sub, env.USER_ID);
    assert.equal(claims.azp, pageOrigin);
    assert.equal(claims.iss, base);
    assert.equal(claims.token_type, 'session');

    // From the page (cross-origin, so through the example's CORS): no token, a malformed one,
    // a forged one, the real one.
    const call = (authorization) => page.evaluate(async ([url, authorization]) => {
      const res = await fetch(url, { headers: authorization ? { authorization } : {} });
      return { status: res.status, challenge: res.headers.get('www-authenticate') };
    }, [`${apiUrl}/api/me`, authorization]);
    const anonymous = await call(null);
    assert.equal(anonymous.status, 401);
    let refused = await call('Bearer abc.def.ghi');
    assert.equal(refused.status, 401);
    const good = await page.evaluate(() => window.latchkey.getToken());
    const [h, p, s] = good.split('.');
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: 'usr_someone_else' })).toString('base64url');
    refused = await call(`Bearer ${h}.${forged}.${s}`);
    assert.equal(refused.status, 401);
    assert.equal((await call(`Bearer ${good}`)).status, 200);

    // The challenge itself, read outside the browser (CORS does not expose WWW-Authenticate).
    const direct = await fetch(`${apiUrl}/api/me`);
    assert.equal(direct.headers.get('www-authenticate'), 'Bearer realm="actix-api"');
    const bad = await fetch(`${apiUrl}/api/me`, { headers: { authorization: `Bearer ${h}.${forged}.${s}` } });
    assert.match(bad.headers.get('www-authenticate'), /^Bearer realm="actix-api", error="invalid_token"/);
  } catch (e) {
    await page.screenshot({ path: join(shots, 'sdk-actix.png'), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
});

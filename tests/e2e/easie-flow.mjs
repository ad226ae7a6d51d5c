// Google / Microsoft sign-in and EASIE end to end (issue 12) in headless Chromium: Latchkey's
// hosted pages, the upstream emulator (tests/upstream-idp, oidc-provider) as Google and
// Microsoft, and the CLI for enrollment.
//
// Contract with the Rust test that starts this script (`node --test tests/e2e/easie-flow.mjs`):
//   LATCHKEY_URL       the running server's base URL (its public_url).
//   LATCHKEY_BIN       the `latchkey` binary.
//   LATCHKEY_ENV_JSON  the environment the CLI needs to act on the server's store (with the
//                      LATCHKEY_GOOGLE_* / LATCHKEY_MICROSOFT_* settings pointing at the emulator).
//   UPSTREAM_ADMIN     the emulator's admin URL; its users are those of the Rust test's config.
//   APP_URL            an app on the `openidconnect` crate (tests/integration/chain_app.rs):
//                      `/login` starts its code flow at Latchkey, `/callback` shows who signed in.
//   SCREENSHOT_DIR     optional: where failure screenshots go.
// Every test signs in from a fresh browser context.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => { const v = process.env[name]; assert.ok(v, `${name} must be set`); return v; };
const base = env('LATCHKEY_URL').replace(/\/$/, '');
const latchkeyBin = env('LATCHKEY_BIN');
const latchkeyEnv = JSON.parse(env('LATCHKEY_ENV_JSON'));
const admin = env('UPSTREAM_ADMIN');
const appUrl = env('APP_URL').replace(/\/$/, '');
const shots = process.env.SCREENSHOT_DIR || new URL('./screenshots/', import.meta.url).pathname;
mkdirSync(shots, { recursive: true });
const cliCwd = mkdtempSync(join(tmpdir(), 'latchkey-easie-e2e-'));

function cli(...args) {
  const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LATCHKEY_')));
  Object.assign(childEnv, latchkeyEnv, { NO_COLOR: '1' });
  const out = spawnSync(latchkeyBin, [...args, '--json'], { cwd: cliCwd, env: childEnv, encoding: 'utf8', timeout: 60000 });
  if (out.status !== 0) throw new Error(`latchkey ${args.join(' ')} exited ${out.status}:\n${out.stderr}\n${out.stdout}`);
  return JSON.parse(out.stdout);
}

let browser;
before(async () => {
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
});
after(async () => { await browser?.close(); });

/** Runs `body(page)` in a fresh context; a screenshot is kept when it fails. */
async function inBrowser(name, body) {
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await body(page);
  } catch (e) {
    await page.screenshot({ path: join(shots, `easie-${name}.png`), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
}

async function me(page) {
  const res = await page.request.get(`${base}/v1/me`);
  assert.equal(res.status(), 200, `GET /v1/me: ${res.status()}`);
  return res.json();
}

/** Identifier-first: the address on the hosted sign-in page decides where the browser goes. */
async function identify(page, email) {
  await page.goto(`${base}/sign-in?return_to=/account`);
  await page.getByLabel('Email address').fill(email);
  await page.getByRole('button', { name: 'Continue' }).click();
}

let acme;
let contoso;
before(() => {
  const org = cli('orgs', 'create', '--name', 'Acme');
  const orgId = org.id ?? org.org_id;
  for (const domain of ['acme.test', 'contoso.test']) cli('orgs', 'domains', 'add', orgId, domain, '--verified');
  acme = cli('connections', 'add-easie', '--org', orgId, '--provider', 'google', '--domain', 'acme.test');
  // The tenant is found from the domain, through the emulator's per-domain discovery.
  contoso = cli('connections', 'add-easie', '--org', orgId, '--provider', 'microsoft', '--domain', 'contoso.test');
  acme.org_id = orgId;
});

test('enrollment pins the provider and, for Microsoft, the tenant that owns the domain', () => {
  assert.equal(acme.provider, 'google');
  assert.equal(acme.tenant_id ?? null, null);
  assert.equal(contoso.provider, 'microsoft');
  assert.equal(contoso.tenant_id, '11111111-1111-4111-8111-111111111111');
  const listed = cli('connections', 'list').map((c) => c.connection_id);
  assert.ok(listed.includes(acme.connection_id) && listed.includes(contoso.connection_id));
});

test('social sign-up with "Continue with Google" creates an account', () => inBrowser('social', async (page) => {
  await page.goto(`${base}/sign-up?return_to=/account`);
  await page.getByRole('link', { name: 'Continue with Google' }).click();
  // The emulator's account chooser (no login_hint from a button).
  await page.click('button[data-email="bob@gmail.test"]');
  await page.waitForURL(`${base}/account`);
  const who = await me(page);
  assert.equal(who.email, 'bob@gmail.test');
  assert.equal(who.email_verified, true);
  assert.deepEqual(who.memberships, []);
  // Signing in again later from another browser is the same account.
  const id = who.id;
  await page.context().clearCookies();
  await page.goto(`${base}/sign-in?return_to=/account`);
  await page.getByRole('link', { name: 'Continue with Google' }).click();
  await page.click('button[data-email="bob@gmail.test"]');
  await page.waitForURL(`${base}/account`);
  assert.equal((await me(page)).id, id);
}));

test('a Workspace member of an enrolled domain is sent to Google and provisioned just in time', () => inBrowser('google', async (page) => {
  await identify(page, 'alice@acme.test');
  await page.waitForURL(`${base}/account`);
  const who = await me(page);
  assert.equal(who.email, 'alice@acme.test');
  assert.deepEqual(who.memberships.map((m) => m.org_id), [acme.org_id]);
  assert.equal(who.connection_id, acme.connection_id);
}));

test('an Entra member of an enrolled domain is sent to the pinned tenant', () => inBrowser('microsoft', async (page) => {
  await identify(page, 'carol@contoso.test');
  await page.waitForURL(`${base}/account`);
  const who = await me(page);
  assert.equal(who.email, 'carol@contoso.test');
  assert.equal(who.connection_id, contoso.connection_id);
}));

// The chain: the app → Latchkey's authorization endpoint → its sign-in page → the enterprise's
// provider → Latchkey → the app, whose crate verified the ID token before showing this page.
for (const [provider, email] of [['google', 'frank@acme.test'], ['microsoft', 'dave@contoso.test']]) {
  test(`an app signs ${email} in through Latchkey and ${provider}`, () => inBrowser(`chain-${provider}`, async (page) => {
    await page.goto(`${appUrl}/login`);
    await page.waitForURL((u) => u.href.startsWith(`${base}/sign-in`));
    await page.getByLabel('Email address').fill(email);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL((u) => u.href.startsWith(`${appUrl}/callback`));
    assert.equal(await page.locator('#email').textContent(), email);
    assert.equal(await page.locator('#amr').textContent(), 'fed');
    // Latchkey's own session came from the same sign-in: the enterprise membership is there.
    const who = await me(page);
    assert.equal(who.email, email);
    assert.equal(who.connection_id, (provider === 'google' ? acme : contoso).connection_id);
  }));
}

test('password sign-up is refused for an enrolled address', () => inBrowser('signup-refused', async (page) => {
  await page.goto(`${base}/sign-up`);
  await page.getByLabel('Email address').fill('dora@acme.test');
  await page.getByLabel('Password').fill('a long enough password for tests');
  await page.getByRole('button', { name: 'Continue' }).click();
  await assert.doesNotReject(page.getByText(/identity provider/i).first().waitFor({ timeout: 10000 }));
}));

test('a consumer Google account on the enrolled domain is refused with a reference', () => inBrowser('consumer', async (page) => {
  await page.goto(`${base}/oauth/start/google?login_hint=mallory%40acme.test`);
  await page.getByText(/reference: ref_/).waitFor({ timeout: 10000 });
  const res = await page.request.get(`${base}/v1/me`);
  assert.equal(res.status(), 401);
}));

test('a suspended upstream account cannot sign in again', () => inBrowser('suspended', async (page) => {
  const res = await fetch(`${admin}/google/users/${encodeURIComponent('erin@acme.test')}/suspend`, { method: 'POST' });
  assert.equal(res.status, 200);
  await identify(page, 'erin@acme.test');
  await page.getByText(/could not be completed/i).waitFor({ timeout: 10000 });
  assert.equal((await page.request.get(`${base}/v1/me`)).status(), 401);
}));

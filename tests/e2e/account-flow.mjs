// End-to-end through the real pages in headless Chromium: sign up with the code mailed to a
// real SMTP server, sign in from a second browser, then sign that browser out from the first
// and watch it lose access. Started by the Rust test `e2e::account_flow_in_chromium`, which
// provides LATCHKEY_URL (the running server) and MAILDIR (where the SMTP server stores mail).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.LATCHKEY_URL;
const maildir = process.env.MAILDIR;
const shots = process.env.SCREENSHOT_DIR || new URL('./screenshots/', import.meta.url).pathname;
assert.ok(base && maildir, 'LATCHKEY_URL and MAILDIR must be set');
mkdirSync(shots, { recursive: true });

const email = `grace.${Date.now()}@example.com`;
const password = 'quartz violin ember lantern';

/** Decodes the text/plain part of a raw MIME message (quoted-printable, base64 or plain). */
function textPart(raw) {
  const boundary = /boundary="?([^";\r\n]+)"?/i.exec(raw)?.[1];
  const parts = boundary ? raw.split(`--${boundary}`) : [raw];
  for (const part of parts) {
    if (!/content-type:\s*text\/plain/i.test(part)) continue;
    const [head, ...rest] = part.split(/\r?\n\r?\n/);
    const body = rest.join('\n\n');
    const encoding = /content-transfer-encoding:\s*([\w-]+)/i.exec(head)?.[1]?.toLowerCase();
    if (encoding === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
    if (encoding === 'quoted-printable') {
      return body.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16)));
    }
    return body;
  }
  return raw;
}

/** Waits for a mail to `to` in the maildir and returns its decoded text part. */
async function waitForMail(to, timeoutMs = 30000) {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    for (const dir of ['new', 'cur']) {
      let files = [];
      try { files = readdirSync(join(maildir, dir)); } catch { continue; }
      for (const f of files) {
        const raw = readFileSync(join(maildir, dir, f), 'utf8');
        if (raw.toLowerCase().includes(`to: ${to}`) || raw.toLowerCase().includes(`<${to}>`)) return textPart(raw);
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no mail to ${to} within ${timeoutMs} ms`);
}

async function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

test('sign up, sign in elsewhere, sign that session out', async () => {
  const browser = await launch();
  try {
    // Browser context A: sign up.
    const a = await browser.newContext();
    const pageA = await a.newPage();
    const cspViolations = [];
    pageA.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });
    await pageA.goto(`${base}/sign-up`);
    await pageA.getByLabel('Email address').fill(email);
    await pageA.getByLabel('Password', { exact: true }).fill(password);
    await pageA.getByRole('button', { name: 'Continue' }).click();
    await pageA.waitForURL(/\/sign-up\/verify/);
    await pageA.getByRole('heading', { name: 'Check your email' }).waitFor();
    await pageA.screenshot({ path: join(shots, 'sign-up-verify.png'), fullPage: true });

    const mail = await waitForMail(email);
    const code = /\b(\d{6})\b/.exec(mail)?.[1];
    assert.ok(code, `no code in mail: ${mail}`);
    assert.match(mail, /Latchkey/);
    await pageA.getByLabel('Verification code').fill(code);
    await pageA.getByRole('button', { name: 'Verify and continue' }).click();
    await pageA.waitForURL(/\/account$/);
    assert.equal(await pageA.locator('#account-email').textContent(), email);

    // Browser context B: sign in through the identifier-first pages.
    const b = await browser.newContext();
    const pageB = await b.newPage();
    await pageB.goto(`${base}/account`);
    await pageB.waitForURL(/\/sign-in/);
    await pageB.getByLabel('Email address').fill(email);
    await pageB.getByRole('button', { name: 'Continue' }).click();
    await pageB.getByLabel('Password', { exact: true }).fill(password);
    await pageB.getByRole('button', { name: 'Sign in' }).click();
    await pageB.waitForURL(/\/account$/);
    await pageB.screenshot({ path: join(shots, 'account.png'), fullPage: true });

    // A sees both sessions and signs B out.
    await pageA.reload();
    const rows = pageA.locator('tbody tr');
    assert.equal(await rows.count(), 2);
    await pageA.screenshot({ path: join(shots, 'account-two-sessions.png'), fullPage: true });
    const other = rows.filter({ hasNot: pageA.getByText('This device') });
    await other.getByRole('button', { name: /Sign out/ }).click();
    await pageA.waitForURL(/notice=session_revoked/);
    await pageA.getByText('That session has been signed out.').waitFor();
    assert.equal(await pageA.locator('tbody tr').count(), 1);

    // B has lost access: its next page load goes back to sign-in, and so does its token request.
    await pageB.reload();
    await pageB.waitForURL(/\/sign-in/);
    const token = await b.request.post(`${base}/v1/session/token`, { headers: { 'X-Latchkey-CSRF': '1' } });
    assert.equal(token.status(), 401);
    const tokenA = await a.request.post(`${base}/v1/session/token`, { headers: { 'X-Latchkey-CSRF': '1' } });
    assert.equal(tokenA.status(), 200);

    // A still works, and signs out.
    await pageA.goto(`${base}/account`);
    await pageA.getByRole('button', { name: 'Sign out', exact: true }).click();
    await pageA.waitForURL(/\/sign-in\?signed_out=1/);
    await pageA.getByText('You have signed out.').waitFor();
    assert.deepEqual(cspViolations, []);
  } catch (e) {
    // Leave pictures of every open page for whoever reads the failure.
    let i = 0;
    for (const ctx of browser.contexts()) {
      for (const p of ctx.pages()) {
        await p.screenshot({ path: join(shots, `failure-${i++}.png`), fullPage: true }).catch(() => {});
        console.error(`page ${i - 1}: ${p.url()}`);
      }
    }
    throw e;
  } finally {
    await browser.close();
  }
});

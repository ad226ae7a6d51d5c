// The admin console in headless Chromium. An instance admin creates an organisation, verifies
// a domain, registers an application, finds a user among many, revokes their session,
// deactivates them, reads each action back in the audit log and deletes the application after
// confirming the password (the clock is moved past ten minutes by the Rust side on request);
// a form posted without the CSRF token is refused; an organisation admin cannot open another
// organisation. Started by `e2e::console_in_chromium`, which provides LATCHKEY_URL, the
// accounts, and CLOCK_DIR (write `advance` there, wait for `advanced`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.LATCHKEY_URL;
const shots = process.env.SCREENSHOT_DIR || new URL('./screenshots/', import.meta.url).pathname;
const { ADMIN_EMAIL, ORG_ADMIN_EMAIL, PASSWORD, TARGET_EMAIL, OTHER_ORG_ID, CLOCK_DIR } = process.env;
assert.ok(base && ADMIN_EMAIL && ORG_ADMIN_EMAIL && PASSWORD && TARGET_EMAIL && OTHER_ORG_ID && CLOCK_DIR);
mkdirSync(shots, { recursive: true });

async function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

async function signIn(page, email, path) {
  await page.goto(`${base}${path}`);
  await page.waitForURL(/\/sign-in/);
  await page.getByLabel('Email address').fill(email);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname.startsWith('/admin'));
}

async function advanceClock() {
  writeFileSync(join(CLOCK_DIR, 'advance'), '660');
  const started = Date.now();
  while (!existsSync(join(CLOCK_DIR, 'advanced'))) {
    if (Date.now() - started > 10000) throw new Error('the clock was not advanced');
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('an instance admin runs the instance from the console', async () => {
  const browser = await launch();
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const cspViolations = [];
    page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });
    await signIn(page, ADMIN_EMAIL, '/admin');
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    assert.ok(await page.locator('svg.chart').count() >= 2, 'the dashboard draws its charts');
    await page.screenshot({ path: join(shots, 'console-dashboard.png'), fullPage: true });

    // An organisation with a verified domain.
    await page.getByRole('link', { name: 'Organisations' }).click();
    await page.getByLabel('Name', { exact: true }).fill('Initech');
    await page.getByLabel('Slug', { exact: true }).fill('initech');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { name: 'Initech' }).waitFor();
    await page.getByLabel('Domain', { exact: true }).fill('initech.test');
    await page.getByRole('button', { name: 'Add domain' }).click();
    await page.getByRole('button', { name: 'Mark initech.test verified' }).click();
    await page.getByText('The domain is verified.').waitFor();
    await page.screenshot({ path: join(shots, 'console-organisation.png'), fullPage: true });
    const orgUrl = page.url();
    // The SAML wizard shows the values to paste into the IdP before anything else.
    await page.getByRole('link', { name: 'New SAML connection' }).click();
    await page.getByRole('heading', { name: /New SAML connection/ }).waitFor();
    assert.match(await page.locator('#sp-entity-id').textContent(), /\/saml\/con_/);
    await page.screenshot({ path: join(shots, 'console-saml-wizard.png'), fullPage: true });
    await page.goto(orgUrl);

    // An application: its secret is on the page that answers the registration, once.
    await page.getByRole('link', { name: 'Applications' }).click();
    await page.getByLabel('Name', { exact: true }).fill('Payroll');
    await page.getByLabel('Redirect URIs').fill('https://payroll.test/callback');
    await page.getByRole('button', { name: 'Register' }).click();
    const secret = (await page.locator('#client-secret').textContent()).trim();
    assert.ok(secret.length >= 32, `a secret is shown: ${secret}`);
    const appUrl = page.url();
    const clientId = (await page.locator('#client-id').textContent()).trim();
    await page.screenshot({ path: join(shots, 'console-application.png'), fullPage: true });
    await page.goto(`${base}/admin/applications/${clientId}`);
    assert.equal(await page.locator('#client-secret').count(), 0, 'the secret is never shown again');
    assert.ok(appUrl);

    // Find the user among many, revoke their session, deactivate them.
    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByLabel('Email, name (prefix) or user ID').fill(TARGET_EMAIL.slice(0, 6).toUpperCase());
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('link', { name: TARGET_EMAIL }).click();
    await page.getByRole('button', { name: /^Revoke session / }).first().click();
    await page.getByText('The session is revoked.').waitFor();
    await page.getByRole('button', { name: 'Deactivate' }).click();
    await page.getByText('The user is deactivated').waitFor();
    assert.match(await page.locator('#user-status').textContent(), /^deactivated/);
    await page.screenshot({ path: join(shots, 'console-user.png'), fullPage: true });

    // A form posted without its token changes nothing.
    const userUrl = page.url();
    const forged = await page.request.post(`${userUrl.split('?')[0]}/reactivate`, { form: { csrf_token: 'x'.repeat(43) } });
    assert.equal(forged.status(), 403);

    // Deleting the application after ten minutes asks for the password first.
    await advanceClock();
    await page.goto(`${base}/admin/applications/${clientId}`);
    await page.getByRole('button', { name: 'Delete application' }).click();
    await page.getByRole('heading', { name: 'Confirm it is you' }).waitFor();
    await page.screenshot({ path: join(shots, 'console-reauthenticate.png'), fullPage: true });
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.waitForURL(`${base}/admin/applications/${clientId}`);
    await page.getByRole('button', { name: 'Delete application' }).click();
    await page.waitForURL(`${base}/admin/applications`);

    await page.getByRole('link', { name: 'Keys & templates' }).click();
    await page.getByRole('heading', { name: 'Signing keys and JWT templates' }).waitFor();
    await page.screenshot({ path: join(shots, 'console-keys.png'), fullPage: true });

    // Each action, read back in the audit log.
    await page.getByRole('link', { name: 'Audit log' }).click();
    for (const action of ['org.created', 'org.domain_verified', 'client.created', 'session.revoked', 'user.deactivated', 'client.deleted', 'session.reauthenticated']) {
      assert.ok(await page.getByRole('cell', { name: action, exact: true }).count() >= 1, `${action} is in the audit log`);
    }
    await page.screenshot({ path: join(shots, 'console-audit.png'), fullPage: true });
    assert.deepEqual(cspViolations, []);
    await context.close();
  } finally {
    await browser.close();
  }
});

test('an organisation admin cannot open another organisation', async () => {
  const browser = await launch();
  try {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    await signIn(page, ORG_ADMIN_EMAIL, '/admin');
    await page.waitForURL(`${base}/admin/organizations`);
    await page.screenshot({ path: join(shots, 'console-org-admin-phone.png'), fullPage: true });
    for (const path of [`/admin/organizations/${OTHER_ORG_ID}`, '/admin/users', '/admin/applications']) {
      const res = await page.goto(`${base}${path}`);
      assert.equal(res.status(), 403, path);
    }
    await context.close();
  } finally {
    await browser.close();
  }
});

// SAML enterprise connections end to end (issue 11): Latchkey as the service provider, a real
// pysaml2 IdP (tests/saml-idp/idp.py) as the identity provider, headless Chromium as the user.
//
// Contract with the Rust test that starts this script (`node --test --test-reporter=spec
// tests/e2e/saml-flow.mjs`):
//   LATCHKEY_URL       required: the running server's base URL (= its public_url, no trailing /).
//   LATCHKEY_BIN       required: the `latchkey` binary (env!("CARGO_BIN_EXE_latchkey")).
//   LATCHKEY_ENV_JSON  required: a JSON object of the environment the CLI needs to act on the same
//                      store as the server (TestServer::env: LATCHKEY_DATA_DIR, LATCHKEY_DATABASE_URL,
//                      …). It must allow loopback metadata URLs, for the server (refresh) and the CLI
//                      (add-saml fetches at creation). Inherited LATCHKEY_* variables are dropped.
//   MAILDIR            required: the maildir of the SMTP server the server sends to (sign-up codes).
//   LATCHKEY_CWD       optional: working directory of CLI runs (default: a temporary directory).
//   SCREENSHOT_DIR     optional: where failure screenshots go (default tests/e2e/screenshots/).
//   IDP_PYTHON         optional: the venv's python (default tests/saml-idp/.venv/bin/python).
//   SAML_CLI_FLAGS_JSON optional: overrides of the CLI flags this script had to assume (see FLAGS).
// The script starts its own test IdPs (one shared, one for the key rollover) on loopback and
// stops them at the end. Every test signs in from a fresh browser context.
//
// Interfaces used (issue 11): `latchkey orgs create --name N --json`, `orgs domains add ORG DOMAIN
// --verified --json`, `connections add-saml --org ORG --name N --metadata-url U
// [--allow-idp-initiated] [--require-encryption] [--preset P] --json` (connection_id, sp_entity_id,
// acs_url, metadata_url, login_url), `connections show|enable|disable|delete|refresh-metadata|
// rotate-sp-key ID --json`; the hosted /sign-in and /sign-up pages; GET /saml/{id}/login?return_to=…[&binding=post];
// GET /v1/me (401 without a session; the session's method "saml" and connection_id).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const env = (name) => { const v = process.env[name]; assert.ok(v, `${name} must be set`); return v; };
const base = env('LATCHKEY_URL').replace(/\/$/, '');
const latchkeyBin = env('LATCHKEY_BIN');
const latchkeyEnv = JSON.parse(env('LATCHKEY_ENV_JSON'));
const maildir = env('MAILDIR');
const shots = process.env.SCREENSHOT_DIR || new URL('./screenshots/', import.meta.url).pathname;
const idpDir = new URL('../saml-idp/', import.meta.url).pathname;
const idpPython = process.env.IDP_PYTHON || join(idpDir, '.venv/bin/python');
mkdirSync(shots, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'latchkey-saml-e2e-'));
const cliCwd = process.env.LATCHKEY_CWD || work;
const run = Date.now().toString(36);

// CLI flags issue 11 does not spell out; the integrator aligns them here or through
// SAML_CLI_FLAGS_JSON (same keys, each an array of arguments).
const FLAGS = {
  // The group-to-role mapping: IdP group "admins" → organisation role "admin".
  groupRoleAdmin: ['--group-role', 'admins=admin'],
  // The connection's NameID format option.
  nameIdPersistent: ['--name-id-format', 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent'],
  ...JSON.parse(process.env.SAML_CLI_FLAGS_JSON || '{}'),
};

const PASSWORD = 'idp password for tests';

// --------------------------------------------------------------------------- the CLI

/** Runs `latchkey ARGS --json` against the server's store and returns the parsed JSON. */
function cli(...args) {
  const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LATCHKEY_')));
  Object.assign(childEnv, latchkeyEnv, { NO_COLOR: '1' });
  const out = spawnSync(latchkeyBin, [...args, '--json'], { cwd: cliCwd, env: childEnv, encoding: 'utf8', timeout: 60000 });
  if (out.status !== 0) {
    throw new Error(`latchkey ${args.join(' ')} exited ${out.status}:\n${out.stderr}\n${out.stdout}`);
  }
  try {
    return JSON.parse(out.stdout);
  } catch (e) {
    throw new Error(`latchkey ${args.join(' ')}: not JSON (${e.message}):\n${out.stdout}`);
  }
}

const idOf = (obj, ...keys) => {
  for (const k of [...keys, 'id']) if (obj && typeof obj[k] === 'string') return obj[k];
  throw new Error(`no ${[...keys, 'id'].join('/')} in ${JSON.stringify(obj)}`);
};

// --------------------------------------------------------------------------- mail

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

// --------------------------------------------------------------------------- the test IdP

/** Starts tests/saml-idp/idp.py with `config`; resolves with a small client of its control API. */
async function startIdp(name, config) {
  const cfgPath = join(work, `${name}.json`);
  writeFileSync(cfgPath, JSON.stringify(config));
  const child = spawn(idpPython, [join(idpDir, 'idp.py'), '--config', cfgPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`IdP ${name} did not start within 30 s`)), 30000);
    child.once('exit', (code) => reject(new Error(`IdP ${name} exited with ${code} before READY`)));
    lines.once('line', (line) => {
      clearTimeout(timer);
      if (line.startsWith('READY ')) resolve(line.slice(6).trim());
      else reject(new Error(`IdP ${name} said ${line}`));
    });
  });
  const call = async (method, path, body) => {
    const res = await fetch(url + path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`IdP ${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text);
  };
  return {
    url,
    entityId: `${url}/idp`,
    metadataUrl: `${url}/idp/metadata`,
    config: (patch) => call('POST', '/control/config', patch),
    addSp: (source) => call('POST', '/control/sp', source),
    rotate: (body) => call('POST', '/control/rotate-key', body),
    log: (type) => call('GET', `/control/log${type ? `?type=${type}` : ''}`),
    sessions: () => call('GET', '/control/sessions'),
    setUser: (handle, user) => call('POST', '/control/config', { users: { [handle]: { password: PASSWORD, ...user } } }),
    stop: () => { child.kill('SIGTERM'); },
  };
}

// --------------------------------------------------------------------------- browser helpers

let browser;
let idp; // the shared IdP
const idps = [];

async function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

/** A fresh browser context (its own cookies) and page; failures leave a screenshot. */
async function fresh() {
  const context = await browser.newContext();
  const page = await context.newPage();
  return { context, page };
}

/** GET /v1/me from the context's cookie jar: { status, body }. A keep-alive connection the
 * server closed just as it was reused (ECONNRESET, seen once under a loaded machine) is retried
 * once: the request is a read, and the retry goes out on a new connection. */
async function me(context) {
  const get = () => context.request.get(`${base}/v1/me`, { headers: { 'X-Latchkey-CSRF': '1' }, maxRedirects: 0 });
  let res;
  try {
    res = await get();
  } catch (e) {
    if (!/ECONNRESET|socket hang up/.test(String(e))) throw e;
    res = await get();
  }
  let body = null;
  try { body = await res.json(); } catch { /* 401 pages need not be JSON */ }
  return { status: res.status(), body };
}

/** The session's authentication method and connection, wherever /v1/me nests them. */
function sessionAuth(body) {
  const holder = [body, body?.session, body?.authentication, body?.auth]
    .find((o) => o && typeof o.method === 'string') || {};
  return { method: holder.method, connectionId: holder.connection_id };
}

/** The user's role in an organisation according to /v1/me, or undefined. */
function roleIn(body, orgId) {
  const list = body?.memberships || body?.organizations || body?.orgs || [];
  const m = list.find((x) => [x.org_id, x.organization_id, x.id, x.organization?.id].includes(orgId));
  return m?.role ?? m?.org_role;
}

async function expectSignedIn(context, connection, email) {
  const { status, body } = await me(context);
  assert.equal(status, 200, `GET /v1/me: ${status} ${JSON.stringify(body)}`);
  const auth = sessionAuth(body);
  assert.equal(auth.method, 'saml', `session method: ${JSON.stringify(body)}`);
  assert.equal(auth.connectionId, connection.connection_id, `session connection: ${JSON.stringify(body)}`);
  if (email) assert.equal(body.primary_email ?? body.email, email, JSON.stringify(body));
  return body;
}

async function expectSignedOut(context) {
  const { status, body } = await me(context);
  assert.equal(status, 401, `expected no session, GET /v1/me: ${status} ${JSON.stringify(body)}`);
}

/** On the IdP's login form: signs in as `handle`. */
async function idpLogin(page, idpUrl, handle, password = PASSWORD) {
  await page.waitForURL((u) => u.href.startsWith(`${idpUrl}/idp/`));
  await page.getByLabel('Username').fill(handle);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Starts SP-initiated sign-in through `connection` and signs in at the IdP as `handle`. */
async function startSignIn(page, connection, handle, { idpUrl = idp.url, binding, returnTo = '/account' } = {}) {
  const start = new URL(connection.login_url);
  start.searchParams.set('return_to', returnTo);
  if (binding) start.searchParams.set('binding', binding);
  await page.goto(start.href);
  await idpLogin(page, idpUrl, handle);
}

/** SP-initiated sign-in through `connection` as `handle`; ends on `returnTo` at Latchkey. */
async function samlSignIn(page, connection, handle, opts = {}) {
  const returnTo = opts.returnTo || '/account';
  await startSignIn(page, connection, handle, opts);
  await page.waitForURL((u) => u.href.startsWith(base) && u.pathname === returnTo);
}

const isAcs = (r) => r.request().method() === 'POST' && /\/saml\/[^/]+\/acs$/.test(new URL(r.url()).pathname);

/**
 * Runs `action`, which ends with the IdP posting a Response to the ACS, and checks that Latchkey
 * refused it: an error page (status ≥ 400) naming a reference ID, no session, and (SQLite
 * stores) the audited refusal with that reference giving `reason`.
 */
async function expectAcsRefusal(page, context, action, what, reason) {
  const acs = page.waitForResponse(isAcs);
  await action();
  const res = await acs;
  assert.ok(res.status() >= 400, `${what}: ACS answered ${res.status()} (expected a refusal)`);
  await page.waitForLoadState('load');
  const text = await page.locator('body').innerText();
  const reference = /\bref_[0-9a-z]+/.exec(text)?.[0];
  assert.ok(reference, `${what}: the error page names no reference ID: ${text}`);
  await expectSignedOut(context);
  if (reason && sqliteStore) {
    const audited = samlAudit(50)
      .filter(([, action]) => action === 'saml.response_rejected')
      .map(([, , , data]) => JSON.parse(data))
      .find((d) => d.reference === reference);
    assert.ok(audited, `${what}: no audited refusal ${reference}`);
    assert.equal(audited.reason, reason, `${what}: audited reason (${JSON.stringify(audited)})`);
  }
}

/** Polls `fn` until it returns a truthy value (the IdP and Latchkey log asynchronously to us). */
async function eventually(fn, what, timeoutMs = 10000) {
  const started = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// --------------------------------------------------------------------------- fixtures

/**
 * An organisation with a verified domain and a SAML connection to `theIdp` (its metadata URL),
 * whose SP metadata the IdP then loads (with per-SP response `options`).
 */
async function setUpConnection(tag, { theIdp = idp, flags = [], options, orgName } = {}) {
  const domain = `${tag}-${run}.example`;
  const org = cli('orgs', 'create', '--name', orgName || `Org ${tag} ${run}`);
  const orgId = idOf(org, 'org_id', 'organization_id');
  cli('orgs', 'domains', 'add', orgId, domain, '--verified');
  const connection = cli('connections', 'add-saml', '--org', orgId, '--name', `IdP ${tag}`, '--metadata-url', theIdp.metadataUrl, ...flags);
  for (const k of ['connection_id', 'sp_entity_id', 'acs_url', 'metadata_url', 'login_url']) {
    assert.equal(typeof connection[k], 'string', `add-saml JSON lacks ${k}: ${JSON.stringify(connection)}`);
  }
  const id = connection.connection_id;
  assert.equal(connection.sp_entity_id, `${base}/saml/${id}`);
  assert.equal(connection.acs_url, `${base}/saml/${id}/acs`);
  assert.equal(connection.metadata_url, `${base}/saml/${id}/metadata`);
  const summary = await theIdp.addSp({ url: connection.metadata_url, ...(options ? { options } : {}) });
  assert.equal(summary.entity_id, connection.sp_entity_id);
  assert.equal(summary.authn_requests_signed, true, 'SP metadata: AuthnRequestsSigned');
  assert.ok(summary.signing_certs.length >= 1 && summary.encryption_certs.length >= 1, 'SP metadata: signing and encryption certificates');
  assert.ok(summary.acs.some((a) => a.location === connection.acs_url && a.binding.endsWith('HTTP-POST')), 'SP metadata: ACS HTTP-POST');
  return { ...connection, orgId, domain };
}

function person(handle, domain, extra = {}) {
  return {
    attributes: {
      email: `${handle}@${domain}`,
      givenName: handle[0].toUpperCase() + handle.slice(1),
      sn: 'Tester',
      displayName: `${handle} Tester`,
      groups: ['engineering'],
      ...extra,
    },
  };
}

const lastOf = async (theIdp, type) => (await theIdp.log(type)).at(-1);

// --------------------------------------------------------------------------- lifecycle

before(async () => {
  browser = await launch();
  idp = await startIdp('idp', {});
  idps.push(idp);
});

after(async () => {
  await browser?.close();
  for (const i of idps) i.stop();
  rmSync(work, { recursive: true, force: true });
});

/**
 * The newest SAML audit events of the server's store (reasons of refusals), for failure
 * reports. SQLite stores only (the default of LATCHKEY_DATA_DIR); empty otherwise.
 */
const sqliteStore = Boolean(latchkeyEnv.LATCHKEY_DATA_DIR && !latchkeyEnv.LATCHKEY_DATABASE_URL);
function samlAudit(limit = 8) {
  const dir = latchkeyEnv.LATCHKEY_DATA_DIR;
  if (!sqliteStore) return [];
  const py = "import sqlite3,sys,json;c=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro',uri=True);" +
    "print(json.dumps(c.execute(\"select occurred_at,action,target_id,data from audit_events where action like 'saml.%' " +
    "order by occurred_at desc, id desc limit ?\",(int(sys.argv[2]),)).fetchall()))";
  const out = spawnSync('python3', ['-c', py, join(dir, 'latchkey.db'), String(limit)], { encoding: 'utf8' });
  return out.status === 0 ? JSON.parse(out.stdout) : [`(audit unreadable: ${out.stderr.trim()})`];
}

/** Wraps a test body: on failure, screenshots of every open page. */
function flow(name, body) {
  test(name, async () => {
    try {
      await body();
    } catch (e) {
      let i = 0;
      for (const ctx of browser.contexts()) {
        for (const p of ctx.pages()) {
          const file = join(shots, `saml-${name.replace(/[^a-z0-9]+/gi, '-')}-${i++}.png`);
          await p.screenshot({ path: file, fullPage: true }).catch(() => {});
          console.error(`page ${file}: ${p.url()}`);
        }
      }
      for (const e of samlAudit()) console.error(`audit: ${JSON.stringify(e)}`);
      throw e;
    } finally {
      for (const ctx of browser.contexts()) await ctx.close().catch(() => {});
    }
  });
}

// --------------------------------------------------------------------------- flows

let main; // the plain connection most flows use, made by the first flow that needs it
const mainConnection = async () => { main ??= await setUpConnection('main'); return main; };

flow('SP-initiated sign-in, Redirect binding, signed AuthnRequest, email NameID', async () => {
  await mainConnection();
  await idp.setUser('ada', person('ada', main.domain));
  const { context, page } = await fresh();
  await samlSignIn(page, main, 'ada');
  await expectSignedIn(context, main, `ada@${main.domain}`);

  const req = await lastOf(idp, 'AuthnRequest');
  assert.equal(req.binding, 'redirect');
  assert.equal(req.issuer, main.sp_entity_id);
  assert.equal(req.signed, true, 'AuthnRequest signed');
  assert.equal(req.signature_valid, true, 'AuthnRequest signature verifies');
  assert.equal(req.sig_alg, 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256');
  assert.equal(req.error, null);
  assert.equal(req.schema_error, null, 'the AuthnRequest is valid against the SAML 2.0 schema');
  assert.ok(!req.acs_url || req.acs_url === main.acs_url, `ACS URL ${req.acs_url}`);
  assert.match(req.id, /^[A-Za-z_]/, 'AuthnRequest ID is an NCName');
  const resp = await lastOf(idp, 'Response');
  assert.equal(resp.in_response_to, req.id);
});

flow('SP-initiated sign-in, POST binding (asked for, and when the IdP offers only POST)', async () => {
  await mainConnection();
  await idp.setUser('bea', person('bea', main.domain));
  let { context, page } = await fresh();
  await samlSignIn(page, main, 'bea', { binding: 'post' });
  await expectSignedIn(context, main, `bea@${main.domain}`);
  let req = await lastOf(idp, 'AuthnRequest');
  assert.equal(req.binding, 'post');
  assert.equal(req.signed && req.signature_valid, true, `POST AuthnRequest signature: ${JSON.stringify(req)}`);
  await context.close();

  // A connection created while the IdP's metadata lists only the POST SSO endpoint.
  await idp.config({ metadata: { sso_bindings: ['post'] } });
  let postOnly;
  try {
    postOnly = await setUpConnection('postonly');
  } finally {
    await idp.config({ metadata: { sso_bindings: ['redirect', 'post'] } });
  }
  await idp.setUser('cal', person('cal', postOnly.domain));
  ({ context, page } = await fresh());
  await samlSignIn(page, postOnly, 'cal');
  await expectSignedIn(context, postOnly, `cal@${postOnly.domain}`);
  req = await lastOf(idp, 'AuthnRequest');
  assert.equal(req.binding, 'post');
  assert.equal(req.signature_valid, true);
});

flow('response signed, assertion signed, both', async () => {
  await mainConnection();
  await idp.setUser('dee', person('dee', main.domain));
  const variants = [
    { sign_response: true, sign_assertion: false },
    { sign_response: false, sign_assertion: true },
    { sign_response: true, sign_assertion: true },
  ];
  try {
    for (const v of variants) {
      await idp.config({ response: v });
      const { context, page } = await fresh();
      await samlSignIn(page, main, 'dee');
      await expectSignedIn(context, main, `dee@${main.domain}`);
      await context.close();
    }
    // Neither signed: refused.
    await idp.config({ response: { sign_response: false, sign_assertion: false } });
    const { context, page } = await fresh();
    await expectAcsRefusal(page, context, () => startSignIn(page, main, 'dee'), 'unsigned response', 'unsigned');
  } finally {
    await idp.config({ response: { sign_response: true, sign_assertion: true } });
  }
});

flow('RSA-SHA1 signatures are refused by default', async () => {
  await mainConnection();
  await idp.setUser('eli', person('eli', main.domain));
  await idp.config({ response: { sign_alg: 'rsa-sha1' } });
  try {
    const { context, page } = await fresh();
    await expectAcsRefusal(page, context, () => startSignIn(page, main, 'eli'), 'RSA-SHA1 response', 'algorithm_not_allowed');
  } finally {
    await idp.config({ response: { sign_alg: 'rsa-sha256' } });
  }
});

flow('encrypted assertions: accepted, and required when the connection says so', async () => {
  await mainConnection();
  const enc = await setUpConnection('enc', { flags: ['--require-encryption'] });
  await idp.setUser('fay', person('fay', enc.domain));
  // Plain assertion to a connection requiring encryption: refused.
  let { context, page } = await fresh();
  await expectAcsRefusal(page, context, () => startSignIn(page, enc, 'fay'), 'unencrypted assertion', 'encryption_required');
  await context.close();
  // Signed, then encrypted (AES-256-GCM, RSA-OAEP), as Entra ID and Okta do; then AES-128-CBC
  // without an inner signature (the Response signature covers the EncryptedAssertion).
  const cases = [
    { encrypt_assertion: true, encryption_alg: 'aes256-gcm', sign_assertion: true, sign_response: false },
    { encrypt_assertion: true, encryption_alg: 'aes128-cbc', sign_assertion: false, sign_response: true },
    { encrypt_assertion: true, encryption_alg: 'aes256-cbc', sign_assertion: true, sign_response: true },
  ];
  for (const options of cases) {
    await idp.addSp({ url: enc.metadata_url, options });
    ({ context, page } = await fresh());
    await samlSignIn(page, enc, 'fay');
    await expectSignedIn(context, enc, `fay@${enc.domain}`);
    await context.close();
  }
  // The plain connection accepts an encrypted assertion too.
  await idp.setUser('gus', person('gus', main.domain));
  await idp.addSp({ url: main.metadata_url, options: { encrypt_assertion: true, encryption_alg: 'aes128-gcm' } });
  try {
    ({ context, page } = await fresh());
    await samlSignIn(page, main, 'gus');
    await expectSignedIn(context, main, `gus@${main.domain}`);
  } finally {
    await idp.addSp({ url: main.metadata_url, options: {} });
  }
});

flow('persistent NameID: the account follows the NameID, not the email', async () => {
  const pers = await setUpConnection('pers', { flags: FLAGS.nameIdPersistent, options: { name_id_format: 'persistent' } });
  await idp.setUser('hal', { ...person('hal', pers.domain), persistent_id: `hal-${run}` });
  let { context, page } = await fresh();
  await samlSignIn(page, pers, 'hal');
  const first = await expectSignedIn(context, pers, `hal@${pers.domain}`);
  const resp = await lastOf(idp, 'Response');
  assert.equal(resp.name_id.format, 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent');
  await context.close();

  // The IdP changes hal's address: same NameID, same account.
  await idp.setUser('hal', { ...person('hal', pers.domain, { email: `harold@${pers.domain}` }), persistent_id: `hal-${run}` });
  ({ context, page } = await fresh());
  await samlSignIn(page, pers, 'hal');
  const second = await expectSignedIn(context, pers);
  assert.equal(second.id, first.id, 'a changed email at the IdP must not create a second account');
  await context.close();

  // Another NameID now asserting hal's old address must not get hal's account.
  await idp.setUser('imp', { ...person('imp', pers.domain, { email: `hal@${pers.domain}` }), persistent_id: `imp-${run}` });
  ({ context, page } = await fresh());
  const acs = page.waitForResponse(isAcs);
  await startSignIn(page, pers, 'imp');
  await acs;
  await page.waitForLoadState('load');
  const other = await me(context);
  if (other.status === 200) assert.notEqual(other.body.id, first.id, 'a reused email took over another NameID\'s account');
});

flow('IdP-initiated SSO: refused by default, allowed when enabled (landing page fixed)', async () => {
  await mainConnection();
  await idp.setUser('ivy', person('ivy', main.domain));
  // The main connection does not allow IdP-initiated SSO.
  let { context, page } = await fresh();
  const initiate = (conn, relay) => `${idp.url}/idp/initiate?${new URLSearchParams({ sp: conn.sp_entity_id, user: 'ivy', relay_state: relay })}`;
  await expectAcsRefusal(page, context, () => page.goto(initiate(main, '/account')), 'unsolicited response', 'unsolicited_not_allowed');
  await context.close();

  const open = await setUpConnection('idpinit', { flags: ['--allow-idp-initiated'] });
  await idp.setUser('ivy', person('ivy', open.domain));
  ({ context, page } = await fresh());
  await page.goto(initiate(open, 'https://evil.example/steal'));
  await page.waitForURL((u) => u.href.startsWith(base) && !u.pathname.startsWith('/saml/'));
  assert.ok(page.url().startsWith(base), `RelayState redirected off-site: ${page.url()}`);
  assert.equal(new URL(page.url()).pathname, '/account', 'IdP-initiated sign-in lands on the fixed page');
  await expectSignedIn(context, open, `ivy@${open.domain}`);
  await context.close();

  // Even when allowed, an unsolicited response that carries an InResponseTo is refused.
  ({ context, page } = await fresh());
  const withIrt = `${initiate(open, '/account')}&in_response_to=_forged${run}`;
  await expectAcsRefusal(page, context, () => page.goto(withIrt), 'unsolicited response with InResponseTo', 'in_response_to_unknown');
});

flow('just-in-time provisioning, then profile and role updates on the next sign-in', async () => {
  const jit = await setUpConnection('jit', { flags: FLAGS.groupRoleAdmin });
  await idp.setUser('jo', person('jo', jit.domain, { givenName: 'Jo', sn: 'March', displayName: 'Jo March', groups: ['engineering', 'admins'] }));
  let { context, page } = await fresh();
  await samlSignIn(page, jit, 'jo');
  const first = await expectSignedIn(context, jit, `jo@${jit.domain}`);
  assert.match(JSON.stringify(first), /Jo/);
  assert.equal(roleIn(first, jit.orgId), 'admin', `role from the admins group: ${JSON.stringify(first)}`);
  const emailVerified = first.email_verified ?? first.primary_email_verified;
  if (emailVerified !== undefined) assert.equal(emailVerified, true, 'JIT users have a verified email');
  await context.close();

  await idp.setUser('jo', person('jo', jit.domain, { givenName: 'Josephine', sn: 'Bhaer', displayName: 'Josephine Bhaer', groups: ['engineering'] }));
  ({ context, page } = await fresh());
  await samlSignIn(page, jit, 'jo');
  const second = await expectSignedIn(context, jit, `jo@${jit.domain}`);
  assert.equal(second.id, first.id, 'the same user');
  assert.match(JSON.stringify(second), /Josephine/, `profile updated: ${JSON.stringify(second)}`);
  assert.match(JSON.stringify(second), /Bhaer/);
  assert.equal(roleIn(second, jit.orgId), 'member', `role the IdP no longer grants removed: ${JSON.stringify(second)}`);
});

flow('enforcement: identifier-first goes to the IdP, password sign-in is refused, the account is linked', async () => {
  // A password account on the domain, created before the connection.
  const domainTag = 'enforce';
  const org = cli('orgs', 'create', '--name', `Org ${domainTag} ${run}`);
  const orgId = idOf(org, 'org_id', 'organization_id');
  const domain = `${domainTag}-${run}.example`;
  cli('orgs', 'domains', 'add', orgId, domain, '--verified');
  const email = `kit@${domain}`;
  // Signed up on the hosted pages (a verified address: only such an account is linked, never
  // one whose owner did not prove the address).
  const existing = await (async () => {
    const { context, page } = await fresh();
    await page.goto(`${base}/sign-up`);
    await page.getByLabel('Email address').fill(email);
    await page.getByLabel('Password', { exact: true }).fill('kit password before sso');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL(/\/sign-up\/verify/);
    const code = /\b(\d{6})\b/.exec(await waitForMail(email))?.[1];
    assert.ok(code, 'a sign-up code');
    await page.getByLabel('Verification code').fill(code);
    await page.getByRole('button', { name: 'Verify and continue' }).click();
    await page.waitForURL(/\/account$/);
    const { body } = await me(context);
    assert.equal(body.email_verified, true);
    await context.close();
    return body;
  })();
  const connection = cli('connections', 'add-saml', '--org', orgId, '--name', 'IdP enforce', '--metadata-url', idp.metadataUrl);
  await idp.addSp({ url: connection.metadata_url });
  await idp.setUser('kit', person('kit', domain));

  const refusePassword = async () => {
    const { context, page } = await fresh();
    await page.goto(`${base}/sign-in`);
    const csrf = await page.locator('input[name="csrf_token"]').first().getAttribute('value');
    // The identifier step no longer offers a password form for this domain: post one directly.
    const answered = page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/sign-in/password');
    await page.evaluate(({ csrf, email }) => {
      const f = document.createElement('form');
      f.method = 'post';
      f.action = '/sign-in/password';
      for (const [k, v] of Object.entries({ csrf_token: csrf, email, password: 'kit password before sso', return_to: '/account' })) {
        const i = document.createElement('input');
        i.type = 'hidden'; i.name = k; i.value = v;
        f.appendChild(i);
      }
      document.body.appendChild(f);
      f.submit();
    }, { csrf, email });
    await answered;
    await page.waitForLoadState('load');
    assert.ok(!new URL(page.url()).pathname.startsWith('/account'), `password sign-in went through: ${page.url()}`);
    await expectSignedOut(context);
    assert.match(await page.locator('body').innerText(), /single sign-on|identity provider|organi[sz]ation|SSO/i,
      'the refusal says why');
    await context.close();
  };
  await refusePassword();

  // Sign-up with an address on the domain is refused too.
  {
    const { context, page } = await fresh();
    await page.goto(`${base}/sign-up`);
    await page.getByLabel('Email address').fill(`newcomer@${domain}`);
    await page.getByLabel('Password', { exact: true }).fill('a long enough passphrase');
    await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/sign-up'),
      page.getByRole('button', { name: 'Continue' }).click(),
    ]);
    await page.waitForLoadState('load');
    assert.ok(!/\/sign-up\/verify/.test(page.url()), `sign-up went ahead: ${page.url()}`);
    assert.match(await page.locator('body').innerText(), /single sign-on|identity provider|organi[sz]ation|SSO/i, 'the refusal says why');
    await context.close();
  }

  // Identifier-first on the hosted page lands at the IdP. The form's redirects fall under the
  // sign-in page's form-action, so the hop to the IdP must not be a redirect (regression).
  const { context, page } = await fresh();
  const cspViolations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });
  await page.goto(`${base}/account`);
  await page.waitForURL(/\/sign-in/);
  await page.getByLabel('Email address').fill(email);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL((u) => u.href.startsWith(`${idp.url}/idp/`));
  const req = await lastOf(idp, 'AuthnRequest');
  assert.equal(req.issuer, `${base}/saml/${connection.connection_id}`);
  assert.equal(req.signature_valid, true, 'the AuthnRequest survives the navigation page intact');
  assert.deepEqual(cspViolations, []);
  await idpLogin(page, idp.url, 'kit');
  await page.waitForURL((u) => u.href.startsWith(base) && !u.pathname.startsWith('/saml/'));
  const body = await expectSignedIn(context, connection, email);
  assert.equal(body.id, idOf(existing, 'user_id'), 'the existing password account is linked, not duplicated');
  await context.close();

  // Still refused after linking.
  await refusePassword();
});

flow('metadata-URL refresh across an IdP key rollover', async () => {
  const roll = await startIdp('idp-rollover', {});
  idps.push(roll);
  const conn = await setUpConnection('roll', { theIdp: roll });
  await roll.setUser('lee', person('lee', conn.domain));
  const signIn = async () => {
    const { context, page } = await fresh();
    await samlSignIn(page, conn, 'lee', { idpUrl: roll.url });
    await expectSignedIn(context, conn, `lee@${conn.domain}`);
    await context.close();
  };
  await signIn();

  // Announced rollover: the next certificate is published, Latchkey refreshes, then the IdP
  // switches: no sign-in fails.
  await roll.rotate({ stage: 'announce' });
  cli('connections', 'refresh-metadata', conn.connection_id);
  await signIn();
  await roll.rotate({ stage: 'switch' });
  await signIn();
  await roll.rotate({ stage: 'retire' });
  cli('connections', 'refresh-metadata', conn.connection_id);
  await signIn();

  // Unannounced rollover: refused until the metadata is refreshed.
  await roll.rotate({ stage: 'switch', only_new: true });
  const { context, page } = await fresh();
  await expectAcsRefusal(page, context, () => startSignIn(page, conn, 'lee', { idpUrl: roll.url }), 'signature by an unknown key', 'bad_signature');
  await context.close();
  const refreshed = cli('connections', 'refresh-metadata', conn.connection_id);
  assert.ok(refreshed, 'refresh-metadata answers JSON');
  await signIn();
  const shown = cli('connections', 'show', conn.connection_id);
  assert.equal(shown.connection_id, conn.connection_id);
});

flow('SP key rotation: both certificates published, AuthnRequests keep verifying', async () => {
  await mainConnection();
  const rotated = cli('connections', 'rotate-sp-key', main.connection_id);
  assert.ok(rotated, 'rotate-sp-key answers JSON');
  const summary = await idp.addSp({ url: main.metadata_url });
  assert.ok(summary.signing_certs.length >= 2, `both SP signing certificates published during the overlap: ${summary.signing_certs.length}`);
  await idp.setUser('max', person('max', main.domain));
  const { context, page } = await fresh();
  await samlSignIn(page, main, 'max');
  await expectSignedIn(context, main, `max@${main.domain}`);
  const req = await lastOf(idp, 'AuthnRequest');
  assert.equal(req.signature_valid, true);
});

flow('disabling the connection ends its sessions; enabling lets sign-in back; deleting ends them too', async () => {
  const life = await setUpConnection('life');
  await idp.setUser('ned', person('ned', life.domain));
  const { context, page } = await fresh();
  await samlSignIn(page, life, 'ned');
  await expectSignedIn(context, life, `ned@${life.domain}`);

  cli('connections', 'disable', life.connection_id);
  await expectSignedOut(context);
  // A sign-in started while disabled gets nowhere: refused at the start, or at the ACS.
  const other = await fresh();
  const started = await other.page.goto(`${life.login_url}?return_to=%2Faccount`);
  if (other.page.url().startsWith(`${idp.url}/idp/`)) {
    await expectAcsRefusal(other.page, other.context, () => idpLogin(other.page, idp.url, 'ned'), 'sign-in through a disabled connection', 'connection_disabled');
  } else {
    assert.ok(started.status() >= 400, `login through a disabled connection answered ${started.status()} at ${other.page.url()}`);
    await expectSignedOut(other.context);
  }
  await other.context.close();

  cli('connections', 'enable', life.connection_id);
  await samlSignIn(page, life, 'ned');
  await expectSignedIn(context, life, `ned@${life.domain}`);

  // A Response issued while enabled but posted after disabling is refused at the ACS.
  await idp.config({ response: { auto_submit: false } });
  try {
    const late = await fresh();
    await late.page.goto(life.login_url + '?return_to=%2Faccount');
    await idpLogin(late.page, idp.url, 'ned');
    await late.page.locator('#continue').waitFor();
    cli('connections', 'disable', life.connection_id);
    await expectAcsRefusal(late.page, late.context, () => late.page.locator('#continue').click(), 'response to a disabled connection', 'connection_disabled');
    await late.context.close();
  } finally {
    await idp.config({ response: { auto_submit: true } });
  }
  cli('connections', 'enable', life.connection_id);
  await expectSignedOut(context); // disabling ended it
  await samlSignIn(page, life, 'ned');
  await expectSignedIn(context, life);

  cli('connections', 'delete', life.connection_id);
  await expectSignedOut(context);
});

flow('single logout, SP-initiated: signing out of Latchkey signs out at the IdP', async () => {
  await mainConnection();
  await idp.setUser('ola', person('ola', main.domain));
  const { context, page } = await fresh();
  await samlSignIn(page, main, 'ola');
  await expectSignedIn(context, main, `ola@${main.domain}`);
  const sessionIndex = (await lastOf(idp, 'Response')).session_index;
  const before = (await idp.log('LogoutRequest')).length;

  await page.goto(`${base}/account`);
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  const lreq = await eventually(async () => (await idp.log('LogoutRequest'))[before], 'the LogoutRequest at the IdP');
  assert.equal(lreq.issuer, main.sp_entity_id);
  assert.equal(lreq.binding, 'redirect');
  assert.equal(lreq.signed && lreq.signature_valid, true, `LogoutRequest signature: ${JSON.stringify(lreq)}`);
  assert.equal(lreq.name_id, `ola@${main.domain}`);
  assert.deepEqual(lreq.session_indexes, [sessionIndex]);
  assert.equal(lreq.ended_sessions, 1);
  assert.equal(lreq.error, null);
  assert.equal(lreq.schema_error, null, 'the LogoutRequest is valid against the SAML 2.0 schema');
  await eventually(async () => (await idp.log('LogoutResponseSent')).some((e) => e.in_response_to === lreq.id), 'the LogoutResponse');
  // The sign-out page hands over to the IdP (meta refresh); the IdP's LogoutResponse brings the
  // browser back to Latchkey's SLO endpoint, which lands on the sign-in page, signed out.
  await page.waitForURL(`${base}/sign-in?signed_out=1`);
  await expectSignedOut(context);
});

flow('single logout, IdP-initiated: the IdP ends the Latchkey session it names', async () => {
  await mainConnection();
  await idp.setUser('pia', person('pia', main.domain));
  const a = await fresh();
  await samlSignIn(a.page, main, 'pia');
  await expectSignedIn(a.context, main, `pia@${main.domain}`);
  const indexA = (await lastOf(idp, 'Response')).session_index;
  // A second browser of the same user: the LogoutRequest names one session (NameID and
  // SessionIndex), so this one stays signed in.
  const b = await fresh();
  await samlSignIn(b.page, main, 'pia');
  await expectSignedIn(b.context, main);
  const indexB = (await lastOf(idp, 'Response')).session_index;
  assert.notEqual(indexA, indexB);

  const logout = async (page, sessionIndex) => {
    await page.goto(`${idp.url}/idp/logout-user?${new URLSearchParams({ user: 'pia', session_index: sessionIndex })}`);
    await page.locator('#slo-result').waitFor();
    assert.match(await page.locator('#slo-result').innerText(), /^Signed out/, 'the SP answered Success');
    const sent = await lastOf(idp, 'LogoutRequestSent');
    assert.equal(sent.session_index, sessionIndex);
    const lresp = await lastOf(idp, 'LogoutResponse');
    assert.equal(lresp.issuer, main.sp_entity_id);
    assert.equal(lresp.in_response_to, sent.id);
    assert.equal(lresp.status, 'urn:oasis:names:tc:SAML:2.0:status:Success');
    assert.equal(lresp.signed && lresp.signature_valid, true, `LogoutResponse signature: ${JSON.stringify(lresp)}`);
    assert.equal(lresp.matched, true);
    assert.equal(lresp.schema_error, null, 'the LogoutResponse is valid against the SAML 2.0 schema');
  };
  await logout(a.page, indexA);
  await expectSignedOut(a.context);
  await expectSignedIn(b.context, main);
  await logout(b.page, indexB);
  await expectSignedOut(b.context);
});

// The sign-in and consent steps, without a real UI. The user comes from `?user=` on the
// interaction URL (or a form post of it), the authorization request's `user` parameter, or its
// `login_hint`; otherwise a minimal page offers one button per eligible user. Consent is always
// given, for everything asked.
import { CONSUMER_TENANT } from './directory.mjs';
import { escapeHtml } from './providers.mjs';

async function formBody(req) {
  if (req.method !== 'POST') return new URLSearchParams();
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString());
}

/** Users offered on the chooser page: Google's `hd` narrows the list, as it does upstream. */
export function eligibleUsers(directory, family, { tid, hd, segment } = {}) {
  return [...directory[family].users.values()].filter((u) => {
    if (u.status !== 'active') return false;
    if (family === 'google') return !hd || hd === '*' || u.hd === hd.toLowerCase();
    if (tid) return u.tid === tid;
    if (segment === 'organizations') return u.tid !== CONSUMER_TENANT;
    if (segment === 'consumers') return u.tid === CONSUMER_TENANT;
    return true;
  });
}

/** A page with one button per user, each submitting `user=<id>` to `action`. */
export function chooserPage(users, action, hidden = {}) {
  const fields = Object.entries(hidden)
    .map(([k, v]) => `<input type="hidden" name="${escapeHtml(k)}" value="${escapeHtml(v)}">`).join('');
  const buttons = users.map((u) => `<li><form method="post" action="${escapeHtml(action)}">${fields}`
    + `<button name="user" value="${escapeHtml(u.id)}" data-email="${escapeHtml(u.email)}">${escapeHtml(u.email)}</button></form></li>`);
  return `<!doctype html><html><head><title>Choose an account</title></head><body><h1>Choose an account</h1>`
    + `<ul>${buttons.join('')}</ul>${users.length ? '' : '<p id="no-users">No account can sign in here.</p>'}</body></html>`;
}

function sendHtml(res, html) {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

/** Why this user may not sign in here, or undefined when they may. */
function refusal(user, family, tenant) {
  if (!user) {
    return family === 'microsoft' ? 'AADSTS50034: the user account does not exist in this directory' : 'no such account';
  }
  if (user.status !== 'active') return `the account is ${user.status}`;
  if (family === 'microsoft' && user.tid !== tenant.tid) {
    return `AADSTS50020: user account ${user.email} does not exist in tenant ${tenant.tid}`;
  }
  return undefined;
}

async function login(ctx, details, req, res, url) {
  const { provider, directory, family, tenant } = ctx;
  const form = await formBody(req);
  const key = form.get('user') ?? url.searchParams.get('user') ?? details.params.user ?? details.params.login_hint;
  if (!key) {
    const users = eligibleUsers(directory, family, { tid: tenant?.tid, hd: details.params.hd });
    return sendHtml(res, chooserPage(users, url.pathname));
  }
  // The same address may exist in several tenants: a tenant's endpoint means its own user.
  const user = directory.findUser(family, key, (u) => u.tid === tenant?.tid);
  const why = refusal(user, family, tenant);
  if (why) {
    const result = { error: 'access_denied', error_description: why };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }
  return provider.interactionFinished(req, res, { login: { accountId: user.id } }, { mergeWithLastSubmission: false });
}

async function consent(ctx, details, req, res) {
  const { provider } = ctx;
  const { params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  grant.addOIDCScope(params.scope);
  const missingClaims = details.prompt.details.missingOIDCClaims;
  if (missingClaims) grant.addOIDCClaims(missingClaims);
  const result = { consent: { grantId: await grant.save() } };
  return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

/** Serves `{issuer}/interaction/{uid}` for one provider. */
export async function handleInteraction(ctx, req, res, url) {
  const details = await ctx.provider.interactionDetails(req, res);
  if (details.prompt.name === 'login') return login(ctx, details, req, res, url);
  return consent(ctx, details, req, res);
}

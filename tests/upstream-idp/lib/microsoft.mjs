// The Microsoft authority: /ms/{tenant}/v2.0/... where {tenant} is a tenant id (its own
// issuer), a domain one tenant owns (an alias of that tenant, as Entra ID resolves it), or one
// of the multi-tenant segments common / organizations / consumers.
import { lookup } from './adapter.mjs';
import { CONSUMER_TENANT } from './directory.mjs';
import { buildProvider, authorizationPath, tokenPath, userinfoPath } from './providers.mjs';
import { chooserPage, eligibleUsers } from './interaction.mjs';
import { sendJson } from './admin.mjs';

const MULTI = new Set(['common', 'organizations', 'consumers']);

export class MicrosoftAuthority {
  constructor({ authority, jwks, directory, serveProvider, ttl, extraScopes }) {
    this.authority = authority; // e.g. http://127.0.0.1:PORT/ms
    this.jwks = jwks;
    this.ttl = ttl;
    this.extraScopes = extraScopes;
    this.directory = directory;
    this.serveProvider = serveProvider; // (ctx, req, res, mount, rest) => void
    this.providers = new Map();
  }

  /** One provider per tenant, built on first use so tenants added at run time just work. */
  contextFor(tid) {
    if (!this.providers.has(tid)) {
      const issuer = `${this.authority}/${tid}/v2.0`;
      const provider = buildProvider({ family: 'microsoft', issuer, jwks: this.jwks, directory: this.directory, ttl: this.ttl, extraScopes: this.extraScopes });
      this.providers.set(tid, { provider, family: 'microsoft', directory: this.directory, tenant: this.directory.microsoft.tenants.get(tid) });
    }
    return this.providers.get(tid);
  }

  tenantFor(segment) {
    const s = segment.toLowerCase();
    return this.directory.microsoft.tenants.get(s) ?? this.directory.tenantByDomain(s);
  }

  /** `rest` is the path after /ms/{segment}/v2.0, query string included. */
  async handle(req, res, segment, rest) {
    if (MULTI.has(segment)) return this.handleMulti(req, res, segment, rest);
    const tenant = this.tenantFor(segment);
    if (!tenant) {
      return sendJson(res, 400, { error: 'invalid_tenant', error_description: `AADSTS90002: Tenant '${segment}' not found.` });
    }
    // A domain alias answers exactly as the tenant does, with the tenant's own issuer and URLs.
    return this.serveTenant(req, res, tenant.tid, rest);
  }

  serveTenant(req, res, tid, rest) {
    return this.serveProvider(this.contextFor(tid), req, res, `/ms/${tid}/v2.0`, rest);
  }

  async handleMulti(req, res, segment, rest) {
    const path = rest.split('?')[0];
    if (path === '/.well-known/openid-configuration') return this.multiDiscovery(res, segment);
    if (path === authorizationPath('microsoft')) return this.multiAuthorize(req, res, segment, rest);
    if (path === tokenPath('microsoft')) return this.multiToken(req, res, rest);
    if (path === userinfoPath('microsoft')) return this.multiUserinfo(req, res, rest);
    // Keys and anything else: every tenant shares the same key, any tenant answers the same.
    return this.serveTenant(req, res, CONSUMER_TENANT, rest);
  }

  /**
   * The multi-tenant documents carry the template issuer `{authority}/{tenantid}/v2.0`, as the
   * real ones do; relying parties must check the token's `iss` against its `tid` themselves.
   */
  async multiDiscovery(res, segment) {
    const base = `${this.authority}/${CONSUMER_TENANT}/v2.0`;
    const doc = await (await fetch(`${base}/.well-known/openid-configuration`)).json();
    const rewritten = JSON.parse(JSON.stringify(doc).replaceAll(`/${CONSUMER_TENANT}/`, `/${segment}/`));
    rewritten.issuer = `${this.authority}/{tenantid}/v2.0`;
    return sendJson(res, 200, rewritten);
  }

  /** Sends the browser on to the chosen user's home tenant, or shows the account chooser. */
  multiAuthorize(req, res, segment, rest) {
    const url = new URL(rest, 'http://x');
    const key = url.searchParams.get('user') ?? url.searchParams.get('login_hint');
    const users = eligibleUsers(this.directory, 'microsoft', { segment });
    const named = this.directory.matchUsers('microsoft', key).filter((u) => users.includes(u));
    const user = named.length === 1 ? named[0] : undefined;
    if (!user) {
      // No hint, an unknown one, or an address in several tenants: the chooser decides
      // (narrowed to the hint's accounts when it matched several).
      const hidden = Object.fromEntries(url.searchParams);
      delete hidden.user;
      // The chooser's buttons come back here as GET parameters, the rest of the request kept.
      const html = chooserPage(named.length > 1 ? named : users, `${this.authority}/${segment}/v2.0${url.pathname}`, hidden).replaceAll('method="post"', 'method="get"');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(html);
    }
    url.searchParams.set('user', user.id);
    res.writeHead(302, { location: `${this.authority}/${user.tid}/v2.0${url.pathname}?${url.searchParams}` });
    return res.end();
  }

  /** Routes a code or refresh token to the tenant that issued it (they share one store). */
  async multiToken(req, res, rest) {
    const text = await readText(req);
    const form = new URLSearchParams(text);
    const model = form.get('grant_type') === 'refresh_token' ? 'RefreshToken' : 'AuthorizationCode';
    const value = form.get(model === 'RefreshToken' ? 'refresh_token' : 'code');
    const tid = this.homeTenantOf(lookup('microsoft', model, value)?.accountId);
    if (!tid) return sendJson(res, 400, { error: 'invalid_grant', error_description: 'AADSTS70000: The provided grant is invalid or expired.' });
    req.body = text; // oidc-provider reads an already consumed body from req.body
    return this.serveTenant(req, res, tid, rest);
  }

  multiUserinfo(req, res, rest) {
    const token = (req.headers.authorization ?? '').replace(/^Bearer /i, '');
    const tid = this.homeTenantOf(lookup('microsoft', 'AccessToken', token)?.accountId);
    if (!tid) return sendJson(res, 401, { error: 'invalid_token' });
    return this.serveTenant(req, res, tid, rest);
  }

  homeTenantOf(accountId) {
    return accountId ? this.directory.microsoft.users.get(accountId)?.tid : undefined;
  }
}

async function readText(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString();
}

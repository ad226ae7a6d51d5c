// oidc-provider instances standing in for Google and for each Microsoft Entra ID tenant.
// Claim shapes follow the real providers: see README.md for the list.
import Provider, { interactionPolicy } from 'oidc-provider';
import { adapterFor } from './adapter.mjs';
import { pairwiseSub } from './directory.mjs';

const { Check } = interactionPolicy;

const TTL = {
  AccessToken: 3600,
  AuthorizationCode: 600,
  IdToken: 3600,
  Interaction: 600,
  Session: 86400,
  Grant: 30 * 86400,
  RefreshToken: 30 * 86400,
};

const CLAIMS = {
  google: {
    openid: ['sub', 'hd', 'azp'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name'],
  },
  microsoft: {
    openid: ['sub', 'oid', 'tid', 'acct', 'ver'],
    email: ['email', 'xms_edov'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
  },
};

// API scopes accepted by default (incremental authorisation tests); the config can replace them.
const API_SCOPES = {
  google: ['https://www.googleapis.com/auth/calendar.readonly', 'https://www.googleapis.com/auth/drive.readonly'],
  microsoft: ['User.Read', 'Calendars.Read', 'Mail.Read'],
};

// Endpoint paths under each issuer. Google's mirror its real ones (minus the separate hosts).
const ROUTES = {
  google: {
    authorization: '/o/oauth2/v2/auth',
    token: '/token',
    userinfo: '/v1/userinfo',
    jwks: '/oauth2/v3/certs',
    revocation: '/revoke',
    end_session: '/logout',
  },
  microsoft: {
    authorization: '/oauth2/v2.0/authorize',
    token: '/oauth2/v2.0/token',
    userinfo: '/oidc/userinfo',
    jwks: '/discovery/v2.0/keys',
    end_session: '/oauth2/v2.0/logout',
  },
};

export const tokenPath = (family) => ROUTES[family].token;
export const authorizationPath = (family) => ROUTES[family].authorization;
export const userinfoPath = (family) => ROUTES[family].userinfo;

function googleClaims(user, use, clientId) {
  const claims = {
    sub: user.id,
    // Google's ID tokens name the client they were issued to; its userinfo does not.
    azp: use === 'id_token' ? clientId : undefined,
    email: user.email,
    email_verified: user.email_verified,
    name: user.name,
    given_name: user.given_name,
    family_name: user.family_name,
  };
  if (user.hd) claims.hd = user.hd; // absent, not null, for consumer accounts
  return claims;
}

function microsoftClaims(user) {
  return {
    sub: user.id, // made pairwise by oidc-provider (subjectTypes below)
    oid: user.id,
    tid: user.tid,
    acct: user.acct,
    ver: '2.0',
    email: user.email, // not verified by Microsoft: only xms_edov says whether it is
    xms_edov: user.xms_edov,
    preferred_username: user.preferred_username,
    name: user.name,
    given_name: user.given_name,
    family_name: user.family_name,
  };
}

/**
 * Finds the account behind a session or token. Suspended and deleted users are not found, which
 * oidc-provider turns into `invalid_grant` at the token endpoint and `invalid_token` at userinfo.
 */
function findAccountFor(directory, family) {
  return async (ctx, id) => {
    const user = directory.activeUser(family, id);
    if (!user) return undefined;
    return {
      accountId: id,
      claims: async (use) => (family === 'google'
        ? googleClaims(user, use, ctx.oidc.client?.clientId)
        : microsoftClaims(user)),
    };
  };
}

/**
 * An existing browser session for one user must not answer a request that names another one
 * (login_hint or user=): tests sign several users in with one browser.
 */
function hintedUserCheck(directory, family) {
  return new Check('hinted_user', 'the request names another user', (ctx) => {
    const key = ctx.oidc.params.user ?? ctx.oidc.params.login_hint;
    const current = ctx.oidc.session?.accountId;
    if (!key || !current) return Check.NO_NEED_TO_PROMPT;
    const user = directory.findUser(family, key, (u) => u.id === current);
    return user?.id === current ? Check.NO_NEED_TO_PROMPT : Check.REQUEST_PROMPT;
  });
}

function policyFor(directory, family) {
  const policy = interactionPolicy.base();
  policy.get('login').checks.push(hintedUserCheck(directory, family));
  return policy;
}

/**
 * Builds one provider. `family` is "google" or "microsoft"; every Microsoft tenant gets its own
 * instance (its own issuer) with the family's shared key and storage.
 */
export function buildProvider({ family, issuer, jwks, directory, ttl = {}, extraScopes }) {
  const issuerPath = new URL(issuer).pathname;
  const provider = new Provider(issuer, {
    adapter: adapterFor(family),
    jwks,
    findAccount: findAccountFor(directory, family),
    claims: CLAIMS[family],
    // oidc-provider drops scopes it does not know; API scopes for the token-access tests must be listed.
    scopes: ['openid', 'email', 'profile', 'offline_access', ...(extraScopes ?? API_SCOPES[family])],
    conformIdTokenClaims: false, // both put the profile claims in the ID token itself
    extraParams: ['hd', 'user', 'access_type', 'domain_hint'],
    routes: ROUTES[family],
    ttl: { ...TTL, ...ttl },
    cookies: { keys: ['latchkey-upstream-emulator-cookie-key'] },
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    pkce: { required: () => false },
    // Entra ID's sub differs per application (pairwise); Google's is the same everywhere.
    subjectTypes: family === 'microsoft' ? ['pairwise'] : ['public'],
    pairwiseIdentifier: async (_ctx, accountId, client) => pairwiseSub(accountId, client.clientId),
    // Refresh tokens live on their own, as upstream ones do, not with the browser session.
    expiresWithSession: async () => false,
    // Entra ID rotates refresh tokens on every use; Google keeps the same one.
    rotateRefreshToken: () => family === 'microsoft',
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: family === 'google' },
      userinfo: { enabled: true },
      // Needed when one browser switches users: oidc-provider ends the old session through
      // its logout endpoint (a self-submitting form) before resuming the authorization.
      rpInitiatedLogout: { enabled: true },
    },
    interactions: {
      policy: policyFor(directory, family),
      url: (_ctx, interaction) => `${issuerPath}/interaction/${interaction.uid}`,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>error</title><pre id="error">${escapeHtml(JSON.stringify(out))}</pre>`;
    },
  });
  provider.on('server_error', (_ctx, err) => console.error(`[${family}] server_error`, err));
  return provider;
}

export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

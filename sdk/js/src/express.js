// Express (or plain node:http) middleware: `withAuth` verifies a token if one is present and
// puts its claims on `req.auth` (null otherwise); `requireAuth` also answers 401 with an
// RFC 6750 `WWW-Authenticate: Bearer` challenge when there is no valid token.

import { createVerifier, InvalidTokenError, JwksUnavailableError } from './verify.js';

export { createVerifier, InvalidTokenError, JwksUnavailableError } from './verify.js';

const verifiers = new WeakMap();

function verifierFor(options) {
  if (options.verifier) return options.verifier;
  let v = verifiers.get(options);
  if (!v) {
    v = createVerifier(options);
    verifiers.set(options, v);
  }
  return v;
}

function cookieValue(header, name) {
  if (typeof header !== 'string') return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    try {
      return decodeURIComponent(value);
    } catch {
      return value;
    }
  }
  return null;
}

/**
 * The token of the request: `Authorization: Bearer …` (RFC 6750 §2.1, scheme
 * case-insensitive), else the cookie `cookieName` (default `latchkey_token`; false to disable).
 */
export function tokenFrom(req, { cookieName = 'latchkey_token' } = {}) {
  const authorization = req.headers?.authorization;
  // Another scheme (Basic, …) carries no bearer token: as if there were none.
  if (typeof authorization === 'string' && /^Bearer(\s|$)/i.test(authorization)) {
    const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(authorization);
    return match ? match[1] : { malformed: true };
  }
  if (cookieName) {
    const fromCookie = req.cookies?.[cookieName] ?? cookieValue(req.headers?.cookie, cookieName);
    if (fromCookie) return fromCookie;
  }
  return null;
}

async function authenticate(req, options) {
  const token = tokenFrom(req, options);
  if (token === null) return { auth: null, error: null, present: false };
  if (typeof token !== 'string') {
    return { auth: null, error: new InvalidTokenError('the Authorization header is not a Bearer token'), present: true };
  }
  try {
    return { auth: await verifierFor(options).verify(token), error: null, present: true, token };
  } catch (error) {
    return { auth: null, error, present: true };
  }
}

/**
 * Verifies the request's token if there is one: `req.auth` is its claims, or null (then
 * `req.authError` says why, when a token was sent but refused). Never answers by itself.
 */
export function withAuth(options) {
  verifierFor(options);
  return async function latchkeyWithAuth(req, res, next) {
    const { auth, error } = await authenticate(req, options);
    req.auth = auth;
    req.authError = error;
    next();
  };
}

function quoted(s) {
  return `"${String(s).replace(/["\\]/g, '')}"`;
}

function refuse(res, status, challenge, body) {
  res.statusCode = status;
  if (challenge) res.setHeader('WWW-Authenticate', challenge);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(body));
}

/**
 * Like `withAuth`, but answers 401 when there is no valid token: without a token, a bare
 * `Bearer` challenge (RFC 6750 §3.1: no error code when the request had no credentials);
 * with a refused token, `error="invalid_token"`. 503 if the JWK Set cannot be fetched.
 * Option `realm` adds a realm to the challenge.
 */
export function requireAuth(options) {
  verifierFor(options);
  const realm = options.realm ? `realm=${quoted(options.realm)}` : '';
  const challenge = (...params) => `Bearer ${[realm, ...params].filter(Boolean).join(', ')}`.trim();
  return async function latchkeyRequireAuth(req, res, next) {
    const { auth, error, present } = await authenticate(req, options);
    req.auth = auth;
    req.authError = error;
    if (auth) return next();
    if (!present) {
      return refuse(res, 401, challenge(), { error: 'unauthorized', error_description: 'a bearer token is required' });
    }
    if (error instanceof JwksUnavailableError) {
      return refuse(res, 503, null, { error: 'temporarily_unavailable', error_description: 'the signing keys cannot be fetched' });
    }
    if (error instanceof InvalidTokenError) {
      return refuse(res, 401, challenge('error="invalid_token"', `error_description=${quoted(error.message)}`), {
        error: 'invalid_token',
        error_description: error.message,
      });
    }
    return next(error);
  };
}

// Verifies Latchkey session JWTs (and, when configured, RFC 9068 access tokens) locally against
// the issuer's JWK Set. The JWK Set is cached, fetched again on an unknown `kid` at most once per
// cooldown (30 s), refreshed after `cacheMaxAge`, and kept for `staleIfError` when Latchkey
// cannot be reached.
//
// Local verification sees a revoked session only when its token expires: that is why session
// tokens live about a minute.

import { decodeProtectedHeader, importJWK, jwtVerify, errors as joseErrors } from 'jose';

/** A token that must be refused (answer 401 with error="invalid_token"). */
export class InvalidTokenError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'InvalidTokenError';
    this.code = 'invalid_token';
  }
}

/** The JWK Set could not be fetched and no usable copy is cached (answer 503). */
export class JwksUnavailableError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'JwksUnavailableError';
    this.code = 'temporarily_unavailable';
  }
}

// The algorithm of a key is fixed by the key, never by the token header. Symmetric (HS*) and
// `none` are never accepted: a public key is not a secret.
const ASYMMETRIC = new Set(['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA', 'Ed25519']);

function algorithmOf(jwk) {
  if (jwk.alg) return ASYMMETRIC.has(jwk.alg) ? jwk.alg : null;
  if (jwk.kty === 'EC') return { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }[jwk.crv] ?? null;
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'RSA') return 'RS256';
  return null;
}

/**
 * A cached JWK Set. `now()` returns milliseconds (injectable for tests).
 */
export class JwksCache {
  constructor({ url, fetch: fetchImpl, cooldown = 30_000, cacheMaxAge = 600_000, staleIfError = 86_400_000, timeout = 5_000, now = Date.now }) {
    this.url = url;
    this.fetch = fetchImpl ?? ((...args) => globalThis.fetch(...args));
    this.cooldown = cooldown;
    this.cacheMaxAge = cacheMaxAge;
    this.staleIfError = staleIfError;
    this.timeout = timeout;
    this.now = now;
    this.keys = null; // Map kid -> { jwk, alg, key: Promise<CryptoKey> }
    this.fetchedAt = -Infinity;
    this.attemptedAt = -Infinity;
    this.inflight = null;
  }

  async #load() {
    this.attemptedAt = this.now();
    const signal = AbortSignal.timeout(this.timeout);
    const res = await this.fetch(this.url, { headers: { accept: 'application/json' }, redirect: 'error', signal });
    if (!res.ok) throw new Error(`${this.url} answered ${res.status}`);
    const body = await res.json();
    if (!body || !Array.isArray(body.keys)) throw new Error(`${this.url} is not a JWK Set`);
    const keys = new Map();
    for (const jwk of body.keys) {
      if (typeof jwk?.kid !== 'string' || (jwk.use && jwk.use !== 'sig')) continue;
      if (jwk.d || jwk.k) continue; // private or symmetric material has no place in a JWK Set
      const alg = algorithmOf(jwk);
      if (!alg) continue;
      keys.set(jwk.kid, { jwk, alg, key: null });
    }
    this.keys = keys;
    this.fetchedAt = this.now();
  }

  /** Fetches the set again (concurrent callers share one request). */
  refresh() {
    if (!this.inflight) {
      this.inflight = this.#load().finally(() => { this.inflight = null; });
    }
    return this.inflight;
  }

  async #ensureFresh() {
    const age = this.now() - this.fetchedAt;
    if (this.keys && age < this.cacheMaxAge) return;
    try {
      await this.refresh();
    } catch (e) {
      // Stale-if-error: an old copy still verifies while Latchkey is unreachable.
      if (this.keys && age < this.cacheMaxAge + this.staleIfError) return;
      throw new JwksUnavailableError(`could not fetch the JWK Set: ${e.message}`, { cause: e });
    }
  }

  /** The key and its algorithm for `kid`, or throws InvalidTokenError / JwksUnavailableError. */
  async get(kid) {
    await this.#ensureFresh();
    let entry = this.keys.get(kid);
    if (!entry && this.now() - this.attemptedAt >= this.cooldown) {
      // An unknown kid may be a new key after a rotation: look once, then not again for a while.
      try {
        await this.refresh();
      } catch {
        // stale-if-error: keep the keys we have
      }
      entry = this.keys.get(kid);
    }
    if (!entry) throw new InvalidTokenError('the token was signed with an unknown key');
    entry.key ??= importJWK(entry.jwk, entry.alg);
    try {
      return { key: await entry.key, alg: entry.alg };
    } catch (e) {
      entry.key = null;
      throw new InvalidTokenError('the signing key cannot be used', { cause: e });
    }
  }
}

function list(value) {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

function normalizeTyp(typ) {
  if (typeof typ !== 'string') return null;
  const t = typ.toLowerCase();
  return t.startsWith('application/') ? t.slice('application/'.length) : t;
}

/**
 * Creates a verifier.
 *
 * Options:
 * - `issuer` (required): compared byte for byte with `iss`.
 * - `authorizedParties`: origins whose session tokens are accepted (the token's `azp`, which
 *   Latchkey sets to the page's origin). Session tokens (`typ: JWT`) are refused without it.
 * - `audience`: accepted `aud` values. Session tokens carrying an `aud` must match it; RFC 9068
 *   access tokens (`typ: at+jwt`) are accepted only with `acceptAccessTokens: true` and an `aud`
 *   from this list.
 * - `clockSkew` (seconds, default 5), `jwksUri` (default {issuer}/.well-known/jwks.json),
 *   `jwksCooldown` (ms, 30 000), `jwksMaxAge` (ms, 600 000), `jwksStaleIfError` (ms, 86 400 000),
 *   `fetch`, and for tests `now` (ms clock) and `currentTime` (seconds for exp/nbf checks).
 */
export function createVerifier(options = {}) {
  const { issuer } = options;
  if (typeof issuer !== 'string' || !issuer) throw new TypeError('createVerifier: `issuer` is required');
  const authorizedParties = list(options.authorizedParties).map(String);
  const audience = list(options.audience).map(String);
  const acceptAccessTokens = options.acceptAccessTokens === true;
  if (!authorizedParties.length && !(acceptAccessTokens && audience.length)) {
    throw new TypeError('createVerifier: set `authorizedParties` (session tokens) or `acceptAccessTokens` with an `audience`');
  }
  const clockSkew = options.clockSkew ?? 5;
  const jwks = options.jwks ?? new JwksCache({
    url: options.jwksUri ?? `${issuer.replace(/\/+$/, '')}/.well-known/jwks.json`,
    fetch: options.fetch,
    cooldown: options.jwksCooldown,
    cacheMaxAge: options.jwksMaxAge,
    staleIfError: options.jwksStaleIfError,
    now: options.now,
  });

  async function verify(token) {
    if (typeof token !== 'string' || token.split('.').length !== 3) {
      throw new InvalidTokenError('the token is not a signed JWT');
    }
    let header;
    try {
      header = decodeProtectedHeader(token);
    } catch (e) {
      throw new InvalidTokenError('the token header is malformed', { cause: e });
    }
    if (typeof header.alg !== 'string' || !ASYMMETRIC.has(header.alg)) {
      throw new InvalidTokenError(`the algorithm ${JSON.stringify(header.alg)} is not accepted`);
    }
    const typ = normalizeTyp(header.typ);
    const isAccessToken = typ === 'at+jwt';
    if (typ !== 'jwt' && !isAccessToken) throw new InvalidTokenError('the token type is not accepted');
    if (isAccessToken && !acceptAccessTokens) throw new InvalidTokenError('access tokens are not accepted here');
    if (typeof header.kid !== 'string') throw new InvalidTokenError('the token names no key');
    if (header.crit !== undefined) throw new InvalidTokenError('critical header parameters are not understood');

    const { key, alg } = await jwks.get(header.kid);
    // Ed25519 keys may be announced as "EdDSA" or "Ed25519"; anything else must match exactly.
    const sameFamily = alg === header.alg || (alg === 'EdDSA' && header.alg === 'Ed25519');
    if (!sameFamily) throw new InvalidTokenError('the token algorithm does not match its key');

    const at = options.currentTime?.();
    let payload;
    try {
      ({ payload } = await jwtVerify(token, key, {
        algorithms: [header.alg],
        issuer,
        clockTolerance: clockSkew,
        currentDate: at == null ? undefined : new Date(at * 1000),
        requiredClaims: ['iss', 'sub', 'exp', 'iat'],
      }));
    } catch (e) {
      if (e instanceof joseErrors.JOSEError) throw new InvalidTokenError(describe(e), { cause: e });
      throw e;
    }

    const aud = list(payload.aud);
    if (isAccessToken) {
      if (!aud.some((a) => audience.includes(a))) throw new InvalidTokenError('the token is not meant for this audience');
    } else {
      if (!authorizedParties.length) throw new InvalidTokenError('session tokens are not accepted here');
      if (typeof payload.azp !== 'string' || !authorizedParties.includes(payload.azp)) {
        throw new InvalidTokenError('the token was issued to another party');
      }
      if (aud.length && !aud.some((a) => audience.includes(a))) {
        throw new InvalidTokenError('the token is not meant for this audience');
      }
    }
    return payload;
  }

  return { verify, jwks };
}

function describe(e) {
  switch (e.code) {
    case 'ERR_JWT_EXPIRED': return 'the token expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (e.claim === 'nbf') return 'the token is not valid yet';
      if (e.claim === 'iss') return 'the token comes from another issuer';
      return `the token's ${e.claim} claim is invalid`;
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED': return 'the token signature is invalid';
    default: return 'the token is invalid';
  }
}

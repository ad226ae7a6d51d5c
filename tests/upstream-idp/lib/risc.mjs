// Google Cross-Account Protection (RISC): Security Event Tokens signed with the Google stand-in's
// published key, so a receiver can verify them against the issuer's JWKS.
import { randomUUID } from 'node:crypto';
import { SignJWT, importJWK } from 'jose';
import { InputError } from './directory.mjs';

const RISC = 'https://schemas.openid.net/secevent/risc/event-type/';
const OAUTH = 'https://schemas.openid.net/secevent/oauth/event-type/';

/** Short names accepted by the admin API; full event type URIs are accepted as they are. */
export const EVENT_TYPES = {
  'sessions-revoked': `${RISC}sessions-revoked`,
  'tokens-revoked': `${OAUTH}tokens-revoked`,
  'token-revoked': `${OAUTH}token-revoked`,
  'account-disabled': `${RISC}account-disabled`,
  'account-enabled': `${RISC}account-enabled`,
  'account-purged': `${RISC}account-purged`,
  'account-credential-change-required': `${RISC}account-credential-change-required`,
  verification: `${RISC}verification`,
};

function eventBody(type, { iss, sub, reason, state }) {
  if (type === EVENT_TYPES.verification) return { state: state ?? randomUUID() };
  const body = { subject: { subject_type: 'iss-sub', iss, sub } };
  if (reason) body.reason = reason;
  return body;
}

/**
 * Builds and signs one SET. `input`: client_id (the audience), sub or user, event, optional
 * reason, jti, iat (unix seconds), iss (default: the Google issuer). `key` is a private JWK.
 */
export async function signSet(input, { issuer, key, directory }) {
  if (!input.client_id) throw new InputError('client_id is required');
  const type = EVENT_TYPES[input.event] ?? input.event;
  if (!type) throw new InputError('event is required');
  const sub = input.sub ?? directory.findUser('google', input.user)?.id;
  if (!sub && type !== EVENT_TYPES.verification) throw new InputError('sub or a known user is required');
  const iss = input.iss ?? issuer;
  const claims = { events: { [type]: eventBody(type, { ...input, iss: input.subject_iss ?? issuer, sub }) } };
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: key.kid })
    .setIssuer(iss)
    .setAudience(input.client_id)
    .setJti(input.jti ?? randomUUID())
    .setIssuedAt(input.iat ?? Math.floor(Date.now() / 1000));
  return jwt.sign(await importJWK(key, 'RS256'));
}

function isLoopback(url) {
  const { hostname, protocol } = new URL(url);
  return protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(hostname);
}

/** POSTs a SET the way Google's transmitter does. Loopback receivers only: never the internet. */
export async function deliverSet(set, url) {
  if (!isLoopback(url)) throw new InputError('deliver_to must be an http loopback URL');
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/secevent+jwt', accept: 'application/json' },
    body: set,
  });
  return { status: res.status, body: await res.text() };
}

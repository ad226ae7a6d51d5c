// Test fixtures: an issuer with rotating keys whose JWK Set is served through an injected
// fetch (no network), and a clock the tests move by hand.
import { SignJWT, exportJWK, generateKeyPair } from 'jose';

export const ISSUER = 'https://id.example.test';
export const APP = 'https://app.example.test';

export class FakeIssuer {
  constructor() {
    this.keys = []; // { kid, alg, privateKey, jwk }
    this.jwksRequests = 0;
    this.down = false;
    this.fetch = async (url) => {
      this.jwksRequests += 1;
      if (this.down) throw new TypeError('fetch failed');
      if (url !== `${ISSUER}/.well-known/jwks.json`) return new Response('not found', { status: 404 });
      return Response.json({ keys: this.keys.map((k) => k.jwk) });
    };
  }

  async addKey(kid, alg = 'ES256') {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
    const key = { kid, alg, privateKey, publicKey, jwk };
    this.keys.push(key);
    return key;
  }

  removeKey(kid) {
    this.keys = this.keys.filter((k) => k.kid !== kid);
  }

  /** A session token as Latchkey mints it, with overrides. */
  async token({ kid, claims = {}, header = {}, now = Math.floor(Date.now() / 1000) } = {}) {
    const key = kid ? this.keys.find((k) => k.kid === kid) : this.keys.at(-1);
    const payload = { iss: ISSUER, sub: 'usr_1', sid: 'ses_1', azp: APP, iat: now, nbf: now, exp: now + 60, ...claims };
    for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
    return new SignJWT(payload).setProtectedHeader({ alg: key.alg, typ: 'JWT', kid: key.kid, ...header }).sign(key.privateKey);
  }
}

export class Clock {
  constructor() { this.ms = 1_000_000; }
  now = () => this.ms;
  advance(seconds) { this.ms += seconds * 1000; }
}

export function b64url(value) {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

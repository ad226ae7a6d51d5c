// Signing keys, generated at start (nothing is read from or written to disk).
import { generateKeyPairSync, randomUUID } from 'node:crypto';

/** An RS256 private JWK with a kid, as oidc-provider and jose take it. */
export function rsaJwk() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}


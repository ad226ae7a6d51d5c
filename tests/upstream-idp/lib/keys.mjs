// Signing keys, generated at start (nothing is read from or written to disk).
import { createPrivateKey, generateKeyPairSync, randomUUID } from 'node:crypto';

/**
 * An RS256 private JWK with a kid, as oidc-provider and jose take it. Generated as PEM and
 * exported from a key object of its own: exporting the generated key object itself can deadlock
 * Node 20 at start-up (a garbage collection during the JWK export finalizes the generation job,
 * whose destructor waits for the lock the export holds).
 */
export function rsaJwk() {
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const jwk = createPrivateKey(privateKey).export({ format: 'jwk' });
  return { ...jwk, kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

// Signing keys, generated at start (nothing is read from or written to disk).
import { createPrivateKey, generateKeyPairSync, randomUUID } from 'node:crypto';

/** An RS256 private JWK with a kid, as oidc-provider and jose take it. */
export function rsaJwk() {
  // Exporting the generated KeyObject itself as a JWK can deadlock Node 20: a garbage collection
  // during the export runs the key-generation job's destructor, which waits for the lock the
  // export holds (seen as a start-up that never prints its ready line). The PEM comes out of
  // the job as a string, and a key re-imported from it belongs to no job.
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const jwk = createPrivateKey(privateKey).export({ format: 'jwk' });
  return { ...jwk, kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

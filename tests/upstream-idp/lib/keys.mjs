// Signing keys, generated at start (nothing is read from or written to disk).
import { createPrivateKey, generateKeyPairSync, randomUUID } from 'node:crypto';

/** An RS256 private JWK with a kid, as oidc-provider and jose take it. */
export function rsaJwk() {
  // Node 20 can deadlock exporting a generated KeyObject as a JWK: the export holds the key's
  // mutex while allocating, and a garbage collection then finalizes the finished keygen job,
  // whose destructor takes the same mutex (seen as an emulator that never prints its ready
  // line). The key is generated as PEM and re-imported, so the exported key shares no mutex
  // with any keygen job.
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const jwk = createPrivateKey(privateKey).export({ format: 'jwk' });
  return { ...jwk, kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

// The peer of scripts/bench-resource-endpoints: oidc-provider (the version pinned for the
// upstream emulator, tests/upstream-idp) set up as its users run it, with the endpoints a
// resource server calls.
//
//   NODE_ENV=production node scripts/bench/oidc-provider-peer.mjs --tokens-out FILE [--tokens 20000]
//       [--grants 200] [--port 0]
//
// One confidential client (client_secret_basic), introspection enabled, an ES256 signing key
// (like for like with Latchkey's ES256 tokens), findAccount answering a few claims, and
// oidc-provider's own memory adapter. Its default storage is an LRU of 1,000 entries (2,000
// at most), which would evict most of the tokens minted here, so the same adapter class gets
// an LRU large enough for all of them. Access tokens are oidc-provider's default format, opaque
// (what its users get): each request looks the token up in the adapter.
//
// Before listening it mints --tokens access tokens spread over --grants grants (as Latchkey's
// tokens are spread over grants), with scope "openid email", through oidc-provider's own
// models, and writes them one per line to --tokens-out. Then it prints one JSON line on stdout
// with the issuer, the endpoints, the client's credentials and the token format. Listens on
// 127.0.0.1 only; stops on SIGTERM, SIGINT, or when stdin (a pipe) closes.
import { createPrivateKey, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { fstatSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from '../../tests/upstream-idp/node_modules/oidc-provider/lib/index.js';
import MemoryAdapter from '../../tests/upstream-idp/node_modules/oidc-provider/lib/adapters/memory_adapter.js';
import LRU from '../../tests/upstream-idp/node_modules/oidc-provider/lib/helpers/lru.js';

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const tokens = Number(option('tokens', '20000'));
const grants = Math.min(Number(option('grants', '200')), tokens);
const tokensOut = option('tokens-out');
const port = Number(option('port', '0'));
if (!tokensOut || !(tokens > 0) || !(grants > 0)) {
  process.stderr.write('usage: oidc-provider-peer.mjs --tokens-out FILE [--tokens N] [--grants N] [--port P]\n');
  process.exit(2);
}

// Generated as PEM and exported from a key object of its own (see tests/upstream-idp/lib/keys.mjs:
// exporting the generated key object itself can deadlock Node 20).
function es256Jwk() {
  const { privateKey } = generateKeyPairSync('ec', {
    namedCurve: 'P-256',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const jwk = createPrivateKey(privateKey).export({ format: 'jwk' });
  return { ...jwk, kid: randomUUID(), alg: 'ES256', use: 'sig' };
}

const client = {
  client_id: 'bench-client',
  client_secret: randomBytes(32).toString('base64url'),
  redirect_uris: ['http://127.0.0.1:9/cb'],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: 'ES256',
};

const store = new LRU({ maxSize: Math.max(1000, 2 * (tokens + grants)) });

const server = createServer();
await new Promise((resolve) => { server.listen(port, '127.0.0.1', resolve); });
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  adapter: (model) => new MemoryAdapter(model, store),
  clients: [client],
  jwks: { keys: [es256Jwk()] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id,
      email: `${id}@example.com`,
      email_verified: true,
      name: `Bench User ${id}`,
    }),
  }),
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  scopes: ['openid', 'email', 'profile', 'offline_access'],
  features: { introspection: { enabled: true }, devInteractions: { enabled: false } },
  ttl: { AccessToken: 3600, Grant: 86400, RefreshToken: 86400, AuthorizationCode: 60, IdToken: 300, Interaction: 600, Session: 86400 },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
});
provider.on('server_error', (ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));

const registered = await provider.Client.find(client.client_id);
const minted = [];
for (let g = 0; g < grants; g += 1) {
  const accountId = `user-${g % 10}`;
  const grant = new provider.Grant({ accountId, clientId: client.client_id });
  grant.addOIDCScope('openid email');
  const grantId = await grant.save();
  const perGrant = Math.floor(tokens / grants) + (g < tokens % grants ? 1 : 0);
  for (let i = 0; i < perGrant; i += 1) {
    const at = new provider.AccessToken({
      accountId,
      client: registered,
      grantId,
      scope: 'openid email',
      gty: 'authorization_code',
    });
    minted.push(await at.save());
  }
}
writeFileSync(tokensOut, `${minted.join('\n')}\n`);

server.on('request', provider.callback());

function stop() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (fstatSync(0).isFIFO()) process.stdin.on('end', stop).resume();

const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
process.stdout.write(`${JSON.stringify({
  issuer,
  introspection_endpoint: discovery.introspection_endpoint,
  userinfo_endpoint: discovery.userinfo_endpoint,
  discovery_endpoint: `${issuer}/.well-known/openid-configuration`,
  client_id: client.client_id,
  client_secret: client.client_secret,
  tokens: minted.length,
  grants,
  token_format: 'opaque',
  storage: `oidc-provider MemoryAdapter, LRU of ${Math.max(1000, 2 * (tokens + grants))}`,
  oidc_provider: JSON.parse(readFileSync(new URL('../../tests/upstream-idp/node_modules/oidc-provider/package.json', import.meta.url))).version,
  node: process.version,
})}\n`);

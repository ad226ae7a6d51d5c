// The admin API: JSON over HTTP under /admin, loopback only. Documented in README.md.
import { SignJWT, importJWK, base64url } from 'jose';
import { InputError } from './directory.mjs';
import { signSet, deliverSet } from './risc.mjs';

const FAMILIES = new Set(['google', 'microsoft']);

async function jsonBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString();
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new InputError('the body is not JSON');
  }
}

export function sendJson(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(value));
}

/**
 * Signs arbitrary claims for abuse tests: with the family's published key (default), with a
 * key nobody publishes (`forged: true`, same kid, so only the signature is wrong), or unsigned
 * (`alg: "none"`).
 */
async function signAny(body, state) {
  const family = body.family ?? 'google';
  if (!FAMILIES.has(family)) throw new InputError('family must be google or microsoft');
  const claims = body.claims ?? {};
  const published = state.keys[family];
  if (body.alg === 'none') {
    const part = (v) => base64url.encode(JSON.stringify(v));
    return `${part({ alg: 'none', ...body.header })}.${part(claims)}.`;
  }
  const key = body.forged ? { ...state.keys.forged, kid: published.kid } : published;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: published.kid, ...body.header })
    .sign(await importJWK(key, 'RS256'));
}

async function risc(body, state) {
  const key = body.forged ? { ...state.keys.forged, kid: state.keys.google.kid } : state.keys.google;
  const set = await signSet(body, { issuer: state.googleIssuer, key, directory: state.directory });
  const delivery = body.deliver_to ? await deliverSet(set, body.deliver_to) : undefined;
  return { set, delivery };
}

const ADDERS = {
  'google/users': (d, b) => d.addGoogleUser(b),
  'google/clients': (d, b) => d.addClient('google', b),
  'microsoft/tenants': (d, b) => d.addTenant(b),
  'microsoft/users': (d, b) => d.addMicrosoftUser(b),
  'microsoft/clients': (d, b) => d.addClient('microsoft', b),
};

const STATUS_FOR = { suspend: 'suspended', delete: 'deleted', reinstate: 'active' };

async function route(method, parts, body, state) {
  const [family, what, key, action] = parts;
  const path = parts.join('/');
  if (method === 'GET' && path === 'state') return { ...state.directory.snapshot(), outage: state.outage };
  if (method === 'POST' && ADDERS[path]) {
    // An array adds many at once (benchmarks create thousands of users).
    const add = (item) => ADDERS[path](state.directory, item);
    return Array.isArray(body) ? body.map(add) : add(body);
  }
  if (method === 'POST' && what === 'users' && STATUS_FOR[action] && FAMILIES.has(family)) {
    const { user, revoked } = state.directory.setStatus(family, decodeURIComponent(key), STATUS_FOR[action]);
    return { id: user.id, status: user.status, revoked };
  }
  if (what === 'outage' && FAMILIES.has(family) && parts.length === 2) {
    const status = body.status ?? 503;
    if (method === 'POST' && status !== 'reset' && !(Number.isInteger(status) && status >= 400 && status <= 599)) {
      throw new InputError('status must be an HTTP error status or "reset"');
    }
    state.outage[family] = method === 'POST' ? status : null;
    return { outage: state.outage };
  }
  if (method === 'POST' && path === 'google/risc') return risc(body, state);
  if (method === 'POST' && path === 'sign') return { jwt: await signAny(body, state) };
  if (method === 'POST' && path === 'shutdown') {
    setImmediate(() => state.shutdown());
    return { stopping: true };
  }
  return undefined;
}

function isLoopback(address) {
  return ['127.0.0.1', '::1', '::ffff:127.0.0.1'].includes(address);
}

/** Serves /admin/...; `rest` is the path after /admin/. */
export async function handleAdmin(req, res, rest, state) {
  if (!isLoopback(req.socket.remoteAddress)) return sendJson(res, 403, { error: 'loopback only' });
  try {
    const body = req.method === 'POST' ? await jsonBody(req) : {};
    const result = await route(req.method, rest.split('/').filter(Boolean), body, state);
    if (result === undefined) return sendJson(res, 404, { error: 'no such admin endpoint' });
    return sendJson(res, 200, result);
  } catch (err) {
    if (err instanceof InputError) return sendJson(res, 400, { error: err.message });
    console.error('[admin]', err);
    return sendJson(res, 500, { error: String(err) });
  }
}

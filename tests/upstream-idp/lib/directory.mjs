// The emulated upstream directories: Google users, Microsoft tenants and users, and the OAuth
// clients of both. Filled from the config file and changed at run time by the admin API.
import { createHash, createHmac } from 'node:crypto';
import { putClient, revokeAccount } from './adapter.mjs';

/** Microsoft's tenant for personal accounts (outlook.com, hotmail.com, ...). */
export const CONSUMER_TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad';

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class InputError extends Error {}

function need(value, what) {
  if (value === undefined || value === null || value === '') throw new InputError(`${what} is required`);
  return value;
}

function digest(text) {
  return createHash('sha256').update(text).digest();
}

/** Google subjects are 21-digit decimal strings; derived from the email so they are stable. */
function googleSubFor(email) {
  const n = digest(`google:${email}`).readBigUInt64BE(0) % 10n ** 20n;
  return `1${n.toString().padStart(20, '0')}`;
}

/** Object ids are GUIDs; derived from tenant and email so they are stable across runs. */
function guidFor(text) {
  const h = digest(text).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * Entra ID's `sub` is pairwise: the same user gets a different subject in every application.
 * Like the real one it is 43 base64url characters, stable for a (user, client) pair.
 */
export function pairwiseSub(oid, clientId) {
  return createHmac('sha256', 'latchkey-upstream-emulator').update(`${oid}|${clientId}`).digest('base64url');
}

function splitName(user) {
  const name = user.name ?? user.email.split('@')[0];
  const [first, ...rest] = name.split(' ');
  return { name, given_name: user.given_name ?? first, family_name: user.family_name ?? (rest.join(' ') || undefined) };
}

function normaliseClient(c) {
  return {
    client_id: need(c.client_id, 'client_id'),
    client_secret: need(c.client_secret, 'client_secret'),
    redirect_uris: need(c.redirect_uris, 'redirect_uris'),
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
  };
}

export class Directory {
  constructor() {
    this.google = { users: new Map(), clients: new Map() };
    this.microsoft = { users: new Map(), clients: new Map(), tenants: new Map() };
    this.addTenant({ tid: CONSUMER_TENANT, name: 'Microsoft personal accounts', domains: [] });
  }

  load(config) {
    for (const c of config.google?.clients ?? []) this.addClient('google', c);
    for (const u of config.google?.users ?? []) this.addGoogleUser(u);
    for (const c of config.microsoft?.clients ?? []) this.addClient('microsoft', c);
    for (const t of config.microsoft?.tenants ?? []) this.addTenant(t);
    for (const u of config.microsoft?.users ?? []) this.addMicrosoftUser(u);
  }

  addClient(family, input) {
    const client = normaliseClient(input);
    this[family].clients.set(client.client_id, client);
    putClient(family, client);
    return client;
  }

  addGoogleUser(input) {
    const email = need(input.email, 'email').toLowerCase();
    const user = {
      id: input.sub ?? googleSubFor(email),
      email,
      email_verified: input.email_verified ?? true,
      hd: input.hd, // Workspace users only; consumer (gmail-like) users have none.
      ...splitName({ ...input, email }),
      status: 'active',
    };
    this.google.users.set(user.id, user);
    return user;
  }

  addTenant(input) {
    const tid = need(input.tid, 'tid').toLowerCase();
    if (!GUID.test(tid)) throw new InputError('tid must be a GUID');
    const tenant = { tid, name: input.name ?? tid, domains: (input.domains ?? []).map((d) => d.toLowerCase()) };
    this.microsoft.tenants.set(tid, tenant);
    return tenant;
  }

  addMicrosoftUser(input) {
    const email = need(input.email, 'email').toLowerCase();
    const tid = need(input.tid, 'tid').toLowerCase();
    if (!this.microsoft.tenants.has(tid)) throw new InputError(`unknown tenant ${tid}`);
    const user = {
      id: input.oid ?? guidFor(`${tid}|${email}`),
      tid,
      email,
      preferred_username: input.preferred_username ?? email,
      acct: input.acct ?? 0, // 0 = member, 1 = guest
      xms_edov: input.xms_edov === true,
      ...splitName({ ...input, email }),
      status: 'active',
    };
    this.microsoft.users.set(user.id, user);
    return user;
  }

  /**
   * Users matching a key: an id (Google sub / Microsoft oid) names one; an email or
   * preferred_username may name several (the same address in two Microsoft tenants).
   */
  matchUsers(family, key) {
    if (!key) return [];
    const users = this[family].users;
    if (users.has(key)) return [users.get(key)];
    const k = String(key).toLowerCase();
    return [...users.values()].filter((u) => u.email === k || u.preferred_username === k);
  }

  /** The user a key names; among several, the first one `prefer` accepts, else the first. */
  findUser(family, key, prefer = () => false) {
    const found = this.matchUsers(family, key);
    return found.find(prefer) ?? found[0];
  }

  /** Users who may sign in at all (suspended and deleted ones may not). */
  activeUser(family, id) {
    const user = this[family].users.get(id);
    return user?.status === 'active' ? user : undefined;
  }

  tenantByDomain(domain) {
    const d = String(domain).toLowerCase();
    return [...this.microsoft.tenants.values()].find((t) => t.domains.includes(d));
  }

  /** Moves a user to "active", "suspended" or "deleted"; leaving "active" revokes everything. */
  setStatus(family, key, status) {
    const found = this.matchUsers(family, key);
    if (found.length > 1) throw new InputError(`${key} names ${found.length} users: use the id`);
    const [user] = found;
    if (!user) throw new InputError(`unknown user ${key}`);
    user.status = status;
    const revoked = status === 'active' ? 0 : revokeAccount(family, user.id);
    return { user, revoked };
  }

  snapshot() {
    const list = (m) => [...m.values()];
    return {
      google: { users: list(this.google.users), clients: list(this.google.clients) },
      microsoft: {
        tenants: list(this.microsoft.tenants),
        users: list(this.microsoft.users),
        clients: list(this.microsoft.clients),
      },
    };
  }
}

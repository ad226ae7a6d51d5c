// In-memory storage for oidc-provider. One store per upstream family ("google", "microsoft"):
// every Microsoft tenant is its own Provider instance, but they share one store so that the
// /common and /organizations endpoints can find which tenant issued a code or token, and so
// that suspending a user can revoke everything issued to them in one sweep.

const stores = new Map();

function storeFor(family) {
  if (!stores.has(family)) stores.set(family, new Map());
  return stores.get(family);
}

/** Returns an oidc-provider adapter class bound to one family's store. */
export function adapterFor(family) {
  const store = storeFor(family);
  return class MemoryAdapter {
    constructor(model) {
      this.model = model;
    }

    key(id) {
      return `${this.model}:${id}`;
    }

    async upsert(id, payload, expiresIn) {
      const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : undefined;
      store.set(this.key(id), { payload, expiresAt });
    }

    async find(id) {
      return live(store, this.key(id))?.payload;
    }

    async findByUserCode(userCode) {
      return findWhere(store, this.model, (p) => p.userCode === userCode);
    }

    async findByUid(uid) {
      return findWhere(store, this.model, (p) => p.uid === uid);
    }

    async consume(id) {
      const entry = live(store, this.key(id));
      if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
    }

    async destroy(id) {
      store.delete(this.key(id));
    }

    async revokeByGrantId(grantId) {
      for (const [k, v] of store) if (v.payload.grantId === grantId) store.delete(k);
    }
  };
}

/**
 * Drops expired entries from every store. Entries are otherwise only dropped when read, and a
 * long benchmark issues an access token per refresh.
 */
export function sweepExpired() {
  const now = Date.now();
  for (const store of stores.values()) {
    for (const [k, v] of store) if (v.expiresAt && v.expiresAt < now) store.delete(k);
  }
}

function live(store, key) {
  const entry = store.get(key);
  if (entry?.expiresAt && entry.expiresAt < Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry;
}

function findWhere(store, model, predicate) {
  for (const [k, v] of store) {
    if (k.startsWith(`${model}:`) && predicate(v.payload)) return v.payload;
  }
  return undefined;
}

/** Looks up a stored artefact (a code, access or refresh token) by its opaque value. */
export function lookup(family, model, id) {
  return live(storeFor(family), `${model}:${id}`)?.payload;
}

/**
 * Deletes every session, grant, code and token of an account. Called when a user is suspended
 * or deleted, so that reinstating the user later cannot bring any refused token back.
 */
export function revokeAccount(family, accountId) {
  const store = storeFor(family);
  let removed = 0;
  for (const [k, v] of store) {
    if (v.payload.accountId === accountId) {
      store.delete(k);
      removed += 1;
    }
  }
  return removed;
}

/** Stores a client's metadata: oidc-provider reads non-static clients from the adapter. */
export function putClient(family, metadata) {
  storeFor(family).set(`Client:${metadata.client_id}`, { payload: metadata });
}

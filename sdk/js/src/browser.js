// Latchkey browser SDK: keeps a short-lived session token fresh for a page on any origin listed
// in LATCHKEY_ALLOWED_ORIGINS, and defines the <latchkey-sign-in-button> and
// <latchkey-user-button> web components. One dependency-free ES module, served by Latchkey
// itself at {issuer}/v1/sdk/latchkey.js (and published as @latchkey/js/browser).
//
// The session lives in Latchkey's own cookie (HttpOnly, never visible here). This module only
// asks POST {issuer}/v1/session/token for a JWT of about a minute, keeps it in memory, and
// asks again before it expires. A 401 there means the session is gone.

const DEFAULT_REFRESH_MS = 50_000;
// A token is handed out by getToken() only while it has at least this long left.
const MIN_REMAINING_MS = 10_000;
// Focus and visibility refresh only tokens older than this (a burst of events is one request).
const FOCUS_REFRESH_AFTER_MS = 5_000;
const RETRY_MS = [1_000, 2_000, 5_000, 10_000];

const SIGNED_IN = 'signed-in';
const SIGNED_OUT = 'signed-out';
const LOADING = 'loading';

/** A network failure or an unexpected answer (not a 401): the session may still be alive. */
export class LatchkeyError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'LatchkeyError';
    this.status = status;
  }
}

function decodePayload(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(part + '='.repeat((4 - (part.length % 4)) % 4));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}

function trimIssuer(issuer) {
  if (typeof issuer !== 'string' || !/^https?:\/\//.test(issuer)) {
    throw new TypeError('createLatchkey: `issuer` must be an http(s) URL such as https://id.example.com');
  }
  return issuer.replace(/\/+$/, '');
}

let defaultClient = null;
const waitingForClient = new Set();

/** The client the web components use unless one is set on them (`element.latchkey = client`). */
export function getDefaultClient() {
  return defaultClient;
}

export function setDefaultClient(client) {
  defaultClient = client;
  for (const el of waitingForClient) el.latchkey = client;
  waitingForClient.clear();
}

/**
 * Creates a client for the Latchkey at `issuer`.
 *
 * Options: `issuer` (required), `template` (mint tokens from a named JWT template),
 * `refreshInterval` (ms, default 50 000), `autoStart` (default true), `fetch`.
 * The first client created becomes the components' default client.
 */
export function createLatchkey(options = {}) {
  const issuer = trimIssuer(options.issuer);
  const fetchImpl = options.fetch ?? ((...args) => globalThis.fetch(...args));
  const refreshInterval = options.refreshInterval ?? DEFAULT_REFRESH_MS;
  const tokenPath = options.template
    ? `/v1/session/token/${encodeURIComponent(options.template)}`
    : '/v1/session/token';

  let state = LOADING;
  let token = null;
  let claims = null;
  let receivedAt = 0;
  let expiresAt = 0; // local clock (ms): skew-free, from the token's own lifetime
  let inflight = null;
  let timer = null;
  let failures = 0;
  let user = null;
  let userRequest = null;
  let started = false;
  const listeners = { signedOut: new Set(), change: new Set(), token: new Set() };

  function emit(kind, value) {
    for (const cb of [...listeners[kind]]) {
      try {
        cb(value);
      } catch (e) {
        setTimeout(() => { throw e; });
      }
    }
  }

  function on(kind, cb) {
    listeners[kind].add(cb);
    return () => listeners[kind].delete(cb);
  }

  function setState(next) {
    const previous = state;
    state = next;
    if (previous !== next) {
      emit('change', next);
      if (previous === SIGNED_IN && next === SIGNED_OUT) emit('signedOut');
    }
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = null;
    if (started && state !== SIGNED_OUT) {
      timer = setTimeout(() => { refresh().catch(() => {}); }, ms);
    }
  }

  function signedOut() {
    token = null;
    claims = null;
    user = null;
    clearTimeout(timer);
    timer = null;
    setState(SIGNED_OUT);
  }

  function accept(body) {
    const now = Date.now();
    const payload = decodePayload(body.jwt);
    // The token's own lifetime (exp - iat) on our clock, so a skewed device clock does not
    // matter; expires_at against our clock only as a fallback.
    const lifetimeMs = payload && payload.exp && payload.iat
      ? (payload.exp - payload.iat) * 1000
      : Math.max(0, body.expires_at * 1000 - now);
    const changedSession = claims && payload && (claims.sid !== payload.sid || claims.org_id !== payload.org_id);
    token = body.jwt;
    claims = payload;
    receivedAt = now;
    expiresAt = now + lifetimeMs;
    failures = 0;
    if (changedSession) user = null;
    setState(SIGNED_IN);
    emit('token', token);
    schedule(Math.max(1_000, Math.min(refreshInterval, lifetimeMs - MIN_REMAINING_MS)));
    return token;
  }

  async function request() {
    let res;
    try {
      res = await fetchImpl(issuer + tokenPath, {
        method: 'POST',
        credentials: 'include',
        cache: 'no-store',
      });
    } catch (e) {
      throw new LatchkeyError(`could not reach ${issuer}: ${e.message}`, 0);
    }
    if (res.status === 401) {
      signedOut();
      return null;
    }
    if (!res.ok) {
      throw new LatchkeyError(`the token endpoint answered ${res.status}`, res.status);
    }
    return accept(await res.json());
  }

  /** Asks for a new token now (concurrent calls share one request). */
  function refresh() {
    if (!inflight) {
      inflight = request()
        .catch((e) => {
          failures += 1;
          if (token && Date.now() >= expiresAt) {
            // Nothing usable is left; keep trying, the session may well still be alive.
            token = null;
          }
          schedule(RETRY_MS[Math.min(failures - 1, RETRY_MS.length - 1)]);
          throw e;
        })
        .finally(() => { inflight = null; });
    }
    return inflight;
  }

  /**
   * A token with at least ten seconds left, refreshed first if needed; null when signed out.
   * Rejects (LatchkeyError) only if Latchkey cannot be reached and no valid token is left.
   */
  async function getToken({ forceRefresh = false } = {}) {
    if (!started) start();
    if (!forceRefresh && token && Date.now() < expiresAt - MIN_REMAINING_MS) return token;
    if (!forceRefresh && state === SIGNED_OUT && !inflight) return null;
    try {
      return await refresh();
    } catch (e) {
      if (token && Date.now() < expiresAt) return token;
      throw e;
    }
  }

  function onWake() {
    if (state === SIGNED_OUT || !started) return;
    if (document.visibilityState === 'hidden') return;
    if (Date.now() - receivedAt >= FOCUS_REFRESH_AFTER_MS) refresh().catch(() => {});
  }

  /** Fetches the first token and starts the background refresh; resolves to it (or null). */
  function start() {
    if (!started) {
      started = true;
      if (typeof window !== 'undefined') {
        window.addEventListener('focus', onWake);
        document.addEventListener('visibilitychange', onWake);
      }
    }
    return refresh().catch(() => null);
  }

  function stop() {
    started = false;
    clearTimeout(timer);
    timer = null;
    if (typeof window !== 'undefined') {
      window.removeEventListener('focus', onWake);
      document.removeEventListener('visibilitychange', onWake);
    }
  }

  async function api(path, init = {}) {
    const res = await fetchImpl(issuer + path, { credentials: 'include', cache: 'no-store', ...init });
    if (res.status === 401) {
      signedOut();
      return null;
    }
    if (!res.ok) throw new LatchkeyError(`${path} answered ${res.status}`, res.status);
    return res.json();
  }

  /**
   * The signed-in user as Latchkey's /v1/me shows it (id, email, name, memberships with
   * org_id / org_name / role, active_org_id), or null when signed out. Cached until the
   * session or its active organisation changes.
   */
  function getUser({ reload = false } = {}) {
    if (user && !reload) return Promise.resolve(user);
    if (!userRequest) {
      userRequest = api('/v1/sdk/me')
        .then((u) => { user = u; return u; })
        .finally(() => { userRequest = null; });
    }
    return userRequest;
  }

  /** Makes `orgId` (null for none) the session's active organisation; resolves to the new token. */
  async function setActiveOrganization(orgId) {
    const body = await api('/v1/sdk/active-organization', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ org_id: orgId ?? null }),
    });
    if (body === null) return null;
    user = null;
    const fresh = await getToken({ forceRefresh: true });
    await getUser().catch(() => null);
    emit('change', state);
    return fresh;
  }

  /** The hosted sign-in page, coming back to `returnTo` (an allowed origin's URL). */
  function signInUrl({ returnTo } = {}) {
    const back = returnTo ?? (typeof location !== 'undefined' ? location.href : undefined);
    return `${issuer}/sign-in${back ? `?return_to=${encodeURIComponent(back)}` : ''}`;
  }

  function signIn(opts = {}) {
    location.assign(signInUrl(opts));
  }

  /**
   * Ends the session at Latchkey. Then, if the session came from an IdP with Single Logout,
   * the browser goes there; else to `returnTo` if given; else it stays and onSignedOut fires.
   */
  async function signOut({ returnTo } = {}) {
    const res = await fetchImpl(`${issuer}/v1/sdk/sign-out`, { method: 'POST', credentials: 'include' });
    if (!res.ok) throw new LatchkeyError(`sign-out answered ${res.status}`, res.status);
    const body = await res.json().catch(() => ({}));
    signedOut();
    if (body.logout_url) {
      location.assign(new URL(body.logout_url, issuer).href);
    } else if (returnTo) {
      location.assign(returnTo);
    }
  }

  const client = {
    issuer,
    get state() { return state; },
    get claims() { return claims; },
    accountUrl: `${issuer}/account`,
    start,
    stop,
    getToken,
    refresh,
    getUser,
    setActiveOrganization,
    signIn,
    signInUrl,
    signOut,
    /** Fires once when a signed-in session is found gone (401 at the token endpoint). */
    onSignedOut: (cb) => on('signedOut', cb),
    /** Fires with 'loading' | 'signed-in' | 'signed-out' when the state changes. */
    onChange: (cb) => on('change', cb),
    /** Fires with every new token. */
    onToken: (cb) => on('token', cb),
  };
  if (!defaultClient) setDefaultClient(client);
  if (options.autoStart !== false && typeof window !== 'undefined') start();
  return client;
}

// ---------------------------------------------------------------------------------------------
// Web components

const BASE_STYLE = `
  :host { display: inline-block; font-family: var(--latchkey-font-family, system-ui, sans-serif);
    font-size: var(--latchkey-font-size, 14px); color: var(--latchkey-color-text, #1f2328); }
  :host([hidden]) { display: none; }
  button { font: inherit; cursor: pointer; }
  :focus-visible { outline: 2px solid var(--latchkey-focus-ring, #0969da); outline-offset: 2px; }
`;

const SIGN_IN_STYLE = `${BASE_STYLE}
  button { border: 0; padding: var(--latchkey-button-padding, 0.5em 1em);
    border-radius: var(--latchkey-radius, 6px);
    background: var(--latchkey-color-primary, #1f6feb);
    color: var(--latchkey-color-primary-text, #fff); }
  button:hover { filter: brightness(1.08); }
`;

const USER_STYLE = `${BASE_STYLE}
  :host { position: relative; }
  .trigger { display: inline-flex; align-items: center; gap: 0.5em; border: 1px solid var(--latchkey-border-color, #d0d7de);
    background: var(--latchkey-color-background, #fff); color: inherit;
    border-radius: var(--latchkey-radius, 6px); padding: 0.25em 0.75em 0.25em 0.25em; }
  .avatar { display: inline-grid; place-items: center; width: 2em; height: 2em; border-radius: 50%;
    background: var(--latchkey-avatar-background, #1f6feb); color: var(--latchkey-avatar-text, #fff);
    font-weight: 600; font-size: 0.85em; }
  [role=menu] { position: absolute; right: 0; top: calc(100% + 4px); min-width: 15em; z-index: var(--latchkey-menu-z-index, 1000);
    background: var(--latchkey-color-background, #fff); border: 1px solid var(--latchkey-border-color, #d0d7de);
    border-radius: var(--latchkey-radius, 6px); box-shadow: var(--latchkey-menu-shadow, 0 8px 24px rgba(140,149,159,.2));
    padding: 0.25em 0; }
  [role=menu][hidden] { display: none; }
  .who { padding: 0.5em 1em; border-bottom: 1px solid var(--latchkey-border-color, #d0d7de); }
  .who .email { color: var(--latchkey-color-muted, #57606a); font-size: 0.9em; }
  .label { padding: 0.5em 1em 0.25em; color: var(--latchkey-color-muted, #57606a); font-size: 0.85em; }
  [role^=menuitem] { display: block; width: 100%; box-sizing: border-box; text-align: left; border: 0;
    background: none; color: inherit; padding: 0.5em 1em; text-decoration: none; }
  [role^=menuitem]:hover, [role^=menuitem]:focus { background: var(--latchkey-color-hover, #f3f4f6); outline: none; }
  [role=menuitemradio][aria-checked=true]::after { content: ' ✓'; }
  hr { border: 0; border-top: 1px solid var(--latchkey-border-color, #d0d7de); margin: 0.25em 0; }
`;

function escapeHtml(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** "Ada Lovelace" → "AL", "grace@x.com" → "G". */
export function initials(user) {
  const name = (user?.name || [user?.given_name, user?.family_name].filter(Boolean).join(' ')).trim();
  if (name) {
    const words = name.split(/\s+/);
    const first = [...words[0]][0] ?? '';
    const last = words.length > 1 ? [...words[words.length - 1]][0] ?? '' : '';
    return (first + last).toUpperCase();
  }
  return ([...(user?.email ?? '?')][0] ?? '?').toUpperCase();
}

function displayName(user) {
  return user?.name || [user?.given_name, user?.family_name].filter(Boolean).join(' ') || user?.email || '';
}

const HTMLElementBase = typeof HTMLElement === 'undefined' ? class {} : HTMLElement;

/** Shared wiring: finds its client and re-renders on changes. */
class LatchkeyElement extends HTMLElementBase {
  #client = null;
  #unsubscribe = null;

  get latchkey() { return this.#client; }

  set latchkey(client) {
    this.#unsubscribe?.();
    this.#client = client;
    if (client && this.isConnected) this.#subscribe();
  }

  connectedCallback() {
    if (!this.shadowRoot) this.attachShadow({ mode: 'open' });
    if (!this.#client) {
      if (defaultClient) this.#client = defaultClient;
      else waitingForClient.add(this);
    }
    if (this.#client) this.#subscribe();
    this.update();
  }

  disconnectedCallback() {
    waitingForClient.delete(this);
    this.#unsubscribe?.();
    this.#unsubscribe = null;
  }

  #subscribe() {
    this.#unsubscribe?.();
    this.#unsubscribe = this.#client.onChange(() => this.update());
    this.update();
  }

  update() {}
}

/**
 * `<latchkey-sign-in-button>`: sends the browser to Latchkey's sign-in page and back here
 * (or to its `return-to` attribute). Hidden while signed in. Its label is its text content.
 */
export class SignInButton extends LatchkeyElement {
  update() {
    if (!this.shadowRoot) return;
    const client = this.latchkey;
    this.hidden = !client || client.state !== SIGNED_OUT;
    if (!this.shadowRoot.querySelector('button')) {
      this.shadowRoot.innerHTML = `<style>${SIGN_IN_STYLE}</style><button type="button" part="button"><slot>Sign in</slot></button>`;
      this.shadowRoot.querySelector('button').addEventListener('click', () => {
        this.latchkey?.signIn({ returnTo: this.getAttribute('return-to') ?? undefined });
      });
    }
  }
}

/**
 * `<latchkey-user-button>`: the signed-in user's initials and name; its menu holds the user's
 * email, "Manage account", the organisation switcher and "Sign out". Hidden while signed out.
 * Attributes: `after-sign-out` (URL to go to after signing out), `hide-organizations`.
 */
export class UserButton extends LatchkeyElement {
  #user = null;
  #loading = null;
  #open = false;
  #outside = null;

  update() {
    if (!this.shadowRoot) return;
    const client = this.latchkey;
    if (!client || client.state !== SIGNED_IN) {
      this.hidden = true;
      this.#user = null;
      this.#close(false);
      return;
    }
    if (!this.#loading) {
      this.#loading = client.getUser()
        .then((u) => {
          if (u && JSON.stringify(u) !== JSON.stringify(this.#user)) {
            this.#user = u;
            this.#render();
          }
        })
        .catch(() => {})
        .finally(() => { this.#loading = null; });
    }
  }

  #render() {
    const user = this.#user;
    const client = this.latchkey;
    this.hidden = !user;
    if (!user) return;
    const name = displayName(user);
    const orgs = this.hasAttribute('hide-organizations') ? [] : user.memberships ?? [];
    const org = (id, label) => `<button type="button" role="menuitemradio" tabindex="-1" data-org="${escapeHtml(id ?? '')}"
      aria-checked="${(user.active_org_id ?? '') === (id ?? '') ? 'true' : 'false'}">${escapeHtml(label)}</button>`;
    const switcher = orgs.length
      ? `<hr><div class="label" id="orgs-label">Organisation</div>
         <div role="group" aria-labelledby="orgs-label">${org(null, 'Personal account')}${orgs.map((m) => org(m.org_id, m.org_name)).join('')}</div>`
      : '';
    this.shadowRoot.innerHTML = `<style>${USER_STYLE}</style>
      <button type="button" class="trigger" part="trigger" aria-haspopup="menu" aria-expanded="false" aria-controls="menu"
        aria-label="${escapeHtml(`Account menu for ${name}`)}">
        <span class="avatar" part="avatar" aria-hidden="true">${escapeHtml(initials(user))}</span>
        <span class="name" part="name">${escapeHtml(name)}</span>
      </button>
      <div role="menu" id="menu" part="menu" aria-label="Account" hidden>
        <div class="who" role="presentation"><div class="name">${escapeHtml(name)}</div><div class="email">${escapeHtml(user.email)}</div></div>
        <a role="menuitem" tabindex="-1" href="${escapeHtml(client.accountUrl)}" data-action="account">Manage account</a>
        ${switcher}
        <hr>
        <button type="button" role="menuitem" tabindex="-1" data-action="sign-out">Sign out</button>
      </div>`;
    const trigger = this.shadowRoot.querySelector('.trigger');
    const menu = this.shadowRoot.querySelector('[role=menu]');
    // Enter and Space click the button natively; either way the menu opens on its first item.
    trigger.addEventListener('click', () => (this.#open ? this.#close(true) : this.#show(0)));
    trigger.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowDown') { e.preventDefault(); this.#show(0); }
      if (e.key === 'ArrowUp') { e.preventDefault(); this.#show(-1); }
    });
    menu.addEventListener('keydown', (e) => this.#onMenuKey(e));
    menu.addEventListener('click', (e) => this.#onMenuClick(e));
    if (this.#open) this.#show(null);
  }

  #items() {
    return [...this.shadowRoot.querySelectorAll('[role^=menuitem]')];
  }

  #show(focusIndex) {
    const menu = this.shadowRoot.querySelector('[role=menu]');
    const trigger = this.shadowRoot.querySelector('.trigger');
    if (!menu) return;
    this.#open = true;
    menu.hidden = false;
    trigger.setAttribute('aria-expanded', 'true');
    if (!this.#outside) {
      this.#outside = (e) => { if (!e.composedPath().includes(this)) this.#close(false); };
      document.addEventListener('pointerdown', this.#outside, true);
    }
    if (focusIndex !== null) {
      const items = this.#items();
      items.at(focusIndex)?.focus();
    }
  }

  #close(focusTrigger) {
    this.#open = false;
    const menu = this.shadowRoot?.querySelector('[role=menu]');
    if (menu) menu.hidden = true;
    this.shadowRoot?.querySelector('.trigger')?.setAttribute('aria-expanded', 'false');
    if (this.#outside) {
      document.removeEventListener('pointerdown', this.#outside, true);
      this.#outside = null;
    }
    if (focusTrigger) this.shadowRoot?.querySelector('.trigger')?.focus();
  }

  #onMenuKey(e) {
    const items = this.#items();
    const i = items.indexOf(this.shadowRoot.activeElement);
    const move = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: items.length - 1 }[e.key];
    if (move !== undefined) {
      e.preventDefault();
      items[(move + items.length) % items.length]?.focus();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      this.#close(true);
    } else if (e.key === 'Tab') {
      this.#close(false);
    } else if (e.key === ' ' && items[i]?.tagName === 'A') {
      // Buttons take Enter and Space natively, links only Enter.
      e.preventDefault();
      items[i].click();
    }
  }

  async #onMenuClick(e) {
    const item = e.target.closest('[role^=menuitem]');
    if (!item) return;
    const client = this.latchkey;
    if (item.dataset.action === 'account') {
      this.#close(false);
      return; // the link itself navigates
    }
    e.preventDefault();
    try {
      if (item.dataset.action === 'sign-out') {
        this.#close(false);
        await client.signOut({ returnTo: this.getAttribute('after-sign-out') ?? undefined });
        this.dispatchEvent(new CustomEvent('latchkey-signed-out', { bubbles: true, composed: true }));
      } else if ('org' in item.dataset) {
        const orgId = item.dataset.org || null;
        this.#close(true);
        await client.setActiveOrganization(orgId);
        this.#user = null;
        this.update();
        this.dispatchEvent(new CustomEvent('latchkey-organization-changed', { bubbles: true, composed: true, detail: { orgId } }));
      }
    } catch (err) {
      console.error('Latchkey:', err);
    }
  }
}

if (typeof customElements !== 'undefined') {
  if (!customElements.get('latchkey-sign-in-button')) customElements.define('latchkey-sign-in-button', SignInButton);
  if (!customElements.get('latchkey-user-button')) customElements.define('latchkey-user-button', UserButton);
}

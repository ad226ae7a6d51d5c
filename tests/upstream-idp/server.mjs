#!/usr/bin/env node
// Google and Microsoft Entra ID stand-ins for Latchkey's tests. See README.md for the interface:
//   node server.mjs [--port 0] [--config config.json]
// prints one JSON line on stdout when ready, logs on stderr, stops on SIGTERM/SIGINT, on the
// end of stdin when stdin is a pipe, or on POST /admin/shutdown.
import { createServer } from 'node:http';
import { readFileSync, fstatSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Directory, CONSUMER_TENANT } from './lib/directory.mjs';
import { sweepExpired } from './lib/adapter.mjs';
import { rsaJwk } from './lib/keys.mjs';
import { buildProvider, authorizationPath, tokenPath } from './lib/providers.mjs';
import { handleInteraction } from './lib/interaction.mjs';
import { MicrosoftAuthority } from './lib/microsoft.mjs';
import { handleAdmin, sendJson } from './lib/admin.mjs';

function options() {
  const { values } = parseArgs({
    options: { port: { type: 'string' }, config: { type: 'string' } },
  });
  const file = values.config ?? process.env.UPSTREAM_IDP_CONFIG;
  const config = file ? JSON.parse(readFileSync(file, 'utf8')) : {};
  const port = Number(values.port ?? process.env.UPSTREAM_IDP_PORT ?? config.port ?? 0);
  return { config, port };
}

/**
 * Upstream changes asked for by the request, applied before oidc-provider sees it:
 * - Google issues a refresh token for `access_type=offline` with `prompt=consent` (and only
 *   then); oidc-provider does for the `offline_access` scope, so that scope is added.
 * - Entra ID issues one whenever `offline_access` is asked, without `prompt=consent`, which
 *   oidc-provider would require; consent is auto-given here, so asking for it changes nothing.
 * - `prompt=select_account`, which oidc-provider does not know, becomes `prompt=login`.
 */
function upstreamQuirks(family, rest) {
  const url = new URL(rest, 'http://x');
  const p = url.searchParams;
  const scopes = new Set((p.get('scope') ?? '').split(' ').filter(Boolean));
  const prompts = new Set((p.get('prompt') ?? '').split(' ').filter(Boolean));
  if (family === 'google' && p.get('access_type') === 'offline' && prompts.has('consent')) {
    scopes.add('offline_access');
    p.set('scope', [...scopes].join(' '));
  }
  if (family === 'microsoft' && scopes.has('offline_access') && !prompts.has('consent') && !prompts.has('none')) {
    prompts.add('consent');
  }
  // Both offer an account chooser for prompt=select_account; here that is a new login step.
  if (prompts.delete('select_account')) prompts.add('login');
  if (prompts.size) p.set('prompt', [...prompts].join(' '));
  return `${url.pathname}${url.search}`;
}

/** A token request during an outage: an HTTP error status, or a dropped connection ("reset"). */
function outage(status, req, res) {
  if (status === 'reset') return req.socket.destroy();
  return sendJson(res, status, { error: 'temporarily_unavailable', error_description: 'the emulator is in outage mode' });
}

/** Runs one request through a provider mounted at `mount` (oidc-provider derives URLs from it). */
function serveProvider(state) {
  const callbacks = new WeakMap();
  return async (ctx, req, res, mount, rest) => {
    const path = rest.split('?')[0];
    const family = ctx.family;
    if (path.startsWith('/interaction/')) {
      req.originalUrl = `${mount}${rest}`;
      return handleInteraction(ctx, req, res, new URL(`${mount}${rest}`, 'http://x'));
    }
    if (path === tokenPath(family) && state.outage[family]) return outage(state.outage[family], req, res);
    const target = req.method === 'GET' && path === authorizationPath(family) ? upstreamQuirks(family, rest) : rest;
    if (!callbacks.has(ctx.provider)) callbacks.set(ctx.provider, ctx.provider.callback());
    req.originalUrl = `${mount}${target}`;
    req.url = target;
    return callbacks.get(ctx.provider)(req, res);
  };
}

function router(state) {
  return async (req, res) => {
    const url = req.url ?? '/';
    try {
      if (url.startsWith('/google/') || url.startsWith('/google?') || url === '/google') {
        return await state.serve(state.google, req, res, '/google', url.slice('/google'.length));
      }
      const ms = url.match(/^\/ms\/([^/?]+)\/v2\.0(\/.*)?$/);
      if (ms) return await state.microsoft.handle(req, res, decodeURIComponent(ms[1]), ms[2] ?? '/');
      if (url.startsWith('/admin/')) return await handleAdmin(req, res, url.slice('/admin/'.length), state);
      return sendJson(res, 404, { error: 'not found' });
    } catch (err) {
      // oidc-provider's own errors (an expired interaction, a missing cookie) carry their status.
      const status = Number.isInteger(err.status) && err.status < 500 ? err.status : 500;
      if (status === 500) console.error('[emulator]', req.method, url, err);
      if (!res.headersSent) sendJson(res, status, { error: err.error ?? 'server_error', error_description: err.error_description ?? String(err) });
      else res.end();
    }
  };
}

function stopOn(server, state) {
  const stop = () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  state.shutdown = stop;
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Only a pipe: a test harness that dies closes it. /dev/null (a shell's `&`) would end at once.
  if (fstatSync(0).isFIFO() || fstatSync(0).isSocket()) {
    process.stdin.on('end', stop).on('close', stop).resume();
  }
}

async function main() {
  const { config, port } = options();
  const directory = new Directory();
  directory.load(config);
  const keys = { google: rsaJwk(), microsoft: rsaJwk(), forged: rsaJwk() };
  const state = { directory, keys, outage: { google: null, microsoft: null } };
  const server = createServer(router(state));
  // Loopback only: the emulator must never be reachable from, or reach, anything else.
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;

  state.googleIssuer = `${base}/google`;
  state.serve = serveProvider(state);
  state.google = {
    provider: buildProvider({ family: 'google', issuer: state.googleIssuer, jwks: { keys: [keys.google] }, directory, ttl: config.ttl, extraScopes: config.google?.scopes }),
    family: 'google',
    directory,
  };
  state.microsoft = new MicrosoftAuthority({
    authority: `${base}/ms`, jwks: { keys: [keys.microsoft] }, directory, serveProvider: state.serve, ttl: config.ttl, extraScopes: config.microsoft?.scopes,
  });
  stopOn(server, state);
  setInterval(sweepExpired, 60_000).unref();
  process.stdout.write(`${JSON.stringify({
    google_issuer: state.googleIssuer,
    microsoft_authority: `${base}/ms`,
    microsoft_consumer_tenant: CONSUMER_TENANT,
    admin: `${base}/admin`,
  })}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

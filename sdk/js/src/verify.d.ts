import type { JWTPayload } from 'jose';

/** The claims of a verified token: a Latchkey session JWT or an RFC 9068 access token. */
export interface LatchkeyClaims extends JWTPayload {
  iss: string;
  sub: string;
  exp: number;
  iat: number;
  /** The session (session tokens). */
  sid?: string;
  /** The page's origin the session token was minted for. */
  azp?: string;
  org_id?: string;
  org_role?: string;
  org_slug?: string;
  /** RFC 9068 access tokens. */
  client_id?: string;
  scope?: string;
  [claim: string]: unknown;
}

export interface VerifierOptions {
  issuer: string;
  authorizedParties?: string | string[];
  audience?: string | string[];
  acceptAccessTokens?: boolean;
  /** Seconds of leeway on exp and nbf (default 5). */
  clockSkew?: number;
  jwksUri?: string;
  /** ms (default 30 000). */
  jwksCooldown?: number;
  /** ms (default 600 000). */
  jwksMaxAge?: number;
  /** ms (default 86 400 000). */
  jwksStaleIfError?: number;
  fetch?: typeof fetch;
  /** Tests: the JWK Set cache's clock (ms). */
  now?: () => number;
  /** Tests: the time (unix seconds) exp and nbf are checked at; null for the system clock. */
  currentTime?: () => number | null;
}

export interface Verifier {
  verify(token: string): Promise<LatchkeyClaims>;
}

export function createVerifier(options: VerifierOptions): Verifier;

export class InvalidTokenError extends Error {
  readonly code: 'invalid_token';
}

export class JwksUnavailableError extends Error {
  readonly code: 'temporarily_unavailable';
}

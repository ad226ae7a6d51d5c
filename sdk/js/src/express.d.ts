import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LatchkeyClaims, Verifier, VerifierOptions } from './verify.js';

export { createVerifier, InvalidTokenError, JwksUnavailableError } from './verify.js';
export type { LatchkeyClaims, Verifier, VerifierOptions } from './verify.js';

export interface AuthOptions extends Partial<VerifierOptions> {
  /** A verifier to share between middlewares (else one is made from these options). */
  verifier?: Verifier;
  /** The cookie read when there is no Authorization header (default `latchkey_token`; false: none). */
  cookieName?: string | false;
  /** The realm of the WWW-Authenticate challenge. */
  realm?: string;
}

export interface AuthenticatedRequest extends IncomingMessage {
  auth: LatchkeyClaims | null;
  authError: Error | null;
}

export type Middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => Promise<void>;

export function withAuth(options: AuthOptions): Middleware;
export function requireAuth(options: AuthOptions): Middleware;
export function tokenFrom(req: IncomingMessage, options?: { cookieName?: string | false }): string | { malformed: true } | null;

declare global {
  namespace Express {
    interface Request {
      /** The verified token's claims (set by withAuth / requireAuth), or null. */
      auth?: LatchkeyClaims | null;
      authError?: Error | null;
    }
  }
}

export type LatchkeyState = 'loading' | 'signed-in' | 'signed-out';

export interface LatchkeyUser {
  id: string;
  email: string;
  email_verified: boolean;
  name: string | null;
  given_name: string | null;
  family_name: string | null;
  memberships: { org_id: string; org_name: string; role: string }[];
  session_id: string;
  active_org_id: string | null;
  method: string;
  amr: string[];
}

export interface LatchkeyOptions {
  /** Latchkey's public URL, e.g. https://id.example.com. */
  issuer: string;
  /** Mint tokens from a named JWT template. */
  template?: string;
  /** ms between background refreshes (default 50 000). */
  refreshInterval?: number;
  /** Fetch the first token at once (default true). */
  autoStart?: boolean;
  fetch?: typeof fetch;
}

export interface LatchkeyClient {
  readonly issuer: string;
  readonly state: LatchkeyState;
  /** The claims of the current token, or null. */
  readonly claims: Record<string, unknown> | null;
  readonly accountUrl: string;
  start(): Promise<string | null>;
  stop(): void;
  getToken(options?: { forceRefresh?: boolean }): Promise<string | null>;
  refresh(): Promise<string | null>;
  getUser(options?: { reload?: boolean }): Promise<LatchkeyUser | null>;
  setActiveOrganization(orgId: string | null): Promise<string | null>;
  signIn(options?: { returnTo?: string }): void;
  signInUrl(options?: { returnTo?: string }): string;
  signOut(options?: { returnTo?: string }): Promise<void>;
  onSignedOut(cb: () => void): () => void;
  onChange(cb: (state: LatchkeyState) => void): () => void;
  onToken(cb: (token: string) => void): () => void;
}

export function createLatchkey(options: LatchkeyOptions): LatchkeyClient;
export function getDefaultClient(): LatchkeyClient | null;
export function setDefaultClient(client: LatchkeyClient): void;
export function initials(user: Partial<LatchkeyUser>): string;

export class LatchkeyError extends Error {
  /** The HTTP status, or 0 for a network failure. */
  readonly status: number;
}

export class SignInButton extends HTMLElement {
  latchkey: LatchkeyClient | null;
}

export class UserButton extends HTMLElement {
  latchkey: LatchkeyClient | null;
}

declare global {
  interface HTMLElementTagNameMap {
    'latchkey-sign-in-button': SignInButton;
    'latchkey-user-button': UserButton;
  }
}

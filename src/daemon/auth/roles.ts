/** Roles of the API and console, as in the reference: Admin ⊃ Control ⊃ Monitor. */
export const roles = ['Monitor', 'Control', 'Admin'] as const;
export type Role = (typeof roles)[number];

export function isRole(x: unknown): x is Role {
  return typeof x === 'string' && (roles as readonly string[]).includes(x);
}

/** True when `have` is at least `need`. */
export function roleAllows(have: Role, need: Role): boolean {
  return roles.indexOf(have) >= roles.indexOf(need);
}

/** Who made a request, for authorisation and the audit log. */
export interface Principal {
  user: string;
  role: Role;
  /** How they proved it: session cookie, API token, local root token, sealed cluster request, sealed password request. */
  via: 'session' | 'token' | 'local' | 'cluster' | 'password';
  /** Remote address or peer node name. */
  from: string;
}

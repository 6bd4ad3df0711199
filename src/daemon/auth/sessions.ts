import { randomBytes } from 'node:crypto';
import type { Role } from './roles.ts';

/** Console sessions expire after this much inactivity (the reference's SessionMaxAge). */
export const sessionIdleMs = 8 * 3600 * 1000;
/** Explicit limit so a login flood cannot grow memory without bound. */
export const maxSessions = 10_000;

interface Session {
  user: string;
  role: Role;
  lastSeenMs: number;
}

/** In-memory sessions: a daemon restart logs everybody out, which is the safe direction. */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  create(user: string, role: Role, nowMs: number): string {
    if (this.sessions.size >= maxSessions) this.expire(nowMs);
    if (this.sessions.size >= maxSessions) {
      const oldest = this.sessions.keys().next().value;
      if (oldest !== undefined) this.sessions.delete(oldest);
    }
    const id = randomBytes(32).toString('base64url');
    this.sessions.set(id, { user, role, lastSeenMs: nowMs });
    return id;
  }

  touch(id: string, nowMs: number): { user: string; role: Role } | undefined {
    const s = this.sessions.get(id);
    if (!s) return undefined;
    if (nowMs - s.lastSeenMs > sessionIdleMs) {
      this.sessions.delete(id);
      return undefined;
    }
    s.lastSeenMs = nowMs;
    return { user: s.user, role: s.role };
  }

  destroy(id: string): void {
    this.sessions.delete(id);
  }

  private expire(nowMs: number): void {
    for (const [id, s] of this.sessions) if (nowMs - s.lastSeenMs > sessionIdleMs) this.sessions.delete(id);
  }
}

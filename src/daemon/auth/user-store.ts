import { createHash, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../util/atomic-file.ts';
import { StayupError } from '../../errors/stayup-error.ts';
import { isRole, type Role } from './roles.ts';

/** scrypt cost: about 50 ms and 16 MiB per login on the 2-core machines we target. */
export const scryptParams = { N: 16384, r: 8, p: 1, keyLen: 32 } as const;

export interface PasswordParams {
  salt: string;
  N: number;
  r: number;
  p: number;
}

interface UserRecord extends PasswordParams {
  name: string;
  role: Role;
  /** scrypt(password, salt): checks logins, and is the secret of password-sealed requests. */
  verifier: string;
}

interface ApiKeyRecord {
  name: string;
  role: Role;
  /** sha256 of the token: a stolen users file does not give usable tokens. */
  hash: string;
  createdAt: string;
}

interface UsersFile {
  users: UserRecord[];
  apiKeys: ApiKeyRecord[];
  /** Random per node: fake salts for unknown users, so the params endpoint does not reveal who exists. */
  pepper: string;
}

export const userNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

export function derivePasswordVerifier(password: string, params: PasswordParams): Buffer {
  return scryptSync(password, Buffer.from(params.salt, 'base64'), scryptParams.keyLen, {
    N: params.N,
    r: params.r,
    p: params.p,
    maxmem: 64 * 1024 * 1024,
  });
}

/** Users, roles and API tokens of one node, in `<webDir>/users.json` (mode 0600, replaced atomically). */
export class UserStore {
  private data: UsersFile;
  private readonly file: string;

  constructor(webDir: string) {
    this.file = join(webDir, 'users.json');
    this.data = existsSync(this.file)
      ? (JSON.parse(readFileSync(this.file, 'utf8')) as UsersFile)
      : { users: [], apiKeys: [], pepper: randomBytes(16).toString('base64') };
  }

  private save(): void {
    writeFileAtomic(this.file, JSON.stringify(this.data, null, 2) + '\n', 0o600);
  }

  hasUsers(): boolean {
    return this.data.users.length > 0;
  }

  setPassword(name: string, password: string, role: Role = 'Admin'): void {
    if (!userNamePattern.test(name)) throw new StayupError('BAD_ARGUMENT', `user name "${name}" is invalid (letters, digits, _ . @ -)`);
    if (password.length < 8) throw new StayupError('BAD_ARGUMENT', 'a password needs at least 8 characters');
    if (!isRole(role)) throw new StayupError('BAD_ARGUMENT', `role "${String(role)}" is not Admin, Control or Monitor`);
    const params = { salt: randomBytes(16).toString('base64'), N: scryptParams.N, r: scryptParams.r, p: scryptParams.p };
    const verifier = derivePasswordVerifier(password, params).toString('base64');
    this.data.users = this.data.users.filter((u) => u.name !== name);
    this.data.users.push({ name, role, ...params, verifier });
    this.save();
  }

  deleteUser(name: string): boolean {
    const before = this.data.users.length;
    this.data.users = this.data.users.filter((u) => u.name !== name);
    if (this.data.users.length !== before) this.save();
    return this.data.users.length !== before;
  }

  listUsers(): { name: string; role: Role }[] {
    return this.data.users.map((u) => ({ name: u.name, role: u.role }));
  }

  /** Public parameters to derive a user's verifier; deterministic fakes for unknown users. */
  passwordParams(name: string): PasswordParams {
    const u = this.data.users.find((x) => x.name === name);
    if (u) return { salt: u.salt, N: u.N, r: u.r, p: u.p };
    const salt = createHash('sha256').update(this.data.pepper).update(name).digest().subarray(0, 16).toString('base64');
    return { salt, ...{ N: scryptParams.N, r: scryptParams.r, p: scryptParams.p } };
  }

  verifier(name: string): { verifier: Buffer; role: Role } | undefined {
    const u = this.data.users.find((x) => x.name === name);
    return u ? { verifier: Buffer.from(u.verifier, 'base64'), role: u.role } : undefined;
  }

  /** Checks a password in constant time; unknown users cost the same as known ones. */
  checkPassword(name: string, password: string): Role | undefined {
    const params = this.passwordParams(name);
    const got = derivePasswordVerifier(password, params);
    const u = this.data.users.find((x) => x.name === name);
    const want = u ? Buffer.from(u.verifier, 'base64') : Buffer.alloc(got.length);
    const same = timingSafeEqual(got, want);
    return u && same ? u.role : undefined;
  }

  createApiKey(role: Role, name: string): string {
    if (!isRole(role)) throw new StayupError('BAD_ARGUMENT', `role "${String(role)}" is not Admin, Control or Monitor`);
    if (!userNamePattern.test(name)) throw new StayupError('BAD_ARGUMENT', `API key name "${name}" is invalid`);
    const token = 'su_' + randomBytes(32).toString('base64url');
    this.data.apiKeys = this.data.apiKeys.filter((k) => k.name !== name);
    this.data.apiKeys.push({ name, role, hash: sha256(token), createdAt: new Date().toISOString() });
    this.save();
    return token;
  }

  checkApiKey(token: string): { name: string; role: Role } | undefined {
    const h = Buffer.from(sha256(token), 'hex');
    for (const k of this.data.apiKeys) {
      if (timingSafeEqual(h, Buffer.from(k.hash, 'hex'))) return { name: k.name, role: k.role };
    }
    return undefined;
  }

  deleteApiKey(name: string): boolean {
    const before = this.data.apiKeys.length;
    this.data.apiKeys = this.data.apiKeys.filter((k) => k.name !== name);
    if (this.data.apiKeys.length !== before) this.save();
    return this.data.apiKeys.length !== before;
  }
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

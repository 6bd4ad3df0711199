// The output side of a script run: copies the script's stdout and stderr into its userlog file (capped) and
// splits them into lines for callbacks. When the script has exited but a background child still holds a
// pipe, the pipe is handed to a tiny detached relay (`head` + `cat`) that keeps draining it into the userlog,
// so the runner can return and the child never gets SIGPIPE, even if the daemon later restarts.
import { spawn } from 'node:child_process';
import { closeSync, writeSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';

export type OutputStream = 'stdout' | 'stderr';
export type LineCallback = (stream: OutputStream, line: string) => void;

/** A line longer than this is passed to the callback in pieces. */
export const MAX_LINE_CHARS = 16 * 1024;

export function truncationMarker(capBytes: number): string {
  return `\n[stayup: userlog truncated at ${capBytes} bytes]\n`;
}

// $1 = bytes still allowed, $2 = the cap (for the marker). After the budget, discard the rest until every
// writer has closed the pipe.
const RELAY_SCRIPT =
  'if [ "$1" -gt 0 ]; then head -c "$1"; ' +
  'if [ "$(head -c 1 | wc -c)" -gt 0 ]; then printf \'\\n[stayup: userlog truncated at %s bytes]\\n\' "$2"; fi; fi; ' +
  'exec cat >/dev/null';

class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private partial = '';
  constructor(
    private readonly stream: OutputStream,
    private readonly cb: LineCallback,
  ) {}

  push(chunk: Buffer): void {
    const text = this.partial + this.decoder.write(chunk);
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const l of lines) this.emit(l);
    while (this.partial.length > MAX_LINE_CHARS) {
      this.emit(this.partial.slice(0, MAX_LINE_CHARS));
      this.partial = this.partial.slice(MAX_LINE_CHARS);
    }
  }

  end(): void {
    const rest = this.partial + this.decoder.end();
    this.partial = '';
    if (rest.length > 0) this.emit(rest);
  }

  private emit(line: string): void {
    try {
      this.cb(this.stream, line.endsWith('\r') ? line.slice(0, -1) : line);
    } catch {
      // A faulty callback must not break the script run.
    }
  }
}

export class ScriptOutput {
  private written = 0;
  private truncated = false;
  private fileBroken: string | null = null;
  private readonly splitters: Partial<Record<OutputStream, LineSplitter>> = {};
  private closed = false;

  /**
   * @param fd an open userlog file descriptor (append mode), owned by this object from now on
   * @param capBytes the userlog cap; output beyond it is dropped (and not passed to the callback)
   */
  constructor(
    private readonly fd: number,
    private readonly capBytes: number,
    onLine?: LineCallback,
  ) {
    if (onLine) {
      this.splitters.stdout = new LineSplitter('stdout', onLine);
      this.splitters.stderr = new LineSplitter('stderr', onLine);
    }
  }

  /** A write error on the userlog (e.g. ENOSPC), if one happened; output after it was dropped. */
  get error(): string | null {
    return this.fileBroken;
  }

  get bytesWritten(): number {
    return this.written;
  }

  /** Writes text that is not script output (e.g. why the script could not run). Counts against the cap. */
  note(text: string): void {
    this.take(null, Buffer.from(text));
  }

  attach(stream: OutputStream, r: Readable): void {
    r.on('data', (chunk: Buffer) => this.take(stream, chunk));
    r.on('error', () => {});
  }

  private take(stream: OutputStream | null, chunk: Buffer): void {
    if (this.closed) return;
    const allowed = Math.min(chunk.length, Math.max(0, this.capBytes - this.written));
    if (allowed > 0) {
      const part = allowed === chunk.length ? chunk : chunk.subarray(0, allowed);
      this.writeFile(part);
      this.written += allowed;
      if (stream) this.splitters[stream]?.push(part);
    }
    if (allowed < chunk.length && !this.truncated) {
      this.truncated = true;
      this.writeFile(Buffer.from(truncationMarker(this.capBytes)));
    }
  }

  private writeFile(buf: Buffer): void {
    if (this.fileBroken) return;
    try {
      let off = 0;
      while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
    } catch (e) {
      this.fileBroken = (e as Error).message;
    }
  }

  /**
   * Finishes: reads what the streams still buffer, hands every stream that has not ended to a detached relay
   * (returns their PIDs), flushes partial lines and closes the file.
   */
  finish(streams: Partial<Record<OutputStream, Readable>>): number[] {
    if (this.closed) return [];
    const open = (Object.entries(streams) as [OutputStream, Readable][]).filter(
      ([, r]) => !r.readableEnded && !r.destroyed,
    );
    for (const [name, r] of open) {
      r.pause();
      let chunk: Buffer | null;
      while ((chunk = r.read() as Buffer | null) !== null) this.take(name, chunk);
    }
    const relays: number[] = [];
    const remaining = this.truncated || this.fileBroken ? 0 : Math.max(0, this.capBytes - this.written);
    const stillOpen = open.filter(([, r]) => !r.readableEnded && !r.destroyed);
    const share = stillOpen.length > 0 ? Math.floor(remaining / stillOpen.length) : 0;
    for (const [, r] of stillOpen) {
      try {
        const relay = spawn('/bin/sh', ['-c', RELAY_SCRIPT, 'stayup-relay', String(share), String(this.capBytes)], {
          detached: true,
          stdio: [r, this.fd, 'ignore'],
          env: { PATH: '/usr/bin:/bin' },
          cwd: '/',
        });
        relay.on('error', () => {});
        relay.unref();
        if (relay.pid !== undefined) relays.push(relay.pid);
      } catch {
        // Without a relay the background writer gets EPIPE; nothing better can be done.
      }
      r.destroy();
    }
    for (const s of Object.values(this.splitters)) s.end();
    this.closed = true;
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    return relays;
  }
}

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

// The relay. Its stdin (and stderr when $3 = 2) are the script's pipes: fds 0-2 because libuv makes only
// those blocking in a child, and cat fails with EAGAIN on a non-blocking one; they move to fds 4 and 3 (a
// background list's stdin is /dev/null in a non-interactive shell). Its stdout is the userlog (O_APPEND).
// Both pipes are merged and copied by one `cat` under RLIMIT_FSIZE = $1 blocks of 512 bytes, so the
// userlog cannot grow past the cap (rounded down to 512 bytes) whatever the background children write: the
// write that would cross it fails with EFBIG (SIGXFSZ is ignored), the marker is added once, and the rest
// is read and discarded until every writer has closed its pipe. $1 = -1: the cap was reached, only discard.
const RELAY_SCRIPT = `pump() {
  if [ "$1" -ge 0 ]; then
    if ( trap '' XFSZ; ulimit -f "$1" && exec cat ); then exit 0; fi
    printf '\\n[stayup: userlog truncated at %s bytes]\\n' "$2"
  fi
  exec cat >/dev/null
}
exec 4<&0 3<&2 </dev/null 2>/dev/null
if [ "$3" = 2 ]; then
  { cat <&3 3<&- 4<&- & cat <&4 3<&- 4<&-; wait; } | pump "$1" "$2" 3<&- 4<&-
else
  pump "$1" "$2" <&4 3<&- 4<&-
fi`;

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
    for (const [, r] of open) {
      r.pause();
      // read() emits 'data' for what it returns, so the listener from attach() takes the buffered chunks.
      while (r.read() !== null) {
        // drain
      }
    }
    const relays: number[] = [];
    const blocks = this.truncated || this.fileBroken ? -1 : Math.floor(this.capBytes / 512);
    const stillOpen = open.filter(([, r]) => !r.readableEnded && !r.destroyed).map(([, r]) => r);
    if (stillOpen.length > 0) {
      // One relay for both pipes; the file size limit caps their sum, like the script's own output.
      const [first, second] = stillOpen as [Readable, Readable | undefined];
      try {
        const relay = spawn(
          '/bin/sh',
          ['-c', RELAY_SCRIPT, 'stayup-relay', String(blocks), String(this.capBytes), second ? '2' : '1'],
          {
            detached: true,
            stdio: [first, this.fd, second ?? 'ignore'],
            env: { PATH: '/usr/bin:/bin' },
            cwd: '/',
          },
        );
        relay.on('error', () => {});
        relay.unref();
        if (relay.pid !== undefined) relays.push(relay.pid);
      } catch {
        // Without a relay the background writer gets EPIPE; nothing better can be done.
      }
      for (const r of stillOpen) r.destroy();
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

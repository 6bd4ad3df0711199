// One append-only, size-rotated JSONL file kept open between records: a record is one write(2) on an
// O_APPEND descriptor, where appendLine() (jsonl.ts) opens, checks and closes the file for every line.
//
// The file may change behind the descriptor: another process appends (under the same lock), rotates it,
// or an operator's tool moves it away. Before the caller writes (refresh(), holding the lock) the path is
// stat'ed (one system call, no open): a different inode means the descriptor is reopened on the path's
// current file, a different size means someone else wrote (the caller's sequence number is then stale) and
// the last byte is checked again, so a line torn by a crash is ended before the next record and never
// swallows it.
import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { lastByte, rotate, type RotateOptions } from './jsonl.ts';

const NEWLINE = Buffer.from('\n');

export class LineAppender {
  #fd = -1;
  #ino = -1;
  /** The file's size after our last write, as far as we know (-1: unknown, check again). */
  #size = -1;
  /** The file does not end with a newline (a torn line): the next record starts with one. */
  #torn = false;

  constructor(readonly file: string) {}

  /**
   * Checks the path against the descriptor. Returns true when the file is not the one this appender last
   * wrote, or not as it left it (someone else wrote, rotated or removed it): the descriptor then follows
   * the path (closed, reopened at the next append) or the new size. The caller holds the lock.
   */
  refresh(): boolean {
    let ino: number;
    let size: number;
    try {
      const st = statSync(this.file);
      ino = st.ino;
      size = st.size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      this.close();
      return true;
    }
    if (this.#fd >= 0 && ino === this.#ino) {
      if (size === this.#size) return false;
      this.#size = size;
      const last = lastByte(this.#fd, size);
      this.#torn = last !== null && last !== 0x0a;
      return true;
    }
    this.close();
    return true;
  }

  /** Appends one line (a serialised record without its newline), rotating first when it would not fit. */
  append(line: string, rot: RotateOptions): void {
    if (this.#fd < 0) this.#open();
    const body = Buffer.from(`${line}\n`);
    if (this.#size > 0 && this.#size + body.length > rot.maxBytes) {
      this.close();
      rotate(this.file, rot.keep);
      this.#open();
    }
    const buf = this.#torn ? Buffer.concat([NEWLINE, body]) : body;
    const size = this.#size;
    this.#size = -1; // unknown until the write is whole
    let off = 0;
    while (off < buf.length) off += writeSync(this.#fd, buf, off, buf.length - off);
    this.#size = size + buf.length;
    this.#torn = false;
  }

  /** fsync, if the file is open. */
  sync(): void {
    if (this.#fd >= 0) fsyncSync(this.#fd);
  }

  close(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
    this.#ino = -1;
    this.#size = -1;
    this.#torn = false;
  }

  #open(): void {
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o750 });
    const fd = openSync(this.file, 'a+', 0o640);
    const st = fstatSync(fd);
    this.#fd = fd;
    this.#ino = st.ino;
    this.#size = st.size;
    const last = lastByte(fd, st.size);
    this.#torn = last !== null && last !== 0x0a;
  }
}

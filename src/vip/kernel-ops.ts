// The virtual IP's two takeover calls made in this process (native/stayup_net.c): the IPv4 add over
// rtnetlink and the gratuitous ARP over a packet socket. A takeover then starts no process and wakes no
// helper: `ip` and `arping` cost a process start each (~9 ms on a small machine), and the resident
// helper process this replaces cost two wake-ups per request (1 to 3 ms on a loaded machine). Both calls
// are synchronous and take microseconds (the kernel answers rtnetlink in the caller's context).
//
// The VipManager falls back to `ip`/`arping` when the addon is not built or a call fails (anything but
// EEXIST). Calls act on this process's network namespace: only for the daemon's own VipManager.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { addonFile } from '../util/native-addons.ts';

/** What addAddress did besides adding the address. */
export interface AddResult {
  /** The gratuitous ARP asked for left right after the add. */
  announced: boolean;
  /** Why it did not, when it was asked for (the address is there all the same). */
  garpError?: string;
}

/** The seam VipManager uses for its fast path; tests give it a recording twin. */
export interface FastVipOps {
  /**
   * Adds ip/prefix on iface with the label, then sends `garpCount` gratuitous ARP request+reply pairs at
   * once: a takeover's first announcement follows the add immediately. Rejects with the kernel's error
   * (`errno` 17, EEXIST, when the address is there), in which case nothing was announced.
   */
  addAddress(ip: string, prefixLen: number, iface: string, label: string, garpCount?: number): Promise<AddResult>;
  /** Sends `count` gratuitous ARP request+reply pairs for ip on iface. */
  garp(ip: string, iface: string, count: number): Promise<void>;
  /** Prepares what a later garp on iface needs (its packet socket), so the first one is quick. */
  warm(iface: string): Promise<void>;
}

interface NetAddon {
  addAddress(ip: string, prefixLen: number, iface: string, label: string): void;
  garp(ip: string, iface: string, count: number): void;
  warm(iface: string): void;
}

let addon: NetAddon | null | undefined;

function loadAddon(): NetAddon | null {
  if (addon === undefined) {
    const file = addonFile('stayup_net');
    addon = existsSync(file) ? (createRequire(import.meta.url)(file) as NetAddon) : null;
  }
  return addon;
}

/** Runs a synchronous addon call as the promise the seam promises (errors as rejections). */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e as Error);
  }
}

class KernelVipOps implements FastVipOps {
  constructor(private readonly net: NetAddon) {}

  addAddress(ip: string, prefixLen: number, iface: string, label: string, garpCount = 0): Promise<AddResult> {
    return settle(() => {
      this.net.addAddress(ip, prefixLen, iface, label);
      if (garpCount <= 0) return { announced: false };
      try {
        this.net.garp(ip, iface, garpCount);
        return { announced: true };
      } catch (e) {
        return { announced: false, garpError: (e as Error).message };
      }
    });
  }

  garp(ip: string, iface: string, count: number): Promise<void> {
    return settle(() => this.net.garp(ip, iface, count));
  }

  warm(iface: string): Promise<void> {
    return settle(() => this.net.warm(iface));
  }
}

/**
 * The in-process fast path, or null when the addon is not built (the manager then uses `ip`/`arping`).
 * Nothing to close: a packet socket stays open per interface for the process's life (a few descriptors).
 */
export function kernelVipOps(): FastVipOps | null {
  const net = loadAddon();
  return net ? new KernelVipOps(net) : null;
}

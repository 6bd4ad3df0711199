// rfsverify and rfsdiff (reference §1.8): compare the two nodes' replicated data. rfsverify runs on the
// secondary and exits 1 when files differ from the primary; rfsdiff runs on the primary (ALONE or PRIM) and
// estimates what a reintegration of the secondary would send and how long it would take. Both print one line
// per differing path with its reasons, then a summary line.
import type { Command } from 'commander';
import type { ReplicaComparison } from '../../replication/verify.ts';
import type { ReplicationStatus } from '../../engine/mirror-engine.ts';
import { runOnTargets, moduleName, hostsOf, type NodeOutput } from '../run.ts';

/** A comparison walks both trees: it may take long, the daemon bounds each request to the peer (reitimeout). */
const COMPARE_CALL_TIMEOUT_MS = 24 * 3600 * 1000;

export function registerReplicationCommands(program: Command): void {
  for (const [mode, help] of [
    ['verify', 'mirror, on the secondary: list the files that differ from the primary (exit 1 when some do)'],
    ['diff', 'mirror, on the primary (ALONE or PRIM): what a reintegration of the secondary would copy, and how long it would take'],
  ] as const) {
    program
      .command(`rfs${mode}`)
      .description(help)
      .option('-m, --module <name>', 'module (default: $SAFEMODULE)')
      .action(async (opts: { module?: string }, c: Command) => {
        process.exitCode = await runOnTargets(
          { hosts: hostsOf(c) },
          async (client) => {
            const m = moduleName(opts.module);
            const r = await client.call<ReplicaComparison & { node: string | null }>('POST', `/api/v1/modules/${encodeURIComponent(m)}/rfs${mode}`, undefined, { timeoutMs: COMPARE_CALL_TIMEOUT_MS });
            return renderComparison(r);
          },
          { exitCodesWithHosts: true },
        );
      });
  }
}

/** The report: one line per differing path, then the summary; rfsverify's exit code is 1 when some differ. */
export function renderComparison(r: ReplicaComparison): NodeOutput {
  const lines = r.differences.map((d) => `${d.path}: ${d.reasons.join('; ')}`);
  if (r.truncated) lines.push(`... ${r.differing - r.differences.length} more differing paths not listed`);
  const compared = `${r.compared.files} files, ${r.compared.directories} directories${r.compared.other ? `, ${r.compared.other} other objects` : ''}`;
  const time = r.rate && r.estimatedMs !== null ? `about ${duration(r.estimatedMs)} at ${size(r.rate.bytesPerS)}/s (${r.rate.from})` : 'time unknown (no reintegration measured since the daemon started, no reiallowedbw)';
  const head = r.mode === 'verify' ? `rfsverify ${r.module} on ${r.copy}` : `rfsdiff ${r.module} on ${r.source}`;
  lines.push(
    `${head}: ${compared} compared with ${r.mode === 'verify' ? r.source : r.copy} in ${duration(r.durationMs)}; ${r.differing} ${r.differing === 1 ? 'path differs' : 'paths differ'}; ` +
      `a reintegration from ${r.source} to ${r.copy} would send ${r.bytesToSend} bytes (${size(r.bytesToSend)}), ${time}`,
  );
  return { text: lines.join('\n'), exitCode: r.mode === 'verify' && r.differing > 0 ? 1 : 0 };
}

/** 3145728 -> "3.0 MiB". */
export function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** Milliseconds for people: "850 ms", "2.5 s", "3 min 20 s", "2 h 5 min". */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m} min ${Math.round(s - m * 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** The replication lines of `state -v` (role, link, held calls, journal, reintegration, last sync, clean). */
export function replicationLines(r: ReplicationStatus): string[] {
  const out = [
    `replication: role ${r.role}, link ${r.linkUp ? `up${linkDetail(r)}` : 'down'}, ${r.mounted ? `mounted${r.readOnly ? ' read-only' : ' read-write'}` : 'not mounted'}` +
      (r.role === 'prim' ? `, ${r.pendingAcks} application calls waiting for the peer, journal ${r.journalPaths} paths` : '') +
      `, ${r.clean ? 'clean' : 'not clean (a role runs, or the last one ended in a crash)'}`,
    `replication.lastSync: ${r.lastSyncMs === null ? 'never' : new Date(r.lastSyncMs).toISOString()}${r.syncId ? ` (sync point ${r.syncId})` : ' (no sync point)'}`,
  ];
  const i = r.reintegration;
  if (i) {
    out.push(
      i.direction === 'sending'
        ? `replication.reintegration: sending (${i.scope}) for ${duration(i.elapsedMs)}: ${i.files ?? 0} files, ${size(i.bytesSent ?? 0)} sent${i.bytesPerS === null ? '' : ` (${size(i.bytesPerS)}/s)`}`
        : `replication.reintegration: receiving (${i.scope}) for ${duration(i.elapsedMs)}`,
    );
  }
  const l = r.lastReintegration;
  if (l) out.push(`replication.lastReintegration: ${l.scope}: ${l.filesCopied} files, ${size(l.bytesSent)} sent in ${duration(l.durationMs)}, ended ${new Date(l.endedMs).toISOString()}`);
  if (r.lastStall) out.push(`replication.lastStall: ${new Date(r.lastStall.atMs).toISOString()}: ${r.lastStall.reason}`);
  if (r.linkError) out.push(`replication.linkError: since ${new Date(r.linkError.sinceMs).toISOString()}: ${r.linkError.code}: ${r.linkError.message}`);
  return out;
}

/** " (protocol v3, 3 connections)": what the link negotiated (absent from a daemon older than negotiation). */
function linkDetail(r: ReplicationStatus): string {
  if (r.protocolVersion === null || r.protocolVersion === undefined) return '';
  return ` (protocol v${r.protocolVersion}${r.linkConnections > 1 ? `, ${r.linkConnections} connections` : ''})`;
}

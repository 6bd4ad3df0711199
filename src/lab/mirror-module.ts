// A mirror module for the lab: a virtual IP and a small TCP service (it answers each connection with the
// name of the server it runs on, then closes), started by start_prim and stopped by stop_prim. The
// end-to-end tests, the demo and the failover benchmark use it, so they all exercise the same thing.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packDirectory } from '../packages/zip-writer.ts';

export interface LabMirrorOptions {
  /** The virtual IP (198.18.k.100 and up in a lab). */
  vip: string;
  /** The service's TCP port (default 7000). */
  servicePort?: number;
  pulseMs: number;
  timeoutMs: number;
  /** Heartbeat lans of cluster.xml (default ['default']). */
  lans?: string[];
  defaultPrim?: string;
  failover?: boolean;
  maxLoop?: number;
  loopInterval?: string;
  /** errd: watch the service process and restart it (polltimer). */
  errdPolltimer?: string;
  /** false: start_prim does not start the service (it runs elsewhere, e.g. on both servers). */
  startService?: boolean;
  /**
   * Replicated directories (<rfs>), with the acknowledgement mode and the journal's zone size
   * (ruzone_blocksize, and reipacketsize with it: the zone must be a multiple of it; default 8 MiB both),
   * sendtimeout, and nbremconn (the stream's connections).
   */
  rfs?: { dirs: string[]; async?: 'second' | 'none'; zoneBytes?: number; sendTimeout?: string; nbremconn?: number };
  /** Module scripts and files of bin/ that replace the lab service's (e.g. a database's start_prim/stop_prim). */
  bin?: Record<string, string>;
  /** More <var> of <user>, for the scripts. */
  vars?: Record<string, string>;
  /** <user nicestoptimeout>, also the bound of start scripts (default 10s). */
  niceStopTimeout?: string;
  /** <user forcestoptimeout> (default 10s). */
  forceStopTimeout?: string;
}

/** The service: python3, so errd can find it by name (python3) and argument (lab-service.py). */
export const LAB_SERVICE_PY = `import os, socket, sys
port = int(sys.argv[1])
name = (sys.argv[2] if len(sys.argv) > 2 else socket.gethostname()).encode() + b"\\n"
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(256)
print("listening on", port, "pid", os.getpid(), flush=True)
while True:
    c, _ = s.accept()
    try:
        c.sendall(name)
    except OSError:
        pass
    c.close()
`;

const START_PRIM = `#!/bin/sh
# start_prim: starts the lab service (python3 lab-service.py PORT) unless it runs already.
var=\${SAFEUSERVAR:?}
pidfile=$var/service.pid
log=$var/service.log
[ "\${START_SERVICE:-yes}" = yes ] || exit 0
mkdir -p "$var"
pid=$(cat "$pidfile" 2>/dev/null)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\\000' ' ' < /proc/$pid/cmdline | grep -q lab-service.py; then
  echo "service already running (pid $pid)"
  exit 0
fi
: > "$log"
setsid python3 "$SAFEUSERBIN/lab-service.py" "$SERVICE_PORT" "$(hostname)" >> "$log" 2>&1 < /dev/null &
echo $! > "$pidfile"
i=0
while [ $i -lt 200 ]; do
  grep -q listening "$log" && { echo "service started (pid $(cat "$pidfile"))"; exit 0; }
  kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "service exited: $(cat "$log")" >&2; exit 1; }
  sleep 0.02
  i=$((i + 1))
done
echo "service did not listen within 4 s" >&2
exit 1
`;

const STOP_PRIM = `#!/bin/sh
# stop_prim: stops the lab service (graceful: SIGTERM; force: SIGKILL). Arguments: [force] current next action.
var=\${SAFEUSERVAR:?}
pidfile=$var/service.pid
sig=TERM
[ "$1" = force ] && sig=KILL
# Every lab-service.py of this port: the one of the pid file, and one errd or an operator restarted.
for p in $(pgrep -f "lab-service.py $SERVICE_PORT" 2>/dev/null); do kill -$sig "$p" 2>/dev/null; done
i=0
while [ $i -lt 100 ] && pgrep -f "lab-service.py $SERVICE_PORT" >/dev/null 2>&1; do sleep 0.02; i=$((i + 1)); done
rm -f "$pidfile"
exit 0
`;

export function labMirrorUserConfig(o: LabMirrorOptions): string {
  const lans = o.lans ?? ['default'];
  const errd = o.errdPolltimer
    ? `  <errd polltimer="${o.errdPolltimer}">\n    <proc name="python3" argregex="lab-service\\.py ${o.servicePort ?? 7000}" atleast="1" action="restart" class="prim" />\n  </errd>\n`
    : '';
  const rfsAttrs = (o.rfs?.zoneBytes ? ` reipacketsize="${o.rfs.zoneBytes}" ruzone_blocksize="${o.rfs.zoneBytes}"` : '') + (o.rfs?.sendTimeout ? ` sendtimeout="${o.rfs.sendTimeout}"` : '') + (o.rfs?.nbremconn ? ` nbremconn="${o.rfs.nbremconn}"` : '');
  const rfs = o.rfs
    ? `  <rfs async="${o.rfs.async ?? 'second'}"${rfsAttrs}>\n${o.rfs.dirs.map((d) => `    <replicated dir="${d}" mode="read_only" />`).join('\n')}\n  </rfs>\n`
    : '';
  return `<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="${o.defaultPrim ?? 'alone'}" failover="${o.failover === false ? 'off' : 'on'}" maxloop="${o.maxLoop ?? 3}" loop_interval="${o.loopInterval ?? '24h'}">
  <heart pulse="${o.pulseMs}ms" timeout="${o.timeoutMs}ms">
${lans.map((l) => `    <heartbeat name="${l}" />`).join('\n')}
  </heart>
  <vip>
    <interface_list>
      <interface check="on">
        <real_interface>
          <virtual_addr addr="${o.vip}" where="one_side_alias" />
        </real_interface>
      </interface>
    </interface_list>
  </vip>
${rfs}${errd}  <user nicestoptimeout="${o.niceStopTimeout ?? '10s'}" forcestoptimeout="${o.forceStopTimeout ?? '10s'}" logging="userlog">
    <var name="SERVICE_PORT" value="${o.servicePort ?? 7000}" />
    <var name="START_SERVICE" value="${o.startService === false ? 'no' : 'yes'}" />
${Object.entries(o.vars ?? {})
  .map(([k, v]) => `    <var name="${k}" value="${xmlAttr(v)}" />\n`)
  .join('')}  </user>
</service>
</safe>
`;
}

function xmlAttr(v: string): string {
  return v.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
}

/** The module package (zip) with its userconfig.xml and bin/: start_prim, stop_prim and the service, or `o.bin`. */
export async function labMirrorPackage(o: LabMirrorOptions): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'stayup-labmod-'));
  try {
    mkdirSync(join(dir, 'conf'));
    mkdirSync(join(dir, 'bin'));
    writeFileSync(join(dir, 'conf', 'userconfig.xml'), labMirrorUserConfig(o));
    const bin = o.bin ?? { start_prim: START_PRIM, stop_prim: STOP_PRIM, 'lab-service.py': LAB_SERVICE_PY };
    for (const [name, text] of Object.entries(bin)) {
      const f = join(dir, 'bin', name);
      writeFileSync(f, text);
      chmodSync(f, 0o755);
    }
    return await packDirectory(dir, { label: 'lab mirror module' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

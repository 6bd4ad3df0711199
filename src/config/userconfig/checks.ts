// Rules of userconfig.xml that relate several elements (or cluster.xml), which the schema table cannot
// express. Each check reads the typed configuration and reports at the element or attribute at fault.
// They run even when the schema found errors, so they tolerate missing fields (a field whose value was
// invalid is absent from the object).
import type { Diagnostic } from '../../errors/stayup-error.ts';
import type { ClusterConfig } from '../cluster.ts';
import type { SourceMap } from '../schema/validate.ts';
import type { Service, UserConfig, VirtualAddr } from './types.ts';

export interface CheckContext {
  file: string;
  sources: SourceMap;
  cluster?: ClusterConfig;
  moduleName?: string;
}

type Report = (at: { line: number; col: number }, message: string) => void;

export function checkUserConfig(config: UserConfig, ctx: CheckContext): Diagnostic[] {
  const out: Diagnostic[] = [];
  const report: Report = (at, message) => out.push({ file: ctx.file, line: at.line, col: at.col, message });
  const cfg = config.service;
  if (!cfg) return out;
  checkModeSections(cfg, ctx, report);
  checkClusterReferences(cfg, ctx, report);
  checkHeart(cfg, ctx, report);
  checkVip(cfg, ctx, report);
  checkRfs(cfg, ctx, report);
  checkScripts(cfg, ctx, report);
  checkCheckers(cfg, ctx, report);
  checkFailoverTiming(cfg, ctx, report);
  return out;
}

/** Which sections each mode needs and forbids: a mirror has a heart, a farm has a farm, rfs is mirror-only. */
function checkModeSections(cfg: Service, { sources }: CheckContext, report: Report): void {
  const mode = cfg.mode;
  if (mode === undefined) return;
  const forbid = (present: object | undefined, element: string): void => {
    if (present) report(sources.at(present), `<${element}>: not allowed when mode="${mode}"`);
  };
  const service = sources.at(cfg);
  if (mode === 'mirror') {
    forbid(cfg.farm, 'farm');
    if (!cfg.heart) report(service, '<service>: mode="mirror" requires <heart> (the heartbeats between the two nodes)');
  }
  if (mode === 'farm') {
    forbid(cfg.heart, 'heart');
    forbid(cfg.rfs, 'rfs');
    if (!cfg.farm) report(service, '<service>: mode="farm" requires <farm> (the lans of the farm membership)');
  }
  if (mode === 'light') {
    forbid(cfg.heart, 'heart');
    forbid(cfg.farm, 'farm');
    forbid(cfg.rfs, 'rfs');
  }
  if (mode !== 'mirror') forbid(cfg.check?.splitbrain, 'splitbrain');
  if (mode !== 'farm' && cfg.vip && cfg.vip.groups?.length > 0) {
    report(sources.at(cfg.vip, 'loadbalancing_list'), `<loadbalancing_list>: not allowed when mode="${mode}"`);
  }
}

/** Lan and node names that must exist in cluster.xml (only when the caller gives us one). */
function checkClusterReferences(cfg: Service, { sources, cluster }: CheckContext, report: Report): void {
  if (!cluster) return;
  const lans = new Set(cluster.lans.map((l) => l.name));
  const nodes = new Set(cluster.lans.flatMap((l) => l.nodes.map((n) => n.name)));
  const lan = (obj: { name?: string }, element: string): void => {
    if (obj.name !== undefined && !lans.has(obj.name)) {
      report(sources.attr(obj, 'name'), `<${element}>: attribute "name" refers to lan "${obj.name}", not in cluster.xml`);
    }
  };
  for (const hb of cfg.heart?.heartbeats ?? []) lan(hb, 'heartbeat');
  for (const l of cfg.farm?.lans ?? []) lan(l, 'lan');
  if (cfg.rfs?.flow) lan(cfg.rfs.flow, 'flow');

  const prim = cfg.defaultPrim;
  if (cfg.mode === 'mirror' && prim !== undefined && prim !== 'alone' && prim !== 'lastprim' && !nodes.has(prim)) {
    report(
      sources.attr(cfg, 'defaultprim'),
      `<service>: attribute "defaultprim" refers to node "${prim}", not in cluster.xml (use "alone", "lastprim" or a node name)`,
    );
  }
  for (const group of cfg.vip?.groups ?? []) {
    for (const host of group.hosts ?? []) {
      if (host.name !== undefined && !nodes.has(host.name)) {
        report(sources.attr(host, 'name'), `<host>: attribute "name" refers to node "${host.name}", not in cluster.xml`);
      }
    }
  }
}

function checkHeart(cfg: Service, { sources }: CheckContext, report: Report): void {
  const heartbeats = cfg.heart?.heartbeats ?? [];
  for (const hb of heartbeats) {
    if (hb.pulseMs !== undefined && hb.timeoutMs !== undefined && hb.timeoutMs <= hb.pulseMs) {
      report(
        sources.attr(hb, 'timeout'),
        `<heartbeat>: timeout (${hb.timeoutMs}ms) must be longer than pulse (${hb.pulseMs}ms), or every pulse is a loss`,
      );
    }
    if (hb.ident === 'flow' && cfg.mode === 'mirror' && !cfg.rfs) {
      report(
        sources.attr(hb, 'ident'),
        '<heartbeat>: ident="flow" carries the replication stream and needs <rfs>; without it the module would block in WAIT',
      );
    }
  }
  if (cfg.rfs?.flow?.name !== undefined && heartbeats.length > 0 && !heartbeats.some((hb) => hb.name === cfg.rfs!.flow!.name)) {
    report(
      sources.attr(cfg.rfs.flow, 'name'),
      `<flow>: lan "${cfg.rfs.flow.name}" has no <heartbeat>; replication must use a heartbeat network`,
    );
  }
}

/** The two forms of <vip>, and VIP addresses that must differ. */
function checkVip(cfg: Service, { sources }: CheckContext, report: Report): void {
  if (!cfg.vip) return;
  const seen = new Map<string, VirtualAddr>();
  for (const intf of cfg.vip.interfaces ?? []) {
    if (cfg.mode === 'farm' && intf.realInterface) {
      report(
        sources.at(intf.realInterface),
        '<real_interface>: a farm VIP is shared by all nodes and needs <virtual_interface> (load balancing on a virtual MAC)',
      );
    }
    if (cfg.mode === 'mirror' && intf.virtualInterface?.type === 'vmac_directed') {
      report(
        sources.attr(intf.virtualInterface, 'type'),
        '<virtual_interface>: a mirror can only use type="vmac_invisible" (transparent rerouting); vmac_directed is for farms',
      );
    }
    const addrs = [...(intf.realInterface?.virtualAddrs ?? []), ...(intf.virtualInterface?.virtualAddrs ?? [])];
    for (const va of addrs) {
      if (va.where !== undefined) {
        const allowed = cfg.mode === 'farm' ? ['alias'] : ['one_side_alias', 'one_side'];
        if (cfg.mode !== undefined && !allowed.includes(va.where)) {
          report(
            sources.attr(va, 'where'),
            `<virtual_addr>: where="${va.where}" is not valid when mode="${cfg.mode}" (use ${allowed.map((w) => `"${w}"`).join(' or ')})`,
          );
        }
      }
      if (va.addr === undefined) continue;
      const first = seen.get(va.addr);
      if (first) {
        const at = sources.attr(first, 'addr');
        report(sources.attr(va, 'addr'), `<virtual_addr>: address "${va.addr}" is already used at ${at.line}:${at.col}`);
      } else {
        seen.set(va.addr, va);
      }
    }
  }
}

function checkRfs(cfg: Service, { sources }: CheckContext, report: Report): void {
  const rfs = cfg.rfs;
  if (!rfs) return;
  if (rfs.ruzoneBlocksize !== undefined && rfs.reipacketsize !== undefined && rfs.ruzoneBlocksize % rfs.reipacketsize !== 0) {
    report(
      sources.attr(rfs, 'ruzone_blocksize'),
      `<rfs>: ruzone_blocksize (${rfs.ruzoneBlocksize}) must be a multiple of reipacketsize (${rfs.reipacketsize})`,
    );
  }
  for (const r of rfs.replicated ?? []) {
    if (r.dir === '/') report(sources.attr(r, 'dir'), '<replicated>: the filesystem root "/" cannot be replicated');
  }
  const dirs = (rfs.replicated ?? []).filter((r) => r.dir !== undefined && r.dir !== '/');
  // Directories must be distinct and not nested: a file would otherwise be replicated twice. Each
  // directory is reported once, against the first earlier one it clashes with.
  for (let i = 0; i < dirs.length; i++) {
    const b = dirs[i]!;
    const a = dirs.slice(0, i).find((d) => d.dir === b.dir) ?? dirs.slice(0, i).find((d) => isInside(b.dir, d.dir) || isInside(d.dir, b.dir));
    if (!a) continue;
    const at = sources.attr(a, 'dir');
    report(
      sources.attr(b, 'dir'),
      a.dir === b.dir
        ? `<replicated>: directory "${b.dir}" is already replicated at ${at.line}:${at.col}`
        : `<replicated>: directory "${b.dir}" and "${a.dir}" (at ${at.line}:${at.col}) are nested; replicated directories must be disjoint`,
    );
  }
}

function isInside(child: string, parent: string): boolean {
  return child.startsWith(`${parent}/`);
}

/** <errd> acts through the module scripts; <var> names must not shadow stayup's own variables. */
function checkScripts(cfg: Service, { sources }: CheckContext, report: Report): void {
  if (cfg.errd && !cfg.user) {
    report(sources.at(cfg.errd), '<errd>: requires <user>: process monitoring restarts the application through the module scripts');
  }
  for (const v of cfg.user?.vars ?? []) {
    if (v.name !== undefined && /^SAFE/.test(v.name)) {
      report(sources.attr(v, 'name'), `<var>: name "${v.name}" is reserved (SAFE* variables are set by stayup for every script)`);
    }
  }
  for (const p of cfg.errd?.procs ?? []) {
    // Linux truncates process names to 15 characters, so a longer name would never match.
    if (p.name !== undefined && p.name.length > 15 && !p.service && p.nameregex === undefined) {
      report(
        sources.attr(p, 'name'),
        `<proc>: process name "${p.name}" is longer than 15 characters, which Linux truncates; use nameregex or service="yes"`,
      );
    }
    if (p.atleast !== undefined && p.atmax !== undefined && p.atleast >= 0 && p.atmax >= 0 && p.atmax < p.atleast) {
      report(sources.attr(p, 'atmax'), `<proc>: atmax (${p.atmax}) is below atleast (${p.atleast}); the condition can never hold`);
    }
  }
}

function checkCheckers(cfg: Service, { sources, moduleName }: CheckContext, report: Report): void {
  const check = cfg.check;
  if (!check) return;
  // In a farm every node runs the application: there is no primary or secondary side to attach to.
  if (cfg.mode === 'farm' || cfg.mode === 'light') {
    const all: Array<[string, { when?: string }]> = [
      ...check.tcp.map((c) => ['tcp', c] as [string, { when?: string }]),
      ...check.ping.map((c) => ['ping', c] as [string, { when?: string }]),
      ...check.intf.map((c) => ['intf', c] as [string, { when?: string }]),
      ...check.ip.map((c) => ['ip', c] as [string, { when?: string }]),
      ...check.custom.map((c) => ['custom', c] as [string, { when?: string }]),
    ];
    for (const [element, c] of all) {
      if (c.when === 'prim' || c.when === 'second') {
        report(sources.attr(c, 'when'), `<${element}>: when="${c.when}" is not valid when mode="${cfg.mode}" (use "pre" or "both")`);
      }
    }
  }
  for (const m of check.module) {
    if (moduleName !== undefined && m.name === moduleName) {
      report(sources.attr(m, 'name'), `<module>: module "${m.name}" cannot depend on itself`);
    }
  }
}

function checkFailoverTiming(cfg: Service, { sources }: CheckContext, report: Report): void {
  const f = cfg.failoverMachine;
  if (!f || f.periodMs === undefined || f.handleTimeMs === undefined) return;
  // The machine evaluates every period; a candidate action is applied after handle_time of stability.
  if (f.handleTimeMs % f.periodMs !== 0) {
    report(
      sources.attr(f, 'handle_time'),
      `<failover>: handle_time (${f.handleTimeMs}ms) must be a multiple of period (${f.periodMs}ms)`,
    );
  }
}

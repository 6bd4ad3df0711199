// cluster.xml: the nodes of the cluster and the networks (lans) that join them. It must be identical on
// every node, so besides parsing it we give it a signature that nodes compare to detect drift.
import { createHash } from 'node:crypto';
import { diagnosticsError, type Diagnostic } from '../errors/stayup-error.ts';
import { printDocument } from './schema/print.ts';
import type { ElementSpec } from './schema/spec.ts';
import { sortDiagnostics, validateDocument, type SourceMap } from './schema/validate.ts';
import { address, identifier, onOff, port } from './schema/value-types.ts';
import { parseXml } from './xml.ts';
import { membershipTimingAttrs } from './schema/shared-specs.ts';

export interface ClusterNode {
  /** The node's identity everywhere (resources, commands, defaultprim). */
  name: string;
  /** Address on this lan: IPv4, IPv6 (brackets dropped) or host name. */
  addr: string;
  /** Local address to bind when `addr` is translated by NAT. */
  laddr?: string;
}

export interface ClusterLan {
  /** Referred to by a module's <heartbeat name> and <farm><lan name>. */
  name: string;
  /** The lan used for distributed commands (see commandLan). */
  command: boolean;
  nodes: ClusterNode[];
}

export interface ClusterConfig {
  /** UDP port of the cluster membership protocol. */
  port: number;
  pulseMs: number;
  /** Pulses missed before a new leader is elected. */
  mlostCount: number;
  /** Pulses missed before a follower is declared offline. */
  slostCount: number;
  lans: ClusterLan[];
}

export const clusterSchema: ElementSpec = {
  name: 'cluster',
  count: 'one',
  attrs: [],
  children: [
    {
      name: 'lans',
      count: 'one',
      inline: true,
      attrs: [
        { name: 'port', type: port, default: '4800' },
        ...membershipTimingAttrs,
      ],
      children: [
        {
          name: 'lan',
          count: 'some',
          uniqueBy: ['name'],
          attrs: [
            { name: 'name', type: identifier, required: true },
            { name: 'command', type: onOff, default: 'off' },
          ],
          children: [
            {
              name: 'node',
              count: 'some',
              uniqueBy: ['name', 'addr'],
              attrs: [
                { name: 'name', type: identifier, required: true },
                { name: 'addr', type: address, required: true },
                { name: 'laddr', type: address },
              ],
              children: [],
            },
          ],
        },
      ],
    },
  ],
};

/** Parses and checks cluster.xml. Throws CONFIG_XML_MALFORMED, or CONFIG_INVALID with every problem. */
export function parseClusterConfig(text: string, file = 'cluster.xml'): ClusterConfig {
  const root = parseXml(text, file);
  const { value, diagnostics, sources } = validateDocument(root, clusterSchema, { file });
  const config = value as unknown as ClusterConfig;
  if (diagnostics.length === 0) diagnostics.push(...checkCluster(config, sources, file));
  if (diagnostics.length > 0) throw diagnosticsError('CONFIG_INVALID', sortDiagnostics(diagnostics));
  return config;
}

/** Rules across lans, which the schema table cannot express. */
function checkCluster(config: ClusterConfig, sources: SourceMap, file: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  const report = (at: { line: number; col: number }, message: string): void => {
    out.push({ file, line: at.line, col: at.col, message });
  };

  const commandLans = config.lans.filter((l) => l.command);
  for (const extra of commandLans.slice(1)) {
    const first = sources.attr(commandLans[0]!, 'command');
    report(
      sources.attr(extra, 'command'),
      `<lan>: only one lan may have command="on"; lan "${commandLans[0]!.name}" at ${first.line}:${first.col} already has it`,
    );
  }

  // Asymmetric configurations are not supported: every lan joins the same set of nodes.
  const reference = config.lans[0]!;
  const referenceNames = new Set(reference.nodes.map((n) => n.name));
  for (const lan of config.lans.slice(1)) {
    const names = new Set(lan.nodes.map((n) => n.name));
    for (const node of lan.nodes) {
      if (!referenceNames.has(node.name)) {
        report(
          sources.at(node),
          `<node>: node "${node.name}" is not in lan "${reference.name}"; every lan must list the same nodes`,
        );
      }
    }
    for (const node of reference.nodes) {
      if (!names.has(node.name)) {
        report(
          sources.at(lan),
          `<lan>: lan "${lan.name}" lacks node "${node.name}" of lan "${reference.name}"; every lan must list the same nodes`,
        );
      }
    }
  }
  return out;
}

/** The lan for distributed commands: the one with command="on", else the first. */
export function commandLan(config: ClusterConfig): ClusterLan {
  return config.lans.find((l) => l.command) ?? config.lans[0]!;
}

/** The cluster's nodes, in the order of the command lan, with their address on that lan. */
export function clusterNodes(config: ClusterConfig): Array<{ name: string; addr: string }> {
  return commandLan(config).nodes.map((n) => ({ name: n.name, addr: n.addr }));
}

/** Canonical cluster.xml: every default written out, canonical attribute order and formatting. */
export function printClusterConfig(config: ClusterConfig): string {
  return printDocument(clusterSchema, config as unknown as Record<string, unknown>);
}

/**
 * sha256 (hex) of the canonical effective form of cluster.xml. Nodes compare signatures to detect a
 * configuration that differs between them. We hash the canonical form rather than the bytes so that
 * what does not change behaviour does not count as drift: whitespace, comments, attribute order and
 * quoting, bracketed vs bare IPv6, `pulse="100"` vs `pulse="100ms"`, and a default written out or left
 * implicit. Order of lans and of nodes does count: the first lan is the default command lan, and we
 * prefer a false alarm to missing a real difference. Throws like parseClusterConfig on invalid input.
 */
export function clusterSignature(text: string): string {
  const canonical = printClusterConfig(parseClusterConfig(text));
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

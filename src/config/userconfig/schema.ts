// The userconfig.xml schema as one table (SafeKit User's Guide §13, summarised in safekit.md §2.3-2.15):
// for each element its attributes, their types, defaults and implicit duration units, and its children.
// The generic validator and printer in ../schema/ do the work; rules that relate several elements are in
// checks.ts. Keys are the UserConfig field names (types.ts).
import { closest } from '../did-you-mean.ts';
import { isHostname } from '../address.ts';
import type { DefaultContext, ElementSpec, ValueType } from '../schema/spec.ts';
import { membershipTimingAttrs, nameValueElement } from '../schema/shared-specs.ts';
import {
  absolutePath,
  address,
  anyOr,
  cronSpec,
  duration,
  envName,
  extendedRegex,
  identifier,
  integer,
  interfaceName,
  ipAddress,
  keyword,
  list,
  macAddress,
  netmask,
  onOff,
  pattern,
  port,
  relativePath,
  text,
  yesNo,
} from '../schema/value-types.ts';
import { formatFailoverRules, parseFailoverRules, type FailoverRule } from './rules.ts';

const mode = (c: DefaultContext): string | undefined => c.inherited('service', 'mode');

/** Durations: a bare number is in the attribute's legacy unit, the unit its documented default uses. */
const ms = duration({ implicitUnit: 'ms' });
const seconds = duration({ implicitUnit: 's' });
const secondsOrZero = duration({ implicitUnit: 's', allowZero: true });

const checkerWhen = keyword(['pre', 'prim', 'second', 'both'] as const);
const checkerAction = keyword(['wait', 'restart', 'stopstart', 'stop', 'noaction'] as const);
/** Checkers that run after start default to the module's "running" class: prim (mirror), both (farm). */
const runningClass = (c: DefaultContext): string => (mode(c) === 'mirror' ? 'prim' : 'both');

/** A name, or else a built-in keyword — and a near-miss of a keyword is a typo, not a custom name. */
function keywordOr(keywords: readonly string[], other: ValueType<string>, otherWhat: string): ValueType<string> {
  return {
    parse: (t, attr) => {
      if (keywords.includes(t)) return { ok: true, value: t };
      const guess = closest(t, keywords);
      if (guess !== undefined && !t.includes('/')) {
        return { ok: false, message: `attribute "${attr}": "${t}" is not ${keywords.join(', ')} or ${otherWhat}; did you mean "${guess}"?` };
      }
      return other.parse(t, attr);
    },
    format: (v) => v,
  };
}

const processName = pattern(/^\S+$/, 'a process or service name without spaces');
const executable = pattern(/^\S+$/, 'an executable path without spaces');
const moduleName = pattern(/^[A-Za-z0-9_-]{1,32}$/, 'a module name (1-32 letters, digits, "_" or "-")');
const hostname = pattern(isHostname, 'a host name');
const serviceList = list(/,/, ', ', processName);
const fileSuffix = pattern(/^[A-Za-z0-9_.-]+$/, 'a file name suffix of letters, digits, "_", "." or "-"');

const virtualAddr: ElementSpec = {
  name: 'virtual_addr',
  count: 'some',
  attrs: [
    { name: 'addr', type: address, required: true },
    {
      name: 'where',
      type: keyword(['one_side_alias', 'one_side', 'alias'] as const),
      default: (c) => (mode(c) === 'farm' ? 'alias' : 'one_side_alias'),
    },
    { name: 'check', type: onOff, default: 'on', doc: 'generates the IP checker ip.<addr> (action stopstart)' },
    { name: 'connections', type: onOff, default: 'off', doc: 'counts connections into resource connections.<addr>' },
    { name: 'netmask', type: netmask },
  ],
  children: [],
};

const heart: ElementSpec = {
  name: 'heart',
  count: 'optional',
  doc: 'mirror heartbeats, one per network shared by the two nodes',
  attrs: [
    { name: 'port', type: port, doc: 'default 8888 + (module id - 1), computed by the daemon' },
    { name: 'pulse', key: 'pulseMs', type: ms, default: '700ms' },
    { name: 'timeout', key: 'timeoutMs', type: ms, default: '30000ms' },
    { name: 'permanent_arp', type: onOff, default: 'on' },
  ],
  retired: {
    server:
      'the <server addr> heartbeat syntax of SafeKit 7.1 and older is not supported; ' +
      'write <heartbeat name="<lan of cluster.xml>"/>',
  },
  children: [
    {
      name: 'heartbeat',
      count: 'some',
      uniqueBy: ['name', 'ident'],
      attrs: [
        { name: 'name', type: identifier, required: true, doc: 'a lan of cluster.xml' },
        { name: 'ident', type: identifier, default: (c) => c.own('name'), doc: 'resource heartbeat.<ident>' },
        { name: 'pulse', key: 'pulseMs', type: ms, default: (c) => c.inherited('heart', 'pulse') ?? '700ms' },
        { name: 'timeout', key: 'timeoutMs', type: ms, default: (c) => c.inherited('heart', 'timeout') ?? '30000ms' },
      ],
      children: [],
    },
  ],
};

const farm: ElementSpec = {
  name: 'farm',
  count: 'optional',
  doc: 'farm membership protocol',
  attrs: [
    { name: 'port', type: port, doc: 'default 4803 + (module id - 1) * 3, computed by the daemon' },
    ...membershipTimingAttrs,
  ],
  children: [
    {
      name: 'lan',
      count: 'some',
      uniqueBy: ['name'],
      attrs: [{ name: 'name', type: identifier, required: true, doc: 'a lan of cluster.xml' }],
      children: [],
    },
  ],
};

const vip: ElementSpec = {
  name: 'vip',
  count: 'optional',
  attrs: [
    { name: 'tcpreset', type: onOff, default: 'on' },
    { name: 'scriptcontrol', type: onOff, default: 'off' },
  ],
  children: [
    {
      name: 'interface_list',
      count: 'one',
      inline: true,
      attrs: [],
      children: [
        {
          name: 'interface',
          key: 'interfaces',
          count: 'some',
          attrs: [
            { name: 'name', type: interfaceName },
            { name: 'check', type: onOff, default: 'on', doc: 'generates the interface checker intf.<net>' },
            { name: 'arpreroute', type: onOff, default: 'off' },
            { name: 'arpinterval', key: 'arpIntervalMs', type: seconds, default: '60s' },
            { name: 'arpelapse', key: 'arpElapseMs', type: secondsOrZero, default: '1200s' },
          ],
          exactlyOneOfChildren: [['real_interface', 'virtual_interface']],
          children: [
            { name: 'real_interface', count: 'optional', attrs: [], children: [virtualAddr] },
            {
              name: 'virtual_interface',
              count: 'optional',
              attrs: [
                { name: 'type', type: keyword(['vmac_directed', 'vmac_invisible'] as const), default: 'vmac_directed' },
                { name: 'addr', type: macAddress },
              ],
              children: [virtualAddr],
            },
          ],
        },
      ],
    },
    {
      name: 'loadbalancing_list',
      count: 'optional',
      inline: true,
      attrs: [],
      children: [
        {
          name: 'group',
          count: 'many',
          uniqueBy: ['name'],
          attrs: [{ name: 'name', type: identifier, required: true }],
          children: [
            {
              name: 'cluster',
              count: 'optional',
              inline: true,
              attrs: [],
              children: [
                {
                  name: 'host',
                  count: 'many',
                  uniqueBy: ['name'],
                  attrs: [
                    { name: 'name', type: identifier, required: true, doc: 'a node of cluster.xml' },
                    { name: 'power', type: integer({ min: 0 }), default: '1', doc: 'relative share of the load' },
                  ],
                  children: [],
                },
              ],
            },
            {
              name: 'rule',
              count: 'some',
              attrs: [
                { name: 'virtual_addr', type: anyOr(address), default: '*' },
                { name: 'port', type: anyOr(port), default: '*' },
                { name: 'proto', type: keyword(['tcp', 'udp', 'arp'] as const), required: true },
                { name: 'filter', type: keyword(['on_addr', 'on_port', 'on_ipid'] as const), required: true },
              ],
              children: [],
            },
          ],
        },
      ],
    },
  ],
};

const rfs: ElementSpec = {
  name: 'rfs',
  count: 'optional',
  doc: 'real-time file replication (mirror)',
  attrs: [
    { name: 'acl', type: onOff, default: 'off' },
    { name: 'async', type: keyword(['second', 'none'] as const), default: 'second' },
    { name: 'iotimeout', key: 'iotimeoutMs', type: seconds },
    { name: 'roflags', type: text(), doc: 'Windows only; kept as written' },
    { name: 'locktimeout', key: 'locktimeoutMs', type: seconds, default: '100s' },
    { name: 'sendtimeout', key: 'sendtimeoutMs', type: seconds, default: '30s' },
    { name: 'nbrei', type: integer({ min: 1, max: 64 }), default: '6' },
    { name: 'packetsize', type: integer({ min: 1 }) },
    { name: 'reipacketsize', type: integer({ min: 1 }), default: '8388608' },
    { name: 'ruzone_blocksize', type: integer({ min: 1 }), default: '8388608' },
    { name: 'namespacepolicy', type: keyword(['0', '1', '3', '4'] as const), default: '4' },
    { name: 'reitimeout', key: 'reitimeoutMs', type: seconds, default: '150s' },
    { name: 'reicommit', type: integer({ min: 0 }), default: '0' },
    { name: 'reidetail', type: onOff, default: 'off' },
    { name: 'allocthreshold', type: integer({ min: 0 }) },
    { name: 'nbremconn', type: integer({ min: 1, max: 64 }), default: '1' },
    { name: 'checktime', key: 'checktimeMs', type: ms, default: '220000ms' },
    { name: 'checkintv', key: 'checkintvMs', type: seconds, default: '120s' },
    { name: 'nfsbox_options', type: text() },
    { name: 'scripts', type: onOff, default: 'off' },
    { name: 'reiallowedbw', key: 'reiallowedbwKbps', type: integer({ min: 1 }) },
    { name: 'syncdelta', key: 'syncdeltaMs', type: duration({ implicitUnit: 'm', allowZero: true }), default: '0m' },
    { name: 'syncat', type: cronSpec },
    { name: 'mountoversuffix', type: fileSuffix },
    {
      name: 'mountover',
      type: onOff,
      legacy:
        'SafeKit 7.x switch of the rename-and-mount-over trick, still in 7.x templates (mountover="off"); ' +
        'not documented in 8.2, where replication always mounts over the directory',
    },
  ],
  children: [
    {
      name: 'flow',
      count: 'optional',
      doc: 'legacy: the lan of the replication stream (default: heartbeat ident="flow", else the first)',
      attrs: [{ name: 'name', type: identifier, required: true }],
      children: [],
    },
    {
      name: 'replicated',
      key: 'replicated',
      count: 'some',
      attrs: [
        { name: 'dir', type: absolutePath, required: true },
        { name: 'mode', type: keyword(['read_only'] as const) },
      ],
      children: [
        {
          name: 'tocheck',
          key: 'toCheck',
          count: 'many',
          attrs: [{ name: 'path', type: relativePath, required: true }],
          children: [],
        },
        {
          name: 'notreplicated',
          key: 'notReplicated',
          count: 'many',
          exactlyOneOfAttrs: [['path', 'regexpath']],
          attrs: [
            { name: 'path', type: relativePath },
            { name: 'regexpath', type: extendedRegex({ negatable: true }) },
          ],
          children: [],
        },
      ],
    },
  ],
};

const user: ElementSpec = {
  name: 'user',
  count: 'optional',
  doc: 'module scripts; without <user> they are not run',
  attrs: [
    { name: 'nicestoptimeout', key: 'nicestoptimeoutMs', type: seconds, default: '300s' },
    { name: 'forcestoptimeout', key: 'forcestoptimeoutMs', type: seconds, default: '300s' },
    { name: 'logging', type: keyword(['userlog', 'none'] as const), default: 'userlog' },
    { name: 'userlogsize', key: 'userlogSizeKb', type: integer({ min: 1 }), default: '2048' },
  ],
  children: [
    nameValueElement('var'),
  ],
};

const vhost: ElementSpec = {
  name: 'vhost',
  count: 'optional',
  attrs: [],
  children: [
    {
      name: 'virtualhostname',
      key: 'hostnames',
      count: 'some',
      uniqueBy: ['name'],
      attrs: [
        { name: 'name', type: hostname, required: true },
        { name: 'envfile', type: absolutePath, required: true },
        { name: 'when', type: keyword(['prim', 'second', 'both'] as const), default: 'prim' },
      ],
      children: [],
    },
  ],
};

const errd: ElementSpec = {
  name: 'errd',
  count: 'optional',
  doc: 'process and service monitoring',
  attrs: [{ name: 'polltimer', key: 'polltimerMs', type: seconds, default: '30s' }],
  children: [
    {
      name: 'proc',
      count: 'many',
      attrs: [
        { name: 'name', type: processName, required: true },
        { name: 'service', type: yesNo, default: 'no' },
        { name: 'nameregex', type: extendedRegex() },
        { name: 'argregex', type: extendedRegex() },
        { name: 'atleast', type: integer({ min: -1 }), default: '1' },
        { name: 'atmax', type: integer({ min: -1 }), default: '-1' },
        {
          name: 'action',
          type: keywordOr(['restart', 'stopstart', 'stop', 'noaction'], executable, 'a handler executable'),
          default: 'stopstart',
        },
        { name: 'restart_services', type: serviceList },
        {
          name: 'class',
          type: keywordOr(['prim', 'both', 'pre', 'second', 'sec'], identifier, 'a custom class name'),
          default: runningClass,
        },
        { name: 'start_after', type: integer({ min: 1 }), default: '1' },
      ],
      children: [],
    },
  ],
};

const checkerTo = (attrs: ElementSpec['attrs'], count: ElementSpec['count'] = 'one'): ElementSpec => ({
  name: 'to',
  key: 'to',
  count,
  attrs,
  children: [],
});
const interval = { name: 'interval', key: 'intervalMs', type: seconds, default: '10s' };
const timeout = { name: 'timeout', key: 'timeoutMs', type: seconds, default: '5s' };

const check: ElementSpec = {
  name: 'check',
  count: 'optional',
  materialize: true,
  attrs: [],
  children: [
    {
      name: 'tcp',
      key: 'tcp',
      count: 'many',
      uniqueBy: ['ident'],
      attrs: [
        { name: 'ident', type: identifier, required: true },
        { name: 'when', type: checkerWhen, required: true },
        { name: 'action', type: checkerAction, default: (c) => (c.own('when') === 'pre' ? 'wait' : 'restart') },
      ],
      children: [
        checkerTo([{ name: 'addr', type: address, required: true }, { name: 'port', type: port, required: true }, interval, timeout]),
      ],
    },
    {
      name: 'ping',
      key: 'ping',
      count: 'many',
      uniqueBy: ['ident'],
      attrs: [
        { name: 'ident', type: identifier, required: true },
        { name: 'when', type: checkerWhen, default: 'pre' },
        { name: 'action', type: checkerAction, default: 'wait' },
      ],
      children: [checkerTo([{ name: 'addr', type: address, required: true }, interval, timeout], 'some')],
    },
    {
      name: 'intf',
      key: 'intf',
      count: 'many',
      uniqueBy: ['ident'],
      attrs: [
        { name: 'ident', type: identifier, required: true },
        { name: 'when', type: checkerWhen, default: 'pre' },
      ],
      children: [checkerTo([{ name: 'local_addr', type: ipAddress, required: true }])],
    },
    {
      name: 'ip',
      key: 'ip',
      count: 'many',
      uniqueBy: ['ident'],
      attrs: [
        { name: 'ident', type: identifier, required: true },
        { name: 'when', type: checkerWhen, default: runningClass },
      ],
      children: [checkerTo([{ name: 'addr', type: address, required: true }, interval])],
    },
    {
      name: 'custom',
      key: 'custom',
      count: 'many',
      uniqueBy: ['ident'],
      attrs: [
        { name: 'ident', type: identifier, required: true },
        { name: 'when', type: checkerWhen, default: runningClass },
        { name: 'exec', type: executable, required: true },
        { name: 'arg', type: text({ allowEmpty: true }) },
        { name: 'action', type: checkerAction, default: 'noaction' },
      ],
      children: [],
    },
    {
      name: 'module',
      key: 'module',
      count: 'many',
      uniqueBy: ['ident'],
      attrs: [
        { name: 'name', type: moduleName, required: true },
        { name: 'ident', type: identifier },
      ],
      children: [
        {
          name: 'to',
          count: 'optional',
          materialize: true,
          attrs: [
            { name: 'addr', type: address, default: '127.0.0.1' },
            { name: 'secure', type: onOff, default: 'off' },
            // The web service listens on 9010 (HTTP) or 9453 (HTTPS).
            { name: 'port', type: port, default: (c) => (c.own('secure') === 'on' ? '9453' : '9010') },
          ],
          children: [],
        },
      ],
    },
    {
      name: 'splitbrain',
      count: 'optional',
      attrs: [
        { name: 'ident', type: identifier, required: true },
        { name: 'exec', type: executable, default: 'ping' },
        { name: 'arg', key: 'witnesses', type: list(/\s+/, ' ', address), required: true },
      ],
      children: [],
    },
  ],
};

const failover: ElementSpec = {
  name: 'failover',
  key: 'failoverMachine',
  count: 'optional',
  materialize: true,
  doc: 'the failover machine: rules from resources to actions',
  attrs: [
    { name: 'extends', type: yesNo, default: 'yes' },
    { name: 'period', key: 'periodMs', type: ms, default: '5000ms' },
    { name: 'handle_time', key: 'handleTimeMs', type: duration({ implicitUnit: 'ms', allowZero: true }), default: '15000ms' },
  ],
  children: [],
  text: {
    key: 'rules',
    parse: (source, ctx) =>
      parseFailoverRules(source, {
        locate: ctx.locate,
        report: ctx.report,
        mode: ctx.inherited('service', 'mode'),
      }),
    format: (rules: FailoverRule[], indent) => formatFailoverRules(rules, indent),
  },
};

export const userConfigSchema: ElementSpec = {
  name: 'safe',
  count: 'one',
  attrs: [],
  children: [
    nameValueElement('macro'),
    {
      name: 'service',
      count: 'one',
      attrs: [
        { name: 'mode', type: keyword(['mirror', 'farm', 'light'] as const), required: true },
        { name: 'boot', type: keyword(['on', 'off', 'auto', 'ignore'] as const), default: 'ignore' },
        { name: 'boot_delay', key: 'bootDelayMs', type: secondsOrZero, default: '0s' },
        { name: 'failover', type: onOff, default: 'on' },
        { name: 'defaultprim', key: 'defaultPrim', type: identifier, default: 'alone' },
        { name: 'maxloop', key: 'maxLoop', type: integer({ min: 0 }), default: '3' },
        {
          name: 'loop_interval',
          key: 'loopIntervalMs',
          type: duration({ implicitUnit: 'h', allowZero: true }),
          default: '24h',
        },
        { name: 'automatic_reboot', type: onOff, default: 'off' },
      ],
      children: [heart, farm, vip, rfs, user, vhost, errd, check, failover],
    },
  ],
};

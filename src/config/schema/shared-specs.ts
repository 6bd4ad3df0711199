// Schema pieces that cluster.xml and userconfig.xml declare alike.
import type { AttrSpec, ElementSpec } from './spec.ts';
import { duration, envName, integer, text } from './value-types.ts';

/**
 * Timing of a membership protocol (cluster-wide <lans>, and a farm's <farm>): pulse and the pulses missed
 * before a leader (mlost) or a follower (slost) is given up. Same defaults in both places.
 */
export const membershipTimingAttrs: readonly AttrSpec[] = [
  { name: 'pulse', key: 'pulseMs', type: duration({ implicitUnit: 'ms' }), default: '100ms' },
  { name: 'mlost_count', type: integer({ min: 1 }), default: '20' },
  { name: 'slost_count', type: integer({ min: 1 }), default: '10' },
];

/** A `<NAME name="…" value="…"/>` element, many allowed, names unique (`<macro>`, `<var>`). */
export function nameValueElement(name: string): ElementSpec {
  return {
    name,
    count: 'many',
    uniqueBy: ['name'],
    attrs: [
      { name: 'name', type: envName, required: true },
      { name: 'value', type: text({ allowEmpty: true }), required: true },
    ],
    children: [],
  };
}

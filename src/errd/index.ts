// Process monitoring of a module (<errd>, reference §2.12). See README.md.
export * from './process-table.ts';
export * from './evaluate.ts';
export * from './systemd.ts';
export * from './monitor.ts';

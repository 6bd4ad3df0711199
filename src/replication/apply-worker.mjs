// Entry point of the secondary's apply worker (apply-worker.ts): a worker thread does not inherit the
// TypeScript loader that the daemon registers with tsx's API, so it registers it itself.
import { register } from 'tsx/esm/api';

register();
await import('./apply-worker.ts');

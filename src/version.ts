import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { installDir } from './util/paths.ts';

export const version: string = (JSON.parse(readFileSync(join(installDir, 'package.json'), 'utf8')) as { version: string }).version;

// Writes docs/asyncapi.yaml from the device contract's zod schemas: `npm run asyncapi`.
import { writeFileSync } from 'node:fs';
import { asyncApiYaml } from './asyncapi/document.ts';

writeFileSync('docs/asyncapi.yaml', asyncApiYaml());

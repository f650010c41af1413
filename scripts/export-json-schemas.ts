/**
 * Writes a JSON Schema (draft 2020-12) for every message a robot publishes, so firmware written in other
 * languages can validate against the same contract the cloud enforces. Usage: `npm run schemas:export [-- <dir>]`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deviceMessageSchemas } from '../schemas/json-schemas.js';

const outDir = process.argv[2] ?? fileURLToPath(new URL('../schemas/json/', import.meta.url));
await mkdir(outDir, { recursive: true });
for (const [name, schema] of Object.entries(deviceMessageSchemas())) {
  const file = path.join(outDir, `${name}.schema.json`);
  await writeFile(file, `${JSON.stringify(schema, null, 2)}\n`);
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
}

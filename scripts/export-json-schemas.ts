/**
 * Writes the published contract: a JSON Schema (draft 2020-12) for every message that crosses the system's edges
 * (robots over MQTT, the live WebSocket), so firmware and clients written in other languages validate against the
 * same contract the cloud enforces, and the OpenAPI 3.1 document of `/api/v2` (the one `GET /api/v2/openapi.json`
 * serves). Usage: `npm run schemas:export [-- <dir>]`: by default schemas/json/*.schema.json and schemas/openapi.json;
 * with a directory, everything in it.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiDocument } from '../functions/app/http/routes.js';
import { messageSchemas } from '../schemas/json-schemas.js';

const outDir = process.argv[2];
const schemaDir = outDir ?? fileURLToPath(new URL('../schemas/json/', import.meta.url));
const openApiFile = path.join(outDir ?? fileURLToPath(new URL('../schemas/', import.meta.url)), 'openapi.json');

await mkdir(schemaDir, { recursive: true });
const files: [string, unknown][] = [
  ...Object.entries(messageSchemas()).map(([name, schema]): [string, unknown] => [path.join(schemaDir, `${name}.schema.json`), schema]),
  [openApiFile, apiDocument()],
];
for (const [file, content] of files) {
  await writeFile(file, `${JSON.stringify(content, null, 2)}\n`);
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
}

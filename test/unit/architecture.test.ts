import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The dependency direction of the design card, checked on every import: lib ← schemas ← domain ← app ← adapters/handlers;
 * nothing in the product imports a handler; the agent and the dashboard never reach into the cloud's code.
 */
const root = fileURLToPath(new URL('../../', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(root, dir)).flatMap((name) => {
    const relative = path.join(dir, name);
    if (statSync(path.join(root, relative)).isDirectory()) return sourceFiles(relative);
    return relative.endsWith('.ts') ? [relative] : [];
  });
}

/** Each import of a file, as a path from the project root for relative imports, or the package name. */
function importsOf(file: string): string[] {
  const source = readFileSync(path.join(root, file), 'utf8');
  return [...source.matchAll(/^\s*(?:import|export)[^'"]*?from\s+'([^']+)'/gm)].map(([, specifier]) =>
    specifier!.startsWith('.') ? path.normalize(path.join(path.dirname(file), specifier!)) : specifier!,
  );
}

function violations(dir: string, allowed: (target: string) => boolean): string[] {
  return sourceFiles(dir).flatMap((file) => importsOf(file).filter((target) => !allowed(target)).map((t) => `${file} → ${t}`));
}

const isNodeBuiltin = (target: string) => target.startsWith('node:');

describe('architecture', () => {
  it('lib (small helpers every part shares) imports nothing', () => {
    expect(violations('lib', () => false)).toEqual([]);
  });

  it('schemas import only zod and each other', () => {
    expect(violations('schemas', (t) => t === 'zod' || t.startsWith('schemas/') || t.startsWith('lib/'))).toEqual([]);
  });

  it('the domain is pure: it imports only schemas and itself', () => {
    expect(
      violations('functions/domain', (t) => t.startsWith('schemas/') || t.startsWith('functions/domain/') || t.startsWith('lib/')),
    ).toEqual([]);
  });

  it('use cases reach the outside world only through ports (no SDK, no pg, no adapter, no handler)', () => {
    expect(
      violations(
        'functions/app',
        (t) =>
          !t.startsWith('@aws-sdk/') && t !== 'pg' && !t.startsWith('functions/handlers/') && !t.startsWith('functions/adapters/'),
      ),
    ).toEqual([]);
  });

  it('nothing imports a Lambda entry', () => {
    const product = ['functions', 'local', 'infra', 'agent', 'schemas'].flatMap((dir) =>
      violations(dir, (t) => !t.startsWith('functions/handlers/')),
    );
    expect(product).toEqual([]);
  });

  it('the agent imports only schemas, its own code, zod, the AWS IoT device SDK and Node', () => {
    const allowed = (t: string) =>
      t.startsWith('schemas/') || t.startsWith('agent/') || t.startsWith('lib/') || t === 'zod' || t === 'aws-iot-device-sdk-v2' || isNodeBuiltin(t);
    expect(violations('agent', allowed)).toEqual([]);
  });

  it('infra imports the functions only as entry paths (schemas for shared definitions)', () => {
    expect(violations('infra', (t) => !t.startsWith('functions/'))).toEqual([]);
  });
});

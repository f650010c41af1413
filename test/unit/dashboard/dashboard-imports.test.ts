import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * zod must stay out of the page's bundle: the dashboard imports schemas/ for types only (`import type`, erased by the
 * build), and never zod itself. A value import of a schema module would pull zod and every schema in.
 */
const dashboardSrc = fileURLToPath(new URL('../../../dashboard/src/', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) return sources(file);
    return /\.tsx?$/.test(name) ? [file] : [];
  });
}

/** The import/export statements of a source that bring values from schemas/ or zod. */
function valueImportsIn(source: string): string[] {
  return [...source.matchAll(/^\s*(import|export)\s+(?!type\b)([^'";]*?)\s+from\s+'([^']+)'/gm)]
    .filter(([, , , specifier]) => specifier === 'zod' || /(^|\/)schemas\//.test(specifier!))
    .map(([statement]) => statement!.trim());
}

function valueImports(file: string): string[] {
  return valueImportsIn(readFileSync(file, 'utf8')).map((statement) => `${path.relative(dashboardSrc, file)}: ${statement}`);
}

describe("the dashboard's imports", () => {
  it('take only types from schemas/ and nothing from zod', () => {
    const files = sources(dashboardSrc);
    expect(files.length).toBeGreaterThan(10);
    expect(files.flatMap(valueImports)).toEqual([]);
  });

  it('would notice a value import', () => {
    expect(valueImportsIn("import { RobotView } from '../../schemas/index.js';")).toHaveLength(1);
    expect(valueImportsIn("import { z } from 'zod';")).toHaveLength(1);
    expect(valueImportsIn("export { ROLES } from '../../../schemas/api.js';")).toHaveLength(1);
    expect(valueImportsIn("import type { RobotView } from '../../schemas/index.js';")).toEqual([]);
    expect(valueImportsIn("export type { DashboardConfig } from '../../schemas/index.js';")).toEqual([]);
    expect(valueImportsIn("import { useMemo } from 'react';")).toEqual([]);
  });
});

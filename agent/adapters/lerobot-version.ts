import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The installed LeRobot version, read the way pip records it: `<site-packages>/lerobot-<version>.dist-info/METADATA`
 * carries a `Version:` header. Reading one small file is far cheaper than starting Python to ask
 * `importlib.metadata`. Undefined when LeRobot is not installed there; an unreadable site-packages throws (the
 * telemetry reader logs it once and leaves the field out).
 */
export function lerobotVersionFromSitePackages(sitePackages: string): () => Promise<string | undefined> {
  return async () => {
    const distInfo = (await readdir(sitePackages)).find((name) => /^lerobot-[^/]+\.dist-info$/i.test(name));
    if (distInfo === undefined) return undefined;
    const metadata = await readFile(join(sitePackages, distInfo, 'METADATA'), 'utf8');
    const version = /^Version:[ \t]*(\S+)[ \t]*$/m.exec(metadata)?.[1];
    if (version === undefined) throw new Error(`${distInfo}/METADATA has no Version header`);
    return version;
  };
}

import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DeploymentStrategy } from '../../schemas/deployments.js';
import { axeViolations, launchBrowser, openPage, rowSelector, signIn, type DashboardPage } from '../support/browser.js';
import { freePorts, freshStateDir, getJson, removeStateDir, ROOT, startCloudProcess, type CloudProcess, type Ports } from '../support/local-cloud-process.js';
import { POLL } from '../support/poll.js';
import { COOL_SAMPLE, connectRobot, type RobotClient } from './robot-clients.js';

/**
 * Issue 12, item 6, in a real browser against the real local cloud: an engineer selects two robots in the fleet,
 * opens "Deploy", names a release made by `npm run release`, keeps the strategy's defaults and submits; the page goes
 * to the new deployment, which the API holds with exactly those robots and the schema's default strategy, and shows
 * its robots. An operator gets no "Deploy" and no deployment action.
 */
const ROBOTS = ['lekiwi-DPL001', 'lekiwi-DPL002'];
const OTHER = 'lekiwi-DPL003';
const VERSION = '1.4.0-browser';

let stateDir: string;
let ports: Ports;
let cloud: CloudProcess;
let browser: Browser;
const robots: RobotClient[] = [];
const pages: DashboardPage[] = [];

async function page(): Promise<DashboardPage> {
  const opened = await openPage(browser);
  pages.push(opened);
  return opened;
}

/** `npm run release` (the CLI itself) into the cloud's artifact store. */
async function release(version: string): Promise<void> {
  const dir = join(stateDir, 'release-src');
  await mkdir(join(dir, 'bin'), { recursive: true });
  await writeFile(join(dir, 'config.yaml'), `version: ${version}\n`);
  await writeFile(join(dir, 'bin', 'run.sh'), '#!/bin/sh\necho ok\n', { mode: 0o755 });
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/release.ts', '--dir', dir, '--version', version], {
    cwd: ROOT,
    env: { ...process.env, LOCAL_STATE_DIR: stateDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`npm run release failed (${code}): ${output}`);
}

beforeAll(async () => {
  stateDir = await freshStateDir();
  ports = await freePorts();
  [cloud, browser] = await Promise.all([startCloudProcess({ stateDir, ports }), launchBrowser()]);
  await release(VERSION);
  for (const robotId of [...ROBOTS, OTHER]) {
    const robot = await connectRobot({ stateDir, mqttPort: ports.mqtt, robotId });
    robots.push(robot);
    await robot.publishTelemetry(COOL_SAMPLE);
  }
  for (const robotId of [...ROBOTS, OTHER]) {
    await vi.waitFor(async () => expect((await getJson(cloud.endpoints, `/robots/${robotId}`)).body?.deployable, `${robotId} deployable in the API`).toBe(true), POLL);
  }
}, 180_000);

afterAll(async () => {
  for (const opened of pages) await opened.close().catch(() => undefined);
  await browser?.close();
  for (const robot of robots) await robot.close();
  await cloud?.stop();
  await removeStateDir(stateDir);
});

describe('deployments in the dashboard', { timeout: 120_000 }, () => {
  it('an engineer deploys a release to the selected robots through the dialog and lands on the new deployment', async () => {
    const { page: tab, errors } = await page();
    await signIn(tab, `http://localhost:${ports.http}/?sel=${ROBOTS.join(',')}`, 'engineer');
    await tab.locator(rowSelector(ROBOTS[0]!)).waitFor();
    await tab.locator('button[data-action="deploy"]').click();
    const dialog = tab.locator('[role="dialog"]');
    await dialog.locator('[data-testid="deploy-targets"]', { hasText: 'the 2 selected robots' }).waitFor();
    // The release field has the focus: the keyboard alone fills and submits the dialog.
    await tab.keyboard.type(VERSION);
    expect(await dialog.locator('[data-testid="deploy-summary"]').textContent()).toContain(`Deploy ${VERSION} to the 2 selected robots: 2 of 2 robots deployable now`);
    expect(await axeViolations(tab), 'axe on the deploy dialog').toEqual([]);
    await tab.keyboard.press('Enter');

    await tab.waitForURL(/\/deployments\/dep-[0-9A-Z]{26}$/, { timeout: 20_000 });
    const deploymentId = new URL(tab.url()).pathname.split('/').pop()!;
    const { status, body } = await getJson(cloud.endpoints, `/deployments/${deploymentId}`);
    expect(status).toBe(200);
    expect(body).toMatchObject({ release: { version: VERSION }, targets: { robotIds: ROBOTS }, strategy: DeploymentStrategy.parse({}), createdBy: expect.any(String) });
    expect(body.robots.map((robot: { robotId: string }) => robot.robotId).sort()).toEqual([...ROBOTS].sort());

    for (const robotId of ROBOTS) await tab.locator(`[data-testid="deployment-robot"][data-robot-id="${robotId}"]`).waitFor();
    expect(await tab.locator(`[data-testid="deployment-robot"][data-robot-id="${OTHER}"]`).count()).toBe(0);
    await tab.locator('[data-testid="batch-row"]').first().waitFor();
    expect(await axeViolations(tab), 'axe on the deployment page').toEqual([]);

    // It is in the list too, with its release.
    await tab.locator('nav.main-nav a[href="/deployments"]').click();
    await expect.poll(() => tab.locator(`[data-testid="deployment-row"][data-deployment-id="${deploymentId}"]`).textContent(), { message: 'the list row' }).toContain(VERSION);
    expect(errors).toEqual([]);
  });

  it('an operator sees the deployments but no Deploy and no deployment action', async () => {
    const { page: tab, errors } = await page();
    await signIn(tab, `http://localhost:${ports.http}/`, 'operator');
    await tab.locator(rowSelector(ROBOTS[0]!)).waitFor();
    expect(await tab.locator('button[data-action="deploy"]').count()).toBe(0);
    await tab.locator('nav.main-nav a[href="/deployments"]').click();
    await tab.locator('[data-testid="deployment-row"] a').first().click();
    await tab.locator('[data-testid="deployment-detail"] [data-testid="deployment-state"]').waitFor();
    expect(await tab.locator('button[data-action^="deployment-"]').count()).toBe(0);
    expect(errors).toEqual([]);
  });
});

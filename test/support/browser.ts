import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ROOT } from './local-cloud-process.js';

/**
 * A real browser for the dashboard's browser tests and `bench:dashboard`: Debian's Chromium driven by playwright-core
 * (no downloaded browser), headless, one fresh context (cookies, storage) per test.
 *
 * Code that runs in the page is written as strings, not functions: the test runner's transform may add helpers
 * (`__name`) to a function's body that do not exist in the page, and this project's type-check has no DOM types.
 */

/** Where Debian's `chromium` package puts the browser (`apt-get install chromium`). */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Flags for a container without a GPU or user namespaces, and no network chatter of Chromium's own. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Test artifacts (`.reports/` is the report folder, ignored by git). */
export const SCREENSHOT_DIR = join(ROOT, '.reports', 'screenshots');

export type Role = 'admin' | 'engineer' | 'operator';

export async function launchBrowser(extraArgs: string[] = []): Promise<Browser> {
  try {
    return await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...extraArgs] });
  } catch (error) {
    throw new Error(
      `Could not start Chromium at ${CHROMIUM} (install Debian's package: apt-get install chromium, or set CHROMIUM_PATH): ${(error as Error).message}`,
    );
  }
}

/** A page in a fresh context, with the page's own errors kept (a test can assert there were none). */
export interface DashboardPage {
  readonly context: BrowserContext;
  readonly page: Page;
  /** Uncaught exceptions and console errors of the page, in order. */
  readonly errors: string[];
  close(): Promise<void>;
}

export async function openPage(browser: Browser, options: { initScripts?: string[] } = {}): Promise<DashboardPage> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  for (const script of options.initScripts ?? []) await context.addInitScript({ content: script });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  return { context, page, errors, close: () => context.close() };
}

/**
 * Signs in the way a person does: opens the dashboard at `url` (the fleet view, or a deep link such as
 * `/robots/<id>`), is sent to the issuer's sign-in page (`/oauth2/authorize`, the local cloud's look-alike of
 * Cognito's hosted UI), picks the role, and is back where it started with the user shown in the header. Tokens live
 * in the page's memory only: a reload or `page.goto` goes through the issuer again (which, with its session cookie,
 * answers at once as the same role), so tests move around by clicking.
 */
export async function signIn(page: Page, url: string, role: Role): Promise<void> {
  await page.goto(url);
  const roleButton = page.locator(`button[name="role"][value="${role}"]`);
  // A context that signed in before has the issuer's session cookie: the issuer answers at once, with no form.
  await roleButton.or(page.locator('[data-testid="user"]')).first().waitFor({ timeout: 20_000 });
  if (await roleButton.isVisible()) {
    await roleButton.click();
    await page.waitForURL((at) => !at.pathname.startsWith('/oauth2/'), { timeout: 20_000 });
  }
  await page.locator('[data-testid="user"]', { hasText: role }).waitFor({ timeout: 20_000 });
  const path = new URL(url).pathname;
  if (path === '/') await page.locator('[role="grid"]').waitFor({ timeout: 20_000 });
}

/** Opens a robot from the fleet table the way a person does: its link in its row. */
export async function openRobot(page: Page, robotId: string): Promise<void> {
  await page.locator(`${rowSelector(robotId)} a[href="/robots/${encodeURIComponent(robotId)}"]`).click();
  await page.locator(`[data-testid="robot-detail"][data-robot-id="${robotId}"]`).waitFor();
}

/** The fleet table's row of one robot (rendered rows only: the table is virtualised). */
export const rowSelector = (robotId: string) => `[role="row"][data-robot-id="${robotId}"]`;
export const cellSelector = (robotId: string, column: string) => `${rowSelector(robotId)} [data-col="${column}"]`;

/** Text of the first element matching `selector`, or null when there is none (for expect.poll). */
export async function textOf(page: Page, selector: string): Promise<string | null> {
  const element = await page.$(selector);
  return element ? ((await element.textContent()) ?? '').trim() : null;
}

export interface AxeViolation {
  readonly id: string;
  readonly impact: string;
  readonly help: string;
  /** Up to three offending elements' selectors. */
  readonly targets: string[];
}

const AXE_SCRIPT = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
let axeSource: Promise<string> | undefined;

/**
 * Runs axe-core (WCAG 2.x A/AA and best practices) on the page as it is; returns the serious and critical violations.
 * axe is evaluated through the DevTools protocol, not added as a `<script>`: the dashboard's Content-Security-Policy
 * (`script-src 'self'`) rightly refuses inline scripts, and the page under test keeps its policy.
 */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  if (!(await page.evaluate('typeof window.axe === "object"'))) {
    axeSource ??= readFile(AXE_SCRIPT, 'utf8');
    await page.evaluate(await axeSource);
  }
  return (await page.evaluate(`
    window.axe.run(document, { resultTypes: ['violations'] }).then((results) =>
      results.violations
        .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
        .map((violation) => ({
          id: violation.id,
          impact: violation.impact,
          help: violation.help,
          targets: violation.nodes.slice(0, 3).map((node) => String(node.target)),
        })))
  `)) as AxeViolation[];
}

/** A full-page screenshot kept as a test artifact: `.reports/screenshots/<name>.png`. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const path = join(SCREENSHOT_DIR, `${name.replace(/[^A-Za-z0-9._-]+/g, '-')}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * In-page instrumentation (an init script, before the dashboard's own code): stamps with `performance.now()` when
 * each WebSocket message arrives, opens and closes, and when the link state element's `data-state` changes, in
 * `window.__heartbeat` = { opens, closes, messages: [at], linkStates: [{ state, at }] }. The messages are counted in
 * order of arrival, which is the order the server sent them on that connection.
 */
export const LINK_PROBE = `
(() => {
  const probe = { opens: [], closes: [], messages: [], linkStates: [] };
  window.__heartbeat = probe;
  const Native = window.WebSocket;
  class ProbedWebSocket extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('open', () => probe.opens.push(performance.now()));
      this.addEventListener('close', () => probe.closes.push(performance.now()));
      this.addEventListener('message', () => probe.messages.push(performance.now()));
    }
  }
  window.WebSocket = ProbedWebSocket;
  let last = null;
  const look = () => {
    const element = document.querySelector('[data-testid="link-state"]');
    const state = element ? element.getAttribute('data-state') : null;
    if (state !== last) {
      last = state;
      probe.linkStates.push({ state, at: performance.now() });
    }
  };
  new MutationObserver(look).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'] });
})();
`;

export interface LinkProbe {
  readonly opens: number[];
  readonly closes: number[];
  readonly messages: number[];
  readonly linkStates: { state: string | null; at: number }[];
}

export async function linkProbe(page: Page): Promise<LinkProbe> {
  return (await page.evaluate('window.__heartbeat')) as LinkProbe;
}

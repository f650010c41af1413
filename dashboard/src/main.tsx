import { StrictMode } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { App } from './App.js';
import { createApiClient } from './api/client.js';
import { apiBaseOf, checkDashboardConfig, CONFIG_PATH } from './api/dashboard-config.js';
import { SignInError, signIn, type AuthEnvironment } from './auth/session.js';
import type { DashboardConfig } from './contracts.js';
import { browserLiveEnvironment } from './live/browser.js';
import { createFleetStore } from './live/fleet-store.js';

/**
 * The page's start, in order: read `/config.json` (checked by hand: a broken one is named field by field), sign in
 * (OAuth code + PKCE; the first visit leaves for the issuer here), then the API client and the live store, then the
 * App. Each failure is a plain screen that says what happened and what to do.
 */

/** A 401 this soon after signing in is a setup problem (audience, issuer), not an expiry: say so instead of looping. */
const SIGN_IN_LOOP_GUARD_MS = 15_000;

const container = document.getElementById('root');
if (!container) throw new Error('index.html has no #root element');
const root = createRoot(container);

void start(root).catch((error: unknown) => {
  showProblem(root, 'The dashboard could not start', messageOf(error), 'Reload the page. If it keeps failing, tell the platform team what it says.');
});

async function start(root: Root): Promise<void> {
  const config = await loadConfig(root);
  if (config === null) return;

  const authEnv: AuthEnvironment = {
    location: window.location,
    history: window.history,
    storage: window.sessionStorage,
    crypto: window.crypto,
    fetch: (url, init) => window.fetch(url, init),
    now: () => Date.now(),
  };
  let outcome;
  try {
    outcome = await signIn(config.auth, authEnv);
  } catch (error) {
    const message = messageOf(error);
    showProblem(root, 'Sign-in failed', message, error instanceof SignInError ? null : 'Reload the page to sign in again.', '/');
    return;
  }
  if (outcome.kind === 'redirecting') return;
  const session = outcome.session;

  let unauthorizedHandled = false;
  const api = createApiClient({
    baseUrl: apiBaseOf(config, window.location.origin),
    idToken: () => session.idToken(),
    fetch: (url, init) => window.fetch(url, init),
    newKey: () => window.crypto.randomUUID(),
    onUnauthorized: () => {
      if (unauthorizedHandled) return;
      unauthorizedHandled = true;
      if (Date.now() - session.signedInAt < SIGN_IN_LOOP_GUARD_MS) {
        store.close();
        showProblem(
          root,
          'The API refused the sign-in',
          `The API answered 401 to a token the issuer gave ${Math.round((Date.now() - session.signedInAt) / 1000)} s ago.`,
          "Check that the API's JWT authorizer accepts this app client (audience) and issuer, then reload.",
          '/',
        );
        return;
      }
      void session.reauthenticate();
    },
  });
  const store = createFleetStore({ api, webSocketUrl: config.webSocketUrl, idToken: () => session.idToken(), env: browserLiveEnvironment });
  store.start();

  root.render(
    <StrictMode>
      <App config={config} session={session} api={api} store={store} />
    </StrictMode>,
  );
}

async function loadConfig(root: Root): Promise<DashboardConfig | null> {
  const retry = 'Reload the page. If it keeps failing, the deployment is incomplete: tell the platform team.';
  let response: Response;
  try {
    response = await fetch(CONFIG_PATH, { cache: 'no-store', headers: { accept: 'application/json' } });
  } catch (error) {
    showProblem(root, 'The dashboard could not read its configuration', `${CONFIG_PATH} did not answer: ${messageOf(error)}.`, retry);
    return null;
  }
  if (!response.ok) {
    showProblem(root, 'The dashboard could not read its configuration', `${CONFIG_PATH} answered ${response.status}.`, retry);
    return null;
  }
  let json: unknown;
  try {
    json = await response.json();
  } catch {
    showProblem(root, 'The dashboard configuration is not JSON', `${CONFIG_PATH} is not valid JSON.`, retry);
    return null;
  }
  const checked = checkDashboardConfig(json);
  if (!checked.ok) {
    showProblem(
      root,
      'The dashboard configuration is broken',
      `${CONFIG_PATH}: ${checked.problems.join('; ')}.`,
      'It is written at deployment (CDK) or by the local cloud; fix it there and reload.',
    );
    return null;
  }
  return checked.config;
}

function showProblem(root: Root, title: string, detail: string, todo: string | null, signInAgainHref?: string): void {
  root.render(
    <main style={{ maxWidth: '40rem', margin: '4rem auto', padding: '0 1rem', fontFamily: 'system-ui, sans-serif', lineHeight: 1.5 }}>
      <h1 style={{ fontSize: '1.4rem' }}>{title}</h1>
      <p role="alert">{detail}</p>
      {todo !== null && <p>{todo}</p>}
      {signInAgainHref !== undefined && (
        <p>
          <a href={signInAgainHref}>Sign in again</a>
        </p>
      )}
    </main>,
  );
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

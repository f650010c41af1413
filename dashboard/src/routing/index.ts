import { useCallback, useMemo, useSyncExternalStore } from 'react';
import type { Route } from '../contracts.js';
import { parseRoute, urlOf } from './route-url.js';

export { parseRoute, urlOf } from './route-url.js';

export type Navigate = (route: Route, options?: { readonly replace?: boolean }) => void;

/**
 * The page's route from `location`, kept current on back/forward (popstate) and on `navigate`. Navigating to the URL
 * the page is already on does nothing (no history entry, no render).
 */
const listeners = new Set<() => void>();

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  window.addEventListener('popstate', listener);
  return () => {
    listeners.delete(listener);
    window.removeEventListener('popstate', listener);
  };
}

const currentUrl = () => `${window.location.pathname}${window.location.search}`;

export const navigate: Navigate = (route, options = {}) => {
  const url = urlOf(route);
  if (url === currentUrl()) return;
  if (options.replace) window.history.replaceState(null, '', url);
  else window.history.pushState(null, '', url);
  for (const listener of [...listeners]) listener();
};

export function useRoute(): readonly [Route, Navigate] {
  const url = useSyncExternalStore(subscribe, currentUrl, currentUrl);
  const route = useMemo(() => {
    const query = url.indexOf('?');
    return query < 0 ? parseRoute(url, '') : parseRoute(url.slice(0, query), url.slice(query));
  }, [url]);
  const go = useCallback<Navigate>((target, options) => navigate(target, options), []);
  return [route, go] as const;
}

import type { FleetFilters, Route, SortDirection } from '../contracts.js';

/**
 * The URL of each view (the DOM contract): `/` the fleet, with its filters, sort and selection in the query string
 * (`?status=online&model=lekiwi&lifecycle=ready&alert=critical&teleop=yes&q=text&sort=column:asc&sel=id1,id2`),
 * `/alerts`, `/robots/<id>`, `/deployments`, `/deployments/<id>`. INVARIANTS: `parseRoute(urlOf(route))` gives the
 * route back (filters with empty values dropped, selection without repeats); a value a filter cannot take is ignored
 * rather than refused (a hand-edited or old link still opens the fleet); any other path is the fleet; the query is
 * written in one fixed order, with `:` and `,` left readable.
 */

const STATUSES = ['online', 'offline', 'stale'] as const;
const ALERTS = ['warning', 'critical', 'any'] as const;
const TELEOPS = ['yes', 'no'] as const;
const FILTER_ORDER = ['status', 'model', 'lifecycle', 'alert', 'teleop', 'q'] as const satisfies readonly (keyof FleetFilters)[];

export function parseRoute(pathname: string, search: string): Route {
  const path = pathname.length > 1 ? pathname.replace(/\/+$/, '') : pathname;
  if (path === '/alerts') return { view: 'alerts' };
  if (path === '/deployments') return { view: 'deployments' };
  const deployment = /^\/deployments\/([^/]+)$/.exec(path);
  if (deployment) {
    const deploymentId = safeDecode(deployment[1]!);
    if (deploymentId !== '') return { view: 'deployment', deploymentId };
  }
  const robot = /^\/robots\/([^/]+)$/.exec(path);
  if (robot) {
    const robotId = safeDecode(robot[1]!);
    if (robotId !== '') return { view: 'robot', robotId };
  }
  return parseFleet(new URLSearchParams(search));
}

function parseFleet(params: URLSearchParams): Route {
  const filters: { -readonly [K in keyof FleetFilters]: FleetFilters[K] } = {};
  const status = oneOf(params.get('status'), STATUSES);
  if (status) filters.status = status;
  const model = text(params.get('model'));
  if (model) filters.model = model;
  const lifecycle = text(params.get('lifecycle'));
  if (lifecycle) filters.lifecycle = lifecycle;
  const alert = oneOf(params.get('alert'), ALERTS);
  if (alert) filters.alert = alert;
  const teleop = oneOf(params.get('teleop'), TELEOPS);
  if (teleop) filters.teleop = teleop;
  const q = params.get('q');
  if (q !== null && q.trim() !== '') filters.q = q;
  return { view: 'fleet', filters, sort: parseSort(params.get('sort')), selection: parseSelection(params.get('sel')) };
}

function parseSort(value: string | null): { column: string; direction: SortDirection } | null {
  if (value === null) return null;
  const match = /^([^:]+):(asc|desc)$/.exec(value);
  return match ? { column: match[1]!, direction: match[2] as SortDirection } : null;
}

function parseSelection(value: string | null): string[] {
  if (value === null) return [];
  return [...new Set(value.split(',').filter((id) => id !== ''))];
}

export function urlOf(route: Route): string {
  switch (route.view) {
    case 'alerts':
      return '/alerts';
    case 'robot':
      return `/robots/${encodeURIComponent(route.robotId)}`;
    case 'deployments':
      return '/deployments';
    case 'deployment':
      return `/deployments/${encodeURIComponent(route.deploymentId)}`;
    case 'fleet': {
      const parts: string[] = [];
      for (const key of FILTER_ORDER) {
        const value = route.filters[key];
        if (value !== undefined && value !== '') parts.push(`${key}=${readable(value)}`);
      }
      if (route.sort) parts.push(`sort=${readable(route.sort.column)}:${route.sort.direction}`);
      const selection = [...new Set(route.selection)];
      if (selection.length > 0) parts.push(`sel=${selection.map(readable).join(',')}`);
      return parts.length > 0 ? `/?${parts.join('&')}` : '/';
    }
  }
}

function readable(value: string): string {
  return encodeURIComponent(value).replace(/%3A/gi, ':').replace(/%2C/gi, ',');
}

function oneOf<T extends string>(value: string | null, allowed: readonly T[]): T | undefined {
  return allowed.find((candidate) => candidate === value);
}

function text(value: string | null): string | undefined {
  return value !== null && value.trim() !== '' ? value : undefined;
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

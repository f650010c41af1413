/**
 * Route matching the way API Gateway HTTP APIs do it, for route keys like `GET /api/v2/robots/{id}`: `{name}` takes
 * one path segment, `{name+}` the rest of the path; a static segment beats a variable, a variable beats a greedy
 * one, and an exact method beats `ANY`. The handler uses it when the gateway hands it a catch-all route, and the
 * local gateway uses it to build the same events API Gateway would.
 */
export interface RouteMatch {
  readonly routeKey: string;
  readonly pathParameters: Readonly<Record<string, string>>;
}

export function matchRoute(routeKeys: readonly string[], method: string, path: string): RouteMatch | null {
  let best: { match: RouteMatch; score: number[] } | null = null;
  for (const routeKey of routeKeys) {
    const [routeMethod, template] = splitRouteKey(routeKey);
    if (routeMethod !== 'ANY' && routeMethod !== method.toUpperCase()) continue;
    const matched = matchPath(template, path);
    if (!matched) continue;
    const score = [...matched.score, routeMethod === 'ANY' ? 0 : 1];
    if (!best || compareScores(score, best.score) > 0) best = { match: { routeKey, pathParameters: matched.parameters }, score };
  }
  return best?.match ?? null;
}

/** The methods that have a route for this path (for a 405's Allow header). */
export function methodsForPath(routeKeys: readonly string[], path: string): string[] {
  return routeKeys.flatMap((routeKey) => {
    const [method, template] = splitRouteKey(routeKey);
    return matchPath(template, path) ? [method] : [];
  });
}

function splitRouteKey(routeKey: string): [method: string, template: string] {
  const space = routeKey.indexOf(' ');
  return space < 0 ? ['ANY', routeKey] : [routeKey.slice(0, space).toUpperCase(), routeKey.slice(space + 1)];
}

const STATIC = 3;
const VARIABLE = 2;
const GREEDY = 1;

function matchPath(template: string, path: string): { parameters: Record<string, string>; score: number[] } | null {
  const want = template.split('/').slice(1);
  const have = path.split('/').slice(1);
  const parameters: Record<string, string> = {};
  const score: number[] = [];
  for (let i = 0; i < want.length; i++) {
    const segment = want[i] as string;
    const greedy = /^\{(\w+)\+\}$/.exec(segment);
    if (greedy) {
      const rest = have.slice(i);
      if (rest.length === 0 || rest.join('') === '') return null;
      parameters[greedy[1] as string] = decode(rest.join('/'));
      score.push(GREEDY);
      return { parameters, score };
    }
    const value = have[i];
    if (value === undefined) return null;
    const variable = /^\{(\w+)\}$/.exec(segment);
    if (variable) {
      if (value === '') return null;
      parameters[variable[1] as string] = decode(value);
      score.push(VARIABLE);
    } else if (segment === value) {
      score.push(STATIC);
    } else {
      return null;
    }
  }
  return have.length === want.length ? { parameters, score } : null;
}

function compareScores(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const difference = (a[i] ?? 0) - (b[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

function decode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

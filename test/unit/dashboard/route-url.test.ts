import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Route } from '../../../dashboard/src/contracts.js';
import { parseRoute, urlOf } from '../../../dashboard/src/routing/route-url.js';

const parse = (url: string) => {
  const parsed = new URL(url, 'http://page.example');
  return parseRoute(parsed.pathname, parsed.search);
};

describe('routes and URLs', () => {
  it('reads the DOM contract’s URLs', () => {
    expect(parse('/?status=online&model=lekiwi&lifecycle=ready&alert=critical&teleop=yes&q=text&sort=column:asc&sel=id1,id2')).toEqual({
      view: 'fleet',
      filters: { status: 'online', model: 'lekiwi', lifecycle: 'ready', alert: 'critical', teleop: 'yes', q: 'text' },
      sort: { column: 'column', direction: 'asc' },
      selection: ['id1', 'id2'],
    });
    expect(parse('/')).toEqual({ view: 'fleet', filters: {}, sort: null, selection: [] });
    expect(parse('/alerts')).toEqual({ view: 'alerts' });
    expect(parse('/alerts/')).toEqual({ view: 'alerts' });
    expect(parse('/robots/lekiwi-LK0001')).toEqual({ view: 'robot', robotId: 'lekiwi-LK0001' });
    expect(parse('/deployments')).toEqual({ view: 'deployments' });
    expect(parse('/deployments/')).toEqual({ view: 'deployments' });
    expect(parse('/deployments/dep-01JE0000000000000000000000')).toEqual({ view: 'deployment', deploymentId: 'dep-01JE0000000000000000000000' });
    expect(urlOf({ view: 'deployments' })).toBe('/deployments');
    expect(urlOf({ view: 'deployment', deploymentId: 'dep-01JE0000000000000000000000' })).toBe('/deployments/dep-01JE0000000000000000000000');
  });

  it('writes them in one fixed order, with : and , readable', () => {
    const route: Route = {
      view: 'fleet',
      filters: { q: 'arm, left', teleop: 'no', status: 'stale' },
      sort: { column: 'cpuTemperature', direction: 'desc' },
      selection: ['lekiwi-LK0001', 'xle-XL0007'],
    };
    expect(urlOf(route)).toBe('/?status=stale&teleop=no&q=arm,%20left&sort=cpuTemperature:desc&sel=lekiwi-LK0001,xle-XL0007');
    expect(urlOf({ view: 'fleet', filters: {}, sort: null, selection: [] })).toBe('/');
    expect(urlOf({ view: 'alerts' })).toBe('/alerts');
    expect(urlOf({ view: 'robot', robotId: 'lekiwi-LK 1/2' })).toBe('/robots/lekiwi-LK%201%2F2');
    expect(parse(urlOf({ view: 'robot', robotId: 'lekiwi-LK 1/2' }))).toEqual({ view: 'robot', robotId: 'lekiwi-LK 1/2' });
  });

  it('ignores values a filter cannot take, and any other path is the fleet', () => {
    expect(parse('/?status=sleepy&alert=loud&teleop=maybe&sort=cpu&sel=,,a,a&q=%20')).toEqual({
      view: 'fleet',
      filters: {},
      sort: null,
      selection: ['a'],
    });
    expect(parse('/nowhere/at/all?status=online')).toMatchObject({ view: 'fleet', filters: { status: 'online' } });
    expect(parse('/robots/')).toMatchObject({ view: 'fleet' });
    expect(parse('/robots/%E0%A4%A')).toEqual({ view: 'robot', robotId: '%E0%A4%A' });
  });

  it('property: parse(urlOf(route)) is the route', () => {
    const text = fc.string({ minLength: 1, maxLength: 20 }).filter((value) => value.trim() !== '');
    const robotId = fc.stringMatching(/^(lekiwi|xle)-[A-Za-z0-9][A-Za-z0-9_-]{0,10}$/);
    const fleet = fc.record(
      {
        view: fc.constant('fleet' as const),
        filters: fc.record(
          {
            status: fc.constantFrom('online' as const, 'offline' as const, 'stale' as const),
            model: text,
            lifecycle: text,
            alert: fc.constantFrom('warning' as const, 'critical' as const, 'any' as const),
            teleop: fc.constantFrom('yes' as const, 'no' as const),
            q: text,
          },
          { requiredKeys: [] },
        ),
        sort: fc.option(fc.record({ column: fc.stringMatching(/^[A-Za-z][A-Za-z0-9]{0,15}$/), direction: fc.constantFrom('asc' as const, 'desc' as const) }), { nil: null }),
        selection: fc.uniqueArray(robotId, { maxLength: 5 }),
      },
      { requiredKeys: ['view', 'filters', 'sort', 'selection'] },
    );
    const route: fc.Arbitrary<Route> = fc.oneof(
      fleet,
      fc.constant({ view: 'alerts' as const }),
      robotId.map((id) => ({ view: 'robot' as const, robotId: id })),
      fc.constant({ view: 'deployments' as const }),
      fc.stringMatching(/^dep-[0-9A-HJKMNP-TV-Z]{26}$/).map((id) => ({ view: 'deployment' as const, deploymentId: id })),
    );
    fc.assert(
      fc.property(route, (value) => {
        expect(parse(urlOf(value))).toEqual(value);
      }),
    );
  });
});

import { getCoreRowModel, useReactTable, type ColumnDef, type ColumnFiltersState, type SortingState } from '@tanstack/react-table';
import { useVirtualizer } from '@tanstack/react-virtual';
import { lazy, Suspense, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { ApiClient, FleetFilters, FleetSnapshot, FleetStore, Permissions, Route } from '../contracts.js';
import { BulkDialog } from './BulkDialog.js';
import type { BulkKind } from './bulk.js';
import { useNow } from './clock.js';
import {
  compareValues,
  deriveRows,
  FLEET_COLUMNS,
  filterAndSort,
  FLEET_STATUSES,
  LIFECYCLE_OPTIONS,
  MODEL_OPTIONS,
  nextSort,
  sortValue,
  withFilter,
  type FleetColumn,
  type FleetRoute,
  type FleetRow,
  type RowCache,
} from './fleet-model.js';
import { FleetGridRow, ROW_HEIGHT, type RowActions } from './FleetGridRow.js';
import { useKeys } from './keyboard.js';
import { deployTargetOf, describeFilter } from './deployment-model.js';


/** The deploy dialog loads when first opened (engineers only need it, and not on every visit). */
const DeployDialog = lazy(() => import('./DeployDialog.js').then((m) => ({ default: m.DeployDialog })));

const COLUMN_LABELS: Record<FleetColumn, string> = {
  robot: 'Robot',
  status: 'Status',
  lifecycle: 'Lifecycle',
  health: 'Health',
  teleoperation: 'Teleoperation',
  alerts: 'Alerts',
  cpuTemperature: 'CPU temp',
  cpu: 'CPU',
  memory: 'Memory',
  disk: 'Disk',
  version: 'Version',
  agentVersion: 'Agent',
  lerobotVersion: 'LeRobot',
  certificate: 'Certificate',
  lastSeen: 'Last seen',
};

/**
 * The table's columns for TanStack Table, which holds the column model and the sort and filter state (both controlled
 * by the URL). The rows themselves are filtered and sorted by fleet-model.ts (manualFiltering / manualSorting):
 * TanStack's row models build a set of closures per row on every data change, which at 10,000 robots and a changed
 * frame every 250 ms cost more than the frame; the pure version costs a few milliseconds and keeps row identity.
 */
const COLUMNS: ColumnDef<FleetRow>[] = FLEET_COLUMNS.map(
  (id): ColumnDef<FleetRow> => ({
    id,
    header: COLUMN_LABELS[id],
    accessorFn: (row) => sortValue(row, id),
    sortingFn: (a, b, columnId) =>
      compareValues(a.getValue<string | number | undefined>(columnId), b.getValue<string | number | undefined>(columnId)),
    sortUndefined: 'last',
    sortDescFirst: false,
    enableSorting: true,
    enableColumnFilter: ['robot', 'status', 'lifecycle', 'alerts', 'teleoperation'].includes(id),
  }),
);

function columnFiltersOf(filters: FleetFilters): ColumnFiltersState {
  const out: ColumnFiltersState = [];
  if (filters.q) out.push({ id: 'robot', value: filters.q });
  if (filters.status) out.push({ id: 'status', value: filters.status });
  if (filters.lifecycle) out.push({ id: 'lifecycle', value: filters.lifecycle });
  if (filters.alert) out.push({ id: 'alerts', value: filters.alert });
  if (filters.teleop) out.push({ id: 'teleoperation', value: filters.teleop });
  return out;
}

const NO_ROWS: FleetRow[] = [];

export interface FleetViewProps {
  route: FleetRoute;
  navigate: (route: Route, options?: { replace?: boolean }) => void;
  snapshot: FleetSnapshot;
  api: ApiClient;
  store: FleetStore;
  permissions: Permissions;
}

/**
 * The fleet: every robot in one virtualized grid (only the visible rows and an overscan are in the DOM), filtered,
 * searched and sorted as the URL says, with bulk actions on the selection or, when nothing is selected, on every robot
 * that matches the filter.
 */
export function FleetView(props: FleetViewProps) {
  const { route, navigate, snapshot, permissions } = props;
  const now = useNow();
  const cacheRef = useRef<RowCache>(new Map());
  const rows = useMemo(() => deriveRows(snapshot.robots, now, cacheRef.current), [snapshot.robots, now]);

  const columnFilters = useMemo(() => columnFiltersOf(route.filters), [route.filters]);
  const sorting = useMemo<SortingState>(
    () => (route.sort ? [{ id: route.sort.column, desc: route.sort.direction === 'desc' }] : []),
    [route.sort],
  );

  const table = useReactTable({
    data: NO_ROWS,
    columns: COLUMNS,
    state: { columnFilters, sorting },
    getCoreRowModel: getCoreRowModel(),
    manualFiltering: true,
    manualSorting: true,
    enableMultiSort: false,
  });
  const visible = useMemo(() => filterAndSort(rows, route.filters, route.sort), [rows, route.filters, route.sort]);

  const selection = route.selection;
  const selected = useMemo(() => new Set(selection), [selection]);
  const [cursorId, setCursorId] = useState<string | null>(null);
  const cursorIndex = useMemo(() => (cursorId === null ? -1 : visible.findIndex((row) => row.id === cursorId)), [visible, cursorId]);

  const scrollerRef = useRef<HTMLDivElement>(null);
  const searchRef = useRef<HTMLInputElement>(null);
  const virtualizer = useVirtualizer({
    count: visible.length,
    getScrollElement: () => scrollerRef.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 12,
    getItemKey: (index) => visible[index]?.id ?? index,
  });

  // Stable callbacks for the memoized rows, reading the latest route through a ref.
  const routeRef = useRef(route);
  routeRef.current = route;
  const actions = useMemo<RowActions>(
    () => ({
      open: (robotId) => navigate({ view: 'robot', robotId }),
      toggle: (robotId) => {
        const current = routeRef.current;
        const next = current.selection.includes(robotId)
          ? current.selection.filter((id) => id !== robotId)
          : [...current.selection, robotId];
        navigate({ ...current, selection: next }, { replace: true });
      },
      focusRow: (robotId) => setCursorId(robotId),
    }),
    [navigate],
  );

  const moveCursor = useCallback(
    (delta: number) => {
      if (visible.length === 0) return;
      const from = cursorIndex < 0 ? (delta > 0 ? -1 : visible.length) : cursorIndex;
      const index = Math.min(visible.length - 1, Math.max(0, from + delta));
      setCursorId(visible[index]!.id);
      virtualizer.scrollToIndex(index, { align: 'auto' });
      // Keyboard focus follows the cursor into the grid, so Enter opens the row (not a button focused before).
      const grid = scrollerRef.current;
      if (grid && document.activeElement !== grid) grid.focus({ preventScroll: true });
    },
    [visible, cursorIndex, virtualizer],
  );

  const [bulk, setBulk] = useState<BulkKind | null>(null);
  const [deploying, setDeploying] = useState(false);

  useKeys(
    {
      '/': () => searchRef.current?.focus(),
      j: () => moveCursor(1),
      k: () => moveCursor(-1),
      ArrowDown: () => moveCursor(1),
      ArrowUp: () => moveCursor(-1),
      x: () => {
        if (cursorIndex >= 0) actions.toggle(visible[cursorIndex]!.id);
      },
      Enter: () => {
        if (cursorIndex >= 0) actions.open(visible[cursorIndex]!.id);
      },
      Escape: () => {
        const current = routeRef.current;
        if (current.selection.length > 0) navigate({ ...current, selection: [] }, { replace: true });
        else if (current.filters.q) navigate(withFilter(current, 'q', ''), { replace: true });
      },
    },
    bulk === null && !deploying,
  );

  // The search box shows what is typed at once; the URL (replace, not a history entry per key) follows.
  const [query, setQuery] = useState(route.filters.q ?? '');
  const lastSent = useRef(route.filters.q ?? '');
  useEffect(() => {
    const fromUrl = route.filters.q ?? '';
    if (fromUrl.trim() !== lastSent.current.trim()) {
      lastSent.current = fromUrl;
      setQuery(fromUrl);
    }
  }, [route.filters.q]);
  const onQuery = (value: string) => {
    setQuery(value);
    lastSent.current = value;
    navigate(withFilter(route, 'q', value), { replace: true });
  };

  const setFilter = <K extends keyof FleetFilters>(key: K, value: string) =>
    navigate(withFilter(route, key, value as FleetFilters[K] | ''));

  const targets = useMemo(() => (selection.length > 0 ? selection : visible.map((row) => row.id)), [selection, visible]);
  const targetText = selection.length > 0 ? `${selection.length} selected` : `all ${visible.length} shown`;
  const total = rows.length;
  // A deployment targets the selection, or the filter's model and lifecycle (the cloud resolves it when it starts).
  const deployTarget = useMemo(() => deployTargetOf(route), [route.selection, route.filters]);
  const deployText = selection.length > 0 ? `${selection.length} selected` : describeFilter(route.filters);
  const ignoredFilters = (['status', 'alert', 'teleop', 'q'] as const)
    .filter((key) => route.filters[key] !== undefined && route.filters[key] !== '')
    .map((key) => FILTER_NAMES[key]);

  return (
    <section className="fleet" aria-labelledby="fleet-title">
      <div className="toolbar">
        <h1 id="fleet-title" className="view-title">
          Fleet
        </h1>
        <label className="search">
          <span className="visually-hidden">Search robots</span>
          <input
            ref={searchRef}
            type="search"
            data-testid="search"
            placeholder="Search robots  ( / )"
            title="Robot id, model, operator address or failure reason"
            value={query}
            onChange={(event) => onQuery(event.target.value)}
            onKeyDown={(event) => {
              if (event.key === 'Escape') {
                event.preventDefault();
                if (query) onQuery('');
                else event.currentTarget.blur();
              }
              if (event.key === 'Enter' || event.key === 'ArrowDown') {
                event.preventDefault();
                event.currentTarget.blur();
                scrollerRef.current?.focus();
                if (cursorIndex < 0) moveCursor(1);
              }
            }}
          />
        </label>
        <FilterSelect name="status" label="Status" value={route.filters.status} options={FLEET_STATUSES} onChange={(v) => setFilter('status', v)} />
        <FilterSelect name="model" label="Model" value={route.filters.model} options={MODEL_OPTIONS} onChange={(v) => setFilter('model', v)} />
        <FilterSelect
          name="lifecycle"
          label="Lifecycle"
          value={route.filters.lifecycle}
          options={LIFECYCLE_OPTIONS}
          onChange={(v) => setFilter('lifecycle', v)}
        />
        <FilterSelect
          name="alert"
          label="Alerts"
          value={route.filters.alert}
          options={['critical', 'warning', 'any']}
          onChange={(v) => setFilter('alert', v)}
        />
        <FilterSelect
          name="teleop"
          label="Teleoperated"
          value={route.filters.teleop}
          options={['yes', 'no']}
          onChange={(v) => setFilter('teleop', v)}
        />
        <span className="row-count" data-testid="row-count" aria-live="polite">
          {visible.length} of {total} robots
        </span>
      </div>
      <div className="toolbar bulk-bar" role="toolbar" aria-label="Bulk actions">
        <span className="muted">
          {selection.length > 0 ? `${selection.length} selected` : 'Nothing selected: actions apply to every robot shown'}
        </span>
        {selection.length > 0 && (
          <button type="button" className="link-button" onClick={() => navigate({ ...route, selection: [] }, { replace: true })}>
            Clear selection
          </button>
        )}
        {permissions.reportNow && (
          <button type="button" data-action="bulk-report-now" disabled={targets.length === 0} onClick={() => setBulk('report-now')}>
            Report now ({targetText})
          </button>
        )}
        {permissions.markFailed && (
          <button type="button" className="danger" data-action="bulk-mark-failed" disabled={targets.length === 0} onClick={() => setBulk('mark-failed')}>
            Mark failed ({targetText})
          </button>
        )}
        {permissions.recover && (
          <button type="button" data-action="bulk-recover" disabled={targets.length === 0} onClick={() => setBulk('recover')}>
            Recover ({targetText})
          </button>
        )}
        {permissions.deploy && (
          <button type="button" className="primary" data-action="deploy" onClick={() => setDeploying(true)}>
            Deploy… ({deployText})
          </button>
        )}
      </div>
      {snapshot.error && (
        <p role="alert" className="error">
          Could not load the fleet: {snapshot.error}. Retrying…
        </p>
      )}
      <div
        ref={scrollerRef}
        className="grid"
        role="grid"
        aria-label="Robots"
        aria-rowcount={visible.length + 1}
        aria-colcount={FLEET_COLUMNS.length}
        aria-multiselectable="true"
        tabIndex={0}
      >
        <div role="rowgroup" className="grid-head">
          <div role="row" className="grid-row head" aria-rowindex={1}>
            {table.getFlatHeaders().map((header) => {
              const column = header.column.id as FleetColumn;
              const sort = header.column.getIsSorted();
              const filtered = header.column.getIsFiltered();
              return (
                <div
                  key={header.id}
                  role="columnheader"
                  data-col={column}
                  aria-sort={sort === 'asc' ? 'ascending' : sort === 'desc' ? 'descending' : 'none'}
                >
                  <button type="button" onClick={() => navigate({ ...route, sort: nextSort(route, column) })}>
                    {COLUMN_LABELS[column]}
                    {filtered && <span className="filter-mark" title="filtered"> ●</span>}
                    <span aria-hidden="true" className="sort-mark">
                      {sort === 'asc' ? ' ▲' : sort === 'desc' ? ' ▼' : ''}
                    </span>
                  </button>
                </div>
              );
            })}
          </div>
        </div>
        <div role="rowgroup" className="grid-body" style={{ height: virtualizer.getTotalSize() }}>
          {virtualizer.getVirtualItems().map((item) => {
            const row = visible[item.index];
            if (!row) return null;
            return (
              <FleetGridRow
                key={row.id}
                row={row}
                index={item.index}
                top={item.start}
                selected={selected.has(row.id)}
                cursor={row.id === cursorId}
                updatedAt={Math.round(snapshot.updatedAt.get(row.id) ?? 0)}
                actions={actions}
              />
            );
          })}
        </div>
        {snapshot.loaded && visible.length === 0 && (
          <p className="empty">{total === 0 ? 'No robots yet.' : 'No robot matches these filters.'}</p>
        )}
        {!snapshot.loaded && !snapshot.error && <p className="empty">Loading robots…</p>}
      </div>
      {deploying && (
        <Suspense fallback={null}>
          <DeployDialog
            target={deployTarget}
            ignoredFilters={ignoredFilters}
            robots={snapshot.robots}
            api={props.api}
            onClose={() => setDeploying(false)}
            onCreated={(deploymentId) => {
              setDeploying(false);
              navigate({ view: 'deployment', deploymentId });
            }}
          />
        </Suspense>
      )}
      {bulk && (
        <BulkDialog
          kind={bulk}
          robotIds={targets}
          api={props.api}
          store={props.store}
          onClose={() => setBulk(null)}
        />
      )}
    </section>
  );
}

const FILTER_NAMES = { status: 'status', alert: 'alerts', teleop: 'teleoperated', q: 'search' } as const;

function FilterSelect(props: {
  name: string;
  label: string;
  value: string | undefined;
  options: readonly string[];
  onChange: (value: string) => void;
}) {
  return (
    <label className="filter">
      <span>{props.label}</span>
      <select name={props.name} value={props.value ?? ''} onChange={(event) => props.onChange(event.target.value)}>
        <option value="">all</option>
        {props.options.map((option) => (
          <option key={option} value={option}>
            {option}
          </option>
        ))}
      </select>
    </label>
  );
}

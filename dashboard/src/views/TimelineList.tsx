import { memo, useCallback, useEffect, useRef, useSyncExternalStore } from 'react';
import type { EventView } from '../../../schemas/index.js';
import type { Timeline, TimelineSnapshot } from '../contracts.js';
import { useNow } from './clock.js';
import { eventLabel, summarizeEvent } from './event-summary.js';
import { formatTime } from './format.js';

/** A timeline's snapshot for React (methods called on the object: implementations may be classes). */
export function useTimeline(timeline: Timeline): TimelineSnapshot {
  const subscribe = useCallback((listener: () => void) => timeline.subscribe(listener), [timeline]);
  const getSnapshot = useCallback(() => timeline.getSnapshot(), [timeline]);
  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
}

/**
 * A robot's events, newest first, in its own scroll box: reaching the end (an IntersectionObserver on a sentinel)
 * loads the next older page while there is one; a button does the same for keyboards.
 */
export function TimelineList(props: { timeline: Timeline }) {
  const { timeline } = props;
  const snapshot = useTimeline(timeline);
  const now = useNow();
  const box = useRef<HTMLDivElement>(null);
  const sentinel = useRef<HTMLDivElement>(null);
  const state = useRef(snapshot);
  state.current = snapshot;

  useEffect(() => {
    const target = sentinel.current;
    if (!target) return;
    const observer = new IntersectionObserver(
      (entries) => {
        const current = state.current;
        if (entries.some((entry) => entry.isIntersecting) && current.hasOlder && !current.loadingOlder) void timeline.loadOlder();
      },
      { root: box.current, rootMargin: '200px' },
    );
    observer.observe(target);
    return () => observer.disconnect();
  }, [timeline]);

  // A page that does not fill the box leaves the sentinel in view: the observer will not fire again, so ask here.
  useEffect(() => {
    const target = sentinel.current;
    const root = box.current;
    if (!target || !root || !snapshot.hasOlder || snapshot.loadingOlder) return;
    if (target.offsetTop - root.scrollTop < root.clientHeight + 200) void timeline.loadOlder();
  }, [timeline, snapshot.events.length, snapshot.hasOlder, snapshot.loadingOlder]);

  return (
    <>
      {snapshot.error && (
        <p role="alert" className="error">
          Timeline: {snapshot.error}
        </p>
      )}
      <div ref={box} className="timeline-box" tabIndex={0} role="region" aria-label="Events, newest first">
        <ol className="timeline" data-testid="timeline">
          {snapshot.events.map((event) => (
            <TimelineEvent key={event.seq} event={event} now={Math.floor(now / 60_000) * 60_000} />
          ))}
        </ol>
        <div ref={sentinel} className="timeline-end">
          {snapshot.loadingOlder ? (
            <span className="muted">Loading older events…</span>
          ) : snapshot.hasOlder ? (
            <button type="button" className="link-button" onClick={() => void timeline.loadOlder()}>
              Load older events
            </button>
          ) : (
            <span className="muted">{snapshot.events.length === 0 ? 'No events yet.' : 'The beginning of this robot’s history.'}</span>
          )}
        </div>
      </div>
    </>
  );
}

const TimelineEvent = memo(function TimelineEvent(props: { event: EventView; now: number }) {
  const { event } = props;
  return (
    <li data-testid="timeline-event" data-seq={event.seq} data-type={event.type} className={`event type-${event.type}`}>
      <span className="event-seq mono">#{event.seq}</span>
      <time dateTime={event.at} title={`recorded ${event.recordedAt}`}>
        {formatTime(event.at, props.now)}
      </time>
      <span className="event-type" title={event.type}>
        {eventLabel(event.type)}
      </span>
      <span className="event-summary">{summarizeEvent(event)}</span>
    </li>
  );
});

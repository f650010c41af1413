import { useEffect, useRef } from 'react';

/**
 * Single-key shortcuts on the page. Invariants: a key is ignored while the user types in a field (input, textarea,
 * select, contenteditable) or holds Ctrl/Meta/Alt, and while a modal dialog is open (the dialog owns its keys);
 * Enter on a link or a button is left to it.
 */
export type KeyMap = Readonly<Record<string, (event: KeyboardEvent) => void>>;

export function isTypingTarget(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable) return true;
  const tag = target.tagName;
  if (tag === 'TEXTAREA' || tag === 'SELECT') return true;
  if (tag !== 'INPUT') return false;
  const type = (target as HTMLInputElement).type;
  return !['checkbox', 'radio', 'button', 'submit', 'reset'].includes(type);
}

export function dialogOpen(): boolean {
  return document.querySelector('[role="dialog"][aria-modal="true"]') !== null;
}

export function useKeys(keys: KeyMap, enabled = true): void {
  const ref = useRef(keys);
  ref.current = keys;
  useEffect(() => {
    if (!enabled) return;
    const onKeyDown = (event: KeyboardEvent) => {
      if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
      if (isTypingTarget(event.target) || dialogOpen()) return;
      // Enter on a link or button activates it, as it should: shortcuts take Enter only from elsewhere.
      if (event.key === 'Enter' && event.target instanceof Element && event.target.closest('a[href], button, [role="button"], summary')) return;
      const handler = ref.current[event.key];
      if (!handler) return;
      event.preventDefault();
      handler(event);
    };
    window.addEventListener('keydown', onKeyDown);
    return () => window.removeEventListener('keydown', onKeyDown);
  }, [enabled]);
}

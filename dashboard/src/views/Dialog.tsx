import { useEffect, useId, useRef, type KeyboardEvent as ReactKeyboardEvent, type ReactNode } from 'react';

/**
 * A modal dialog: role=dialog with aria-modal, labelled by its title; focus moves into it when it opens (the element
 * marked `data-autofocus`, else the first focusable), Tab stays inside it, Escape calls onClose, and focus goes back
 * to where it was when it closes.
 */
export function Dialog(props: {
  title: string;
  label?: string;
  onClose: () => void;
  children: ReactNode;
  wide?: boolean;
  /** Change it to move focus into the dialog again (its content was replaced). */
  focusKey?: string;
}) {
  const { onClose } = props;
  const ref = useRef<HTMLDivElement>(null);
  const titleId = useId();
  const closeRef = useRef(onClose);
  closeRef.current = onClose;

  useEffect(() => {
    const previous = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    return () => {
      if (previous && previous.isConnected) previous.focus();
    };
  }, []);

  // Focus moves in on open and again when the content changes (focusKey), so it is never left on the page behind.
  useEffect(() => {
    const root = ref.current;
    if (!root) return;
    const first = root.querySelector<HTMLElement>('[data-autofocus]') ?? focusables(root)[0] ?? root;
    first.focus();
  }, [props.focusKey]);

  const onKeyDown = (event: ReactKeyboardEvent<HTMLDivElement>) => {
    if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();
      event.nativeEvent.stopImmediatePropagation();
      closeRef.current();
      return;
    }
    if (event.key !== 'Tab' || !ref.current) return;
    const items = focusables(ref.current);
    if (items.length === 0) return;
    const first = items[0]!;
    const last = items[items.length - 1]!;
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  };

  return (
    <div className="backdrop">
      <div
        ref={ref}
        role="dialog"
        aria-modal="true"
        {...(props.label ? { 'aria-label': props.label } : { 'aria-labelledby': titleId })}
        className={props.wide ? 'dialog wide' : 'dialog'}
        tabIndex={-1}
        onKeyDown={onKeyDown}
      >
        <h2 id={titleId} className="dialog-title">
          {props.title}
        </h2>
        {props.children}
      </div>
    </div>
  );
}

function focusables(root: HTMLElement): HTMLElement[] {
  return Array.from(
    root.querySelectorAll<HTMLElement>('a[href], button:not([disabled]), textarea:not([disabled]), input:not([disabled]), select:not([disabled]), [tabindex]:not([tabindex="-1"])'),
  );
}

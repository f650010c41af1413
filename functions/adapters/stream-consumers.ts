import { streamBroadcaster } from '../app/live/broadcast.js';
import { streamProjector } from '../app/project-stream.js';
import { parseStreamRecord } from './event-log-items.js';

/** The event log stream's two consumers, reading records with the event log's own codec. */
export const projectStream = streamProjector(parseStreamRecord);
export const broadcastStreamBatch = streamBroadcaster(parseStreamRecord);

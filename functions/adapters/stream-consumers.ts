import { streamBroadcaster } from '../app/live/broadcast.js';
import { streamCoalescer } from '../app/live/coalesce.js';
import { streamDeploymentChangeBroadcaster } from '../app/live/deployment-changes.js';
import { streamProjector } from '../app/project-stream.js';
import { streamCertificateRetirer } from '../app/retire-certificates.js';
import { readDeploymentImage } from './deployment-stream-items.js';
import { parseStreamRecord } from './event-log-items.js';

/** The event log stream's consumers, reading records with the event log's own codec. */
export const projectStream = streamProjector(parseStreamRecord);
export const broadcastStreamBatch = streamBroadcaster(parseStreamRecord);
export const coalesceStreamBatch = streamCoalescer(parseStreamRecord);
export const retireCertificatesInStreamBatch = streamCertificateRetirer(parseStreamRecord);
/** The deployments table's stream consumer (DeploymentChanged), reading images as the deployment store wrote them. */
export const broadcastDeploymentChanges = streamDeploymentChangeBroadcaster(readDeploymentImage);

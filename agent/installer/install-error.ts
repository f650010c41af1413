import type { InstallFailureReason } from '../../schemas/deployments.js';

/** An install failure with the reason the robot reports (UpdateFailed.reason, the job's statusDetails.reason). */
export class InstallError extends Error {
  override readonly name = 'InstallError';
  constructor(
    readonly reason: InstallFailureReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

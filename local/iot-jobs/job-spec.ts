import { JOB_ID_PATTERN, JobsControlError, type JobSpec } from '../../functions/app/deployments/jobs-control.js';

/**
 * CreateJob's input checks, as the IoT control plane makes them (API_CreateJob and its config types): what AWS would
 * refuse with an InvalidRequestException is refused here with the field named, so a spec that passes locally does not
 * fail in AWS on a limit.
 *
 * INVARIANTS
 * - pure: `validateJobSpec` reads only the spec; the thing names' existence is the caller's check (a registry read);
 * - the first problem found is thrown as a JobsControlError('InvalidRequestException') naming the field and the limit.
 */

/** A job document is at most 32 KB (32,768 bytes of JSON). */
export const MAX_JOB_DOCUMENT_BYTES = 32_768;
/** Thing names: 1–128 of letters, digits, `:`, `_`, `-`. */
const THING_NAME_PATTERN = /^[a-zA-Z0-9:_-]{1,128}$/;
const FAILURE_TYPES_ABORT = ['FAILED', 'REJECTED', 'TIMED_OUT', 'ALL'] as const;
const FAILURE_TYPES_RETRY = ['FAILED', 'TIMED_OUT', 'ALL'] as const;

function invalid(message: string): never {
  throw new JobsControlError('InvalidRequestException', message);
}

function checkInteger(field: string, value: unknown, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    invalid(`${field} must be an integer from ${min} to ${max} (got ${JSON.stringify(value)})`);
  }
}

function checkDecimals(field: string, value: number, digits: number): void {
  const scaled = value * 10 ** digits;
  if (Math.abs(scaled - Math.round(scaled)) > 1e-9) invalid(`${field} supports at most ${digits} digit(s) after the decimal point (got ${value})`);
}

export function validateJobSpec(spec: JobSpec): void {
  if (typeof spec.jobId !== 'string' || !JOB_ID_PATTERN.test(spec.jobId)) {
    invalid(`jobId ${JSON.stringify(spec.jobId)} must be 1–64 letters, digits, - or _`);
  }
  if (!Array.isArray(spec.thingNames) || spec.thingNames.length === 0) invalid('thingNames must name at least one thing');
  const seen = new Set<string>();
  for (const thingName of spec.thingNames) {
    if (typeof thingName !== 'string' || !THING_NAME_PATTERN.test(thingName)) invalid(`thingNames: ${JSON.stringify(thingName)} is not a thing name`);
    if (seen.has(thingName)) invalid(`thingNames: ${thingName} is given twice`);
    seen.add(thingName);
  }
  if (spec.document === null || typeof spec.document !== 'object' || Array.isArray(spec.document)) invalid('document must be a JSON object');
  const documentBytes = Buffer.byteLength(JSON.stringify(spec.document));
  if (documentBytes > MAX_JOB_DOCUMENT_BYTES) invalid(`document is ${documentBytes} bytes of JSON; a job document is at most ${MAX_JOB_DOCUMENT_BYTES}`);
  if (spec.description !== undefined && (typeof spec.description !== 'string' || spec.description.length > 2028)) {
    invalid('description must be a string of at most 2028 characters');
  }
  const { rollout, abort, timeout, retry } = spec;
  if (rollout) {
    if (rollout.maximumPerMinute !== undefined) checkInteger('rollout.maximumPerMinute', rollout.maximumPerMinute, 1, 1000);
    const exponential = rollout.exponentialRate;
    if (exponential) {
      checkInteger('rollout.exponentialRate.baseRatePerMinute', exponential.baseRatePerMinute, 1, 1000);
      const factor = exponential.incrementFactor;
      if (typeof factor !== 'number' || !(factor >= 1.1 && factor <= 5)) {
        invalid(`rollout.exponentialRate.incrementFactor must be from 1.1 to 5 (got ${JSON.stringify(factor)})`);
      }
      checkDecimals('rollout.exponentialRate.incrementFactor', factor, 1);
      const { numberOfNotifiedThings, numberOfSucceededThings } = exponential.rateIncreaseCriteria ?? {};
      if ((numberOfNotifiedThings === undefined) === (numberOfSucceededThings === undefined)) {
        invalid('rollout.exponentialRate.rateIncreaseCriteria must set exactly one of numberOfNotifiedThings and numberOfSucceededThings');
      }
      if (numberOfNotifiedThings !== undefined) checkInteger('rollout.exponentialRate.rateIncreaseCriteria.numberOfNotifiedThings', numberOfNotifiedThings, 1, 1_000_000);
      if (numberOfSucceededThings !== undefined) checkInteger('rollout.exponentialRate.rateIncreaseCriteria.numberOfSucceededThings', numberOfSucceededThings, 1, 1_000_000);
    }
  }
  if (abort) {
    if (!Array.isArray(abort.criteriaList) || abort.criteriaList.length === 0) invalid('abort.criteriaList must hold at least one criterion');
    abort.criteriaList.forEach((criterion, index) => {
      const at = `abort.criteriaList[${index}]`;
      if (!FAILURE_TYPES_ABORT.includes(criterion.failureType)) invalid(`${at}.failureType must be one of ${FAILURE_TYPES_ABORT.join(', ')}`);
      if (criterion.action !== 'CANCEL') invalid(`${at}.action must be CANCEL`);
      const threshold = criterion.thresholdPercentage;
      if (typeof threshold !== 'number' || !(threshold >= 0 && threshold <= 100)) invalid(`${at}.thresholdPercentage must be from 0 to 100 (got ${JSON.stringify(threshold)})`);
      checkDecimals(`${at}.thresholdPercentage`, threshold, 2);
      checkInteger(`${at}.minNumberOfExecutedThings`, criterion.minNumberOfExecutedThings, 1, 2_147_483_647);
    });
  }
  if (timeout) checkInteger('timeout.inProgressTimeoutInMinutes', timeout.inProgressTimeoutInMinutes, 1, 10_080);
  if (retry) {
    if (!Array.isArray(retry.criteriaList) || retry.criteriaList.length === 0 || retry.criteriaList.length > 2) {
      invalid('retry.criteriaList must hold one or two criteria');
    }
    const types = new Set<string>();
    retry.criteriaList.forEach((criterion, index) => {
      const at = `retry.criteriaList[${index}]`;
      if (!FAILURE_TYPES_RETRY.includes(criterion.failureType)) invalid(`${at}.failureType must be one of ${FAILURE_TYPES_RETRY.join(', ')}`);
      if (types.has(criterion.failureType)) invalid(`${at}.failureType ${criterion.failureType} is given twice`);
      types.add(criterion.failureType);
      checkInteger(`${at}.numberOfRetries`, criterion.numberOfRetries, 0, 10);
    });
  }
}

import { z } from 'zod';

/** A missing or malformed environment variable: the cold start fails with a message naming each one. */
export class ConfigurationError extends Error {
  override readonly name = 'ConfigurationError';
}

/**
 * Parses the environment once, at cold start. Lambda reports the thrown error on init, so a deploy with a missing
 * variable fails loudly on the first invocation instead of half-working.
 */
export function loadEnv<S extends z.ZodType<object>>(schema: S, source: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const parsed = schema.safeParse(source);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(env)'}: ${issue.message}`);
  throw new ConfigurationError(`Invalid environment: ${problems.join('; ')}`);
}

const boolean = z
  .enum(['true', 'false', '1', '0'])
  .transform((value) => value === 'true' || value === '1');

/**
 * Where PostgreSQL is: either a URL (local cloud, tests) or the RDS Proxy endpoint reached with IAM auth (AWS), where
 * the password is a short-lived token signed from the Lambda's own role.
 */
export const DatabaseEnv = z.union([
  z.object({ DATABASE_URL: z.string().url() }),
  z.object({
    DB_HOST: z.string().min(1),
    DB_PORT: z.coerce.number().int().positive().default(5432),
    DB_NAME: z.string().min(1),
    DB_USER: z.string().min(1),
    DB_IAM_AUTH: boolean.default(true),
    AWS_REGION: z.string().min(1),
  }),
]);
export type DatabaseEnv = z.infer<typeof DatabaseEnv>;

export const EventLogEnv = z.object({ EVENT_LOG_TABLE: z.string().min(1) });
export const ConnectionsEnv = z.object({ CONNECTIONS_TABLE: z.string().min(1) });
/** The factory's allow-list of serials (issue 11), read and claimed by the pre-provisioning hook. */
export const FactoryEnv = z.object({ FACTORY_TABLE: z.string().min(1) });

/**
 * Where commands to robots are published: the account's IoT data endpoint (`xxxx-ats.iot.<region>.amazonaws.com`,
 * from IoT's DescribeEndpoint), as a host name or an https URL. Absent, the SDK's own resolution applies
 * (`AWS_ENDPOINT_URL_IOT_DATA_PLANE`, which the local cloud sets to its stand-in).
 */
export const IotDataEnv = z.object({
  IOT_DATA_ENDPOINT: z
    .string()
    .regex(/^(https:\/\/)?[A-Za-z0-9.-]+(:\d+)?\/?$/, 'must be a host name such as xxxx-ats.iot.eu-west-1.amazonaws.com')
    .transform((value) => (value.startsWith('https://') ? value : `https://${value}`))
    .optional(),
});

/**
 * Where the stream projector sets aside the records it cannot parse: a JSON-lines file (the local cloud, under its
 * state dir). Unset (AWS), they go to its log, counted in the alarmed `StreamRecordsSetAside` metric.
 */
/** Where the projector sets aside what it cannot parse: an SQS queue in AWS, a JSON-lines file locally. */
export const DeadLettersEnv = z.object({
  DEAD_LETTER_QUEUE_URL: z.url().optional(),
  DEAD_LETTER_FILE: z.string().min(1).optional(),
});

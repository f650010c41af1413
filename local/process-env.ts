/**
 * Imported first by every entry point that runs the local cloud in its own process (`npm start`, the benchmarks), so
 * these defaults are set before any module reads them:
 * - the AWS SDK warns on every start that its releases from 2027 need Node 22 (Lambda runs 24; this machine has 20).
 *   The README says so once; the terminal need not.
 * - the handlers' Powertools logger, metrics and tracer are made when functions/platform/observability.ts is first
 *   imported (a benchmark imports adapters before it starts the cloud): warnings and errors only, no EMF metric
 *   lines, no tracing. LOG_LEVEL=INFO (or DEBUG) shows the handlers' logs again.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
process.env.POWERTOOLS_LOG_LEVEL ??= process.env.LOG_LEVEL ?? 'WARN';
process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
process.env.POWERTOOLS_TRACE_ENABLED ??= 'false';

/**
 * The release CLI (issue 12): a folder of the robot's software into a content-addressed release.
 *
 *   npm run release -- --dir <folder> --version <v> [--model lekiwi|xle] [--bucket <s3 bucket> [--region <r>]]
 *
 * Where the release goes: `--bucket` (S3, credentials and region from the environment or --region); else the local
 * cloud's artifact store, `<LOCAL_STATE_DIR>/artifacts` (default .local), running or not (it is files; the running
 * local cloud serves them to its robots).
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { RobotModel } from '../schemas/robot-id.js';
import { MissingObjectsError, ReleaseConflictError, type ArtifactStore } from '../functions/app/deployments/artifact-store.js';
import { ReleaseManifestError } from '../functions/app/deployments/release-manifest.js';
import { S3ArtifactStore } from '../functions/adapters/s3-artifact-store.js';
import { LocalArtifactStore } from '../local/artifact-store.js';
import { statePaths } from '../local/local-state.js';
import { releaseTree, ReleaseTreeError, type ReleaseProgress } from './release/release-tree.js';

const USAGE = `Usage: npm run release -- --dir <folder> --version <version> [--model <${RobotModel.options.join('|')}>] [--bucket <name> [--region <region>]]

Turns a folder (the robot's software) into a release: every regular file hashed (SHA-256), stored once by hash, and
a manifest of paths, hashes, sizes and modes (0755 if executable, else 0644) stored as the release <version>.
Only the objects the store does not have are uploaded. Releasing the same folder again under the same version
changes nothing; other content under an existing version is refused (give it a new version).

  --dir <folder>      the tree to release (regular files and folders only: a symlink or special file is refused)
  --version <v>       letters, digits and . _ + - (e.g. 1.4.0, 2026.12.01-rc1), at most 64
  --model <model>     the robot model it is for (absent: any model)
  --bucket <name>     the stage's artifact bucket in S3 (credentials from the environment)
  --region <region>   the bucket's region (default: AWS_REGION)

Without --bucket: the local cloud's artifact store in LOCAL_STATE_DIR (default .local)/artifacts.`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        dir: { type: 'string' },
        version: { type: 'string' },
        model: { type: 'string' },
        bucket: { type: 'string' },
        region: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!values.dir) throw new UsageError('Give the folder to release: --dir <folder>.');
  if (!values.version) throw new UsageError('Give the release a version: --version <version>.');
  let model: RobotModel | undefined;
  if (values.model !== undefined) {
    const parsed = RobotModel.safeParse(values.model);
    if (!parsed.success) throw new UsageError(`--model must be one of ${RobotModel.options.join(', ')}.`);
    model = parsed.data;
  }
  if (values.region !== undefined && values.bucket === undefined) throw new UsageError('--region goes with --bucket.');

  let store: ArtifactStore;
  let where: string;
  if (values.bucket !== undefined) {
    store = new S3ArtifactStore({ client: new S3Client(values.region ? { region: values.region } : {}), bucket: values.bucket });
    where = `s3://${values.bucket}`;
  } else {
    const root = statePaths(resolve(process.env.LOCAL_STATE_DIR || '.local')).artifacts;
    store = await LocalArtifactStore.open({ root });
    where = `the local artifact store ${root}`;
  }
  const dir = resolve(values.dir);
  process.stderr.write(`Releasing ${dir} as ${values.version} to ${where}\n`);
  const started = Date.now();
  const result = await releaseTree({ dir, version: values.version, model, store, onProgress: progressPrinter() });
  const { summary } = result;
  const lines = [
    result.created ? `Release ${summary.version} stored.` : `Release ${summary.version} is already stored with the same files: nothing changed.`,
    `  model          ${summary.model ?? 'any'}`,
    `  files          ${summary.fileCount}`,
    `  bytes          ${summary.totalBytes} (${formatBytes(summary.totalBytes)})`,
    `  new objects    ${result.newObjects}`,
    `  bytes uploaded ${result.bytesUploaded} (${formatBytes(result.bytesUploaded)})`,
    `  manifest       ${summary.manifestSha256}`,
    `  created at     ${summary.createdAt}`,
    `  took           ${((Date.now() - started) / 1000).toFixed(1)} s`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

/** Progress on stderr once a phase has run a second, at most once a second (a small tree prints nothing). */
function progressPrinter(): (progress: ReleaseProgress) => void {
  let phase: string | undefined;
  let phaseStarted = 0;
  let printed = 0;
  return (progress) => {
    const now = Date.now();
    if (progress.phase !== phase) {
      phase = progress.phase;
      phaseStarted = now;
      printed = 0;
    }
    const last = progress.files === progress.totalFiles;
    if (now - phaseStarted < 1_000 || (!last && now - printed < 1_000) || (last && printed === 0)) return;
    printed = now;
    process.stderr.write(
      `  ${progress.phase}: ${progress.files}/${progress.totalFiles} files, ${formatBytes(progress.bytes)} of ${formatBytes(progress.totalBytes)}\n`,
    );
  };
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) {
    process.stderr.write(`${error.message}\n\n${USAGE}\n`);
    process.exitCode = 2;
  } else if (error instanceof ReleaseTreeError || error instanceof ReleaseManifestError || error instanceof ReleaseConflictError || error instanceof MissingObjectsError) {
    process.stderr.write(`Nothing released: ${error.message}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`release: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  }
}

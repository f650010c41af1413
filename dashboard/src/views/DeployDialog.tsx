import { useMemo, useState } from 'react';
import type { RobotView } from '../../../schemas/index.js';
import type { ApiClient } from '../contracts.js';
import { describeFailure } from './bulk.js';
import {
  buildCreateRequest,
  defaultDeployForm,
  describeFilter,
  deploySummary,
  STRATEGY_FIELDS,
  targetEstimate,
  type DeployForm,
  type DeployTarget,
  type StrategyKey,
} from './deployment-model.js';
import { Dialog } from './Dialog.js';

export function describeDeployTarget(target: DeployTarget): string {
  if (target.kind === 'selection') {
    const n = target.robotIds.length;
    return `the ${n} selected ${n === 1 ? 'robot' : 'robots'}`;
  }
  return describeFilter(target);
}

/**
 * "Deploy" from the fleet: a release version, the targets (the selection as robot ids, or the filter's model and
 * lifecycle; fixed when the dialog opens), the strategy with the API's defaults, a summary line of what will happen,
 * then POST /api/v2/deployments and, on success, the new deployment's page. The API's refusal is shown as it came.
 */
export function DeployDialog(props: {
  target: DeployTarget;
  /** Filters of the fleet view a deployment target cannot carry (status, alerts, teleoperation, search). */
  ignoredFilters: readonly string[];
  robots: ReadonlyMap<string, RobotView>;
  api: ApiClient;
  onClose: () => void;
  onCreated: (deploymentId: string) => void;
}) {
  const { api } = props;
  const [target] = useState(props.target);
  const [form, setForm] = useState<DeployForm>(defaultDeployForm);
  const [advanced, setAdvanced] = useState(false);
  const [touched, setTouched] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const built = useMemo(() => buildCreateRequest(form, target), [form, target]);
  const estimate = useMemo(() => targetEstimate(props.robots.values(), target), [props.robots, target]);
  const targetText = describeDeployTarget(target);
  const problems = built.ok ? {} : built.problems;
  const show = (key: keyof typeof problems) => (touched || key !== 'release' ? problems[key] : undefined);

  const setStrategy = (key: StrategyKey, value: string) => setForm((current) => ({ ...current, strategy: { ...current.strategy, [key]: value } }));

  const submit = async () => {
    setTouched(true);
    if (!built.ok || busy) return;
    setBusy(true);
    setError(null);
    try {
      const created = await api.createDeployment(built.request);
      props.onCreated(created.deploymentId);
    } catch (failure) {
      setError(describeFailure(failure));
      setBusy(false);
    }
  };

  return (
    <Dialog title="Deploy a release" onClose={props.onClose} wide>
      <form
        noValidate
        data-testid="deploy-form"
        onSubmit={(event) => {
          event.preventDefault();
          void submit();
        }}
      >
        <label className="field">
          <span>Release version</span>
          <input
            name="release"
            className="mono"
            autoComplete="off"
            placeholder="1.4.0"
            value={form.release}
            data-autofocus
            aria-invalid={show('release') ? true : undefined}
            aria-describedby={show('release') ? 'deploy-release-problem' : undefined}
            onChange={(event) => setForm((current) => ({ ...current, release: event.target.value }))}
            onBlur={() => form.release !== '' && setTouched(true)}
          />
        </label>
        {show('release') && (
          <p id="deploy-release-problem" className="field-problem">
            {show('release')}
          </p>
        )}
        <p data-testid="deploy-targets">
          Targets: <strong>{targetText}</strong>
          {target.kind === 'filter' && ' (the filter is resolved by the cloud when the deployment starts)'}.
          {estimate.unknown > 0 && <span className="warn-text"> {estimate.unknown} of them are not in the fleet list.</span>}
        </p>
        {target.kind === 'filter' && props.ignoredFilters.length > 0 && (
          <p className="warn-text small">
            The fleet’s {props.ignoredFilters.join(', ')} {props.ignoredFilters.length === 1 ? 'filter is' : 'filters are'} not part of a
            deployment’s targets (only model and lifecycle are): select the robots instead to deploy to exactly those shown.
          </p>
        )}
        {problems.targets && <p className="field-problem">{problems.targets}</p>}
        <fieldset className="strategy">
          <legend>Strategy</legend>
          <div className="strategy-grid">
            {STRATEGY_FIELDS.filter((field) => advanced || !ADVANCED.has(field.key)).map((field) => (
              <label key={field.key} className="field">
                <span>
                  {field.label}
                  {field.unit && <span className="muted"> ({field.unit})</span>}
                </span>
                <input
                  name={field.key}
                  inputMode={field.integer ? 'numeric' : 'decimal'}
                  value={form.strategy[field.key]}
                  aria-invalid={problems[field.key] ? true : undefined}
                  onChange={(event) => setStrategy(field.key, event.target.value)}
                />
                {problems[field.key] && <span className="field-problem">{problems[field.key]}</span>}
              </label>
            ))}
          </div>
          <button type="button" className="link-button" aria-expanded={advanced} onClick={() => setAdvanced((value) => !value)}>
            {advanced ? 'Fewer settings' : 'More settings (batch growth, health check)'}
          </button>
        </fieldset>
        <label className="field">
          <span>Note (optional, kept in the deployment’s record)</span>
          <textarea name="note" rows={2} maxLength={500} value={form.note} onChange={(event) => setForm((current) => ({ ...current, note: event.target.value }))} />
        </label>
        <p className="deploy-summary" data-testid="deploy-summary" role="status">
          {built.ok ? deploySummary(built.request, estimate, targetText) : 'Fill in the release version and a valid strategy to see the plan.'}
        </p>
        {error && (
          <p role="alert" className="error" data-testid="deploy-error">
            {error}
          </p>
        )}
        <div className="dialog-actions">
          <button type="button" data-action="cancel" onClick={props.onClose}>
            Cancel
          </button>
          {/* Not `disabled` while busy: a disabled button drops the focus (Esc and Tab would leave the dialog). */}
          <button type="submit" data-action="confirm" className="primary" aria-disabled={busy} disabled={touched && !built.ok}>
            {busy ? 'Starting…' : built.ok ? `Deploy ${built.request.release}` : 'Deploy'}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

const ADVANCED: ReadonlySet<StrategyKey> = new Set(['batchGrowthFactor', 'healthCheckTimeoutSeconds']);

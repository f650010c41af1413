import { describe, expect, it } from 'vitest';
import { AgentConfigError, parseAgentConfig } from '../../../agent/config.js';

const base = {
  endpoint: 'localhost',
  thingName: 'lekiwi-LK0001',
  certificateFile: 'cert.pem',
  privateKeyFile: 'key.pem',
  stateDir: 'state',
};

describe('agent.json install section', () => {
  it('defaults: root <stateDir>/software, no restart commands, no extra checks, keep 3, nothing injected', () => {
    const config = parseAgentConfig(base, '/robot/agent.json');
    expect(config.install).toEqual({
      root: '/robot/state/software',
      restart: [],
      restartTimeoutSeconds: 120,
      healthChecks: [],
      keepVersions: 3,
      injectFailure: undefined,
    });
  });

  it('reads restart commands, TCP and command checks, a relative root and an injected failure', () => {
    const config = parseAgentConfig(
      {
        ...base,
        install: {
          root: 'sw',
          restart: ['systemctl restart lekiwi-host'],
          healthChecks: [{ tcpPort: 5555 }, { command: 'test -f ready' }],
          keepVersions: 2,
          injectFailure: { step: 'switched' },
        },
      },
      '/robot/agent.json',
    );
    expect(config.install).toMatchObject({
      root: '/robot/sw',
      restart: ['systemctl restart lekiwi-host'],
      healthChecks: [{ tcpPort: 5555 }, { command: 'test -f ready' }],
      keepVersions: 2,
      injectFailure: { reason: 'INJECTED', step: 'switched' },
    });
  });

  it.each([
    [{ keepVersions: 1 }, 'install.keepVersions'],
    [{ healthChecks: [{ tcpPort: 70_000 }] }, 'install.healthChecks.0.tcpPort'],
    [{ injectFailure: { step: 'exploded' } }, 'install.injectFailure.step'],
    [{ restart: [''] }, 'install.restart.0'],
    [{ rootDir: 'x' }, 'install'],
  ])('refuses %j naming %s', (install, field) => {
    let error: unknown;
    try {
      parseAgentConfig({ ...base, install }, '/robot/agent.json');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AgentConfigError);
    expect((error as AgentConfigError).problems.map((p) => p.field)).toContain(field);
  });
});

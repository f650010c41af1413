import { z } from 'zod';

/**
 * `/config.json`, beside the dashboard's bundle: what one build of the dashboard needs to know about the stage it is
 * served from. Written at deploy time by CDK (infra) and served by the local cloud (`npm start`); the dashboard reads
 * it before anything else, so one bundle serves every stage. Sign-in is the OAuth 2.0 authorization code flow with
 * PKCE against Cognito's hosted UI in AWS and the local issuer's look-alike locally (the same paths: `/oauth2/authorize`,
 * `/oauth2/token`, `/logout`). No token is ever in this file or in any HTML.
 */
export const DashboardConfig = z
  .object({
    /** The stage's name, shown in the page's header ("local", "prod", …). */
    stage: z.string().min(1).max(64),
    /** Where `/api/v2` is: a path on the page's own origin (`/api/v2`) or an absolute https URL. */
    apiBaseUrl: z.string().min(1),
    /** The WebSocket API's URL (`ws://` locally, `wss://` in AWS); the token goes in `?token=`. */
    webSocketUrl: z.string().regex(/^wss?:\/\//, 'must be a ws:// or wss:// URL'),
    auth: z
      .object({
        authorizeUrl: z.url(),
        tokenUrl: z.url(),
        /** Cognito's `/logout` (the page adds `client_id` and `logout_uri`). */
        logoutUrl: z.url(),
        clientId: z.string().min(1),
        scopes: z.array(z.string().min(1)).min(1),
      })
      .strict(),
  })
  .strict();
export type DashboardConfig = z.infer<typeof DashboardConfig>;

/** Where the dashboard reads its configuration, relative to its own origin. */
export const DASHBOARD_CONFIG_PATH = '/config.json';
/** The dashboard's client-side routes; a host serves `index.html` for each (SPA fallback). */
export const DASHBOARD_ROUTES = ['/', '/alerts', '/robots/:id'] as const;

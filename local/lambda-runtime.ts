import type { Context } from 'aws-lambda';
import { lambdaContext } from './lambda-context.js';

/**
 * The local Lambda service: loads a handler module by its entry path, as Lambda loads the bundle CDK deployed, and
 * invokes it with a Lambda context. A module is loaded once and then stays warm, like a Lambda container; its
 * environment must be in `process.env` before the first load, because handlers parse it at import (cold start).
 */
export type FunctionName =
  | 'robot-ingest'
  | 'stream-projector'
  | 'stream-broadcaster'
  | 'stream-coalescer'
  | 'stream-deployment-changes'
  | 'http-api'
  | 'ws-authorizer'
  | 'ws-connect'
  | 'ws-disconnect'
  | 'ws-subscribe'
  | 'ws-unsubscribe'
  | 'ws-default'
  | 'teleoperation-expiry';

type Handler = (event: unknown, context: Context) => Promise<unknown>;

export type LocalFunction<Event = unknown, Result = unknown> = (event: Event) => Promise<Result>;

const loaded = new Map<FunctionName, Promise<Handler>>();

export function loadFunction<Event = unknown, Result = unknown>(name: FunctionName): Promise<LocalFunction<Event, Result>> {
  let module = loaded.get(name);
  if (!module) {
    const entry = new URL(`../functions/handlers/${name}.js`, import.meta.url).href;
    module = import(entry).then((exports: { handler?: Handler }) => {
      if (typeof exports.handler !== 'function') throw new Error(`functions/handlers/${name} exports no handler`);
      return exports.handler;
    });
    loaded.set(name, module);
  }
  return module.then((handler) => (event: Event) => handler(event, lambdaContext(`heartbeat-local-${name}`)) as Promise<Result>);
}

export * from './robot-id.js';
export * from './lifecycle.js';
export * from './device.js';
export * from './telemetry.js';
export * from './topics.js';
export * from './events.js';
export * from './api.js';
export * from './tables.js';

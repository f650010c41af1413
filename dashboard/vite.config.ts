import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/**
 * The dashboard's build: `npm run dashboard:build` (= `vite build --config dashboard/vite.config.ts`) writes
 * `dashboard/dist/` (index.html, hashed assets, source maps), which the local cloud serves and CDK uploads. One bundle
 * serves every stage: what differs per stage is read at run time from `/config.json`.
 *
 * `vite --config dashboard/vite.config.ts` serves it for development; `/api`, `/config.json` and `/oauth2` are passed
 * to the local cloud (LOCAL_CLOUD_URL, default http://localhost:3000).
 */
const root = fileURLToPath(new URL('.', import.meta.url));
const localCloud = process.env.LOCAL_CLOUD_URL ?? 'http://localhost:3000';

export default defineConfig({
  root,
  base: '/',
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL('./dist', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
  },
  server: {
    proxy: {
      '/api': localCloud,
      '/config.json': localCloud,
      '/oauth2': localCloud,
      '/logout': localCloud,
    },
  },
});

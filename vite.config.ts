// The web UI (ui/), built by `npm run build` into dist/ui and served by the server at / and /ui/.
import { defineConfig } from "vite";

export default defineConfig({
  root: "ui",
  base: "/ui/",
  // Nothing fetched at run time: every asset is in the bundle or next to it.
  build: { outDir: "../dist/ui", emptyOutDir: true, target: "es2022", sourcemap: false, reportCompressedSize: true },
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
});

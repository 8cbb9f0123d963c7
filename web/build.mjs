// Builds the reference IDE page into dist/: one bundled script, one stylesheet, index.html;
// and the operator page (operator.html, its script and stylesheet with uPlot's).
// No inline scripts or styles in the HTML, so the server's Content-Security-Policy can forbid them.
import * as esbuild from 'esbuild'
import { copyFile, mkdir, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = dirname(fileURLToPath(import.meta.url))
const dist = join(root, 'dist')
const watch = process.argv.includes('--watch')

await rm(dist, { recursive: true, force: true })
await mkdir(dist, { recursive: true })
await copyFile(join(root, 'src', 'index.html'), join(dist, 'index.html'))
await copyFile(join(root, 'src', 'operator.html'), join(dist, 'operator.html'))

const options = {
  entryPoints: {
    app: join(root, 'src', 'main.js'),
    style: join(root, 'src', 'style.css'),
    operator: join(root, 'src', 'operator.js'),
    'operator-style': join(root, 'src', 'operator.css')
  },
  bundle: true,
  format: 'esm',
  target: 'es2022',
  outdir: dist,
  minify: !watch,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'warning'
}

if (watch) {
  const ctx = await esbuild.context(options)
  await ctx.watch()
  console.log('watching src/ -> dist/')
} else {
  await esbuild.build(options)
}

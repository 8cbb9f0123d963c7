// Stock @hocuspocus/server, in memory; with REDIS_URL set, the @hocuspocus/extension-redis fan-out.
//   PORT=1234 [REDIS_URL=redis://127.0.0.1:6379] node peers/hocuspocus.mjs
import { Server } from '@hocuspocus/server'
import { Redis } from '@hocuspocus/extension-redis'

const port = Number(process.env.PORT || 1234)
const extensions = []
if (process.env.REDIS_URL) {
  const url = new URL(process.env.REDIS_URL)
  extensions.push(new Redis({ host: url.hostname, port: Number(url.port), prefix: process.env.REDIS_PREFIX || 'hocuspocus' }))
}
const server = new Server({ port, address: '127.0.0.1', quiet: true, extensions })
await server.listen()
console.log(`hocuspocus listening on ${port} (redis: ${Boolean(process.env.REDIS_URL)})`)

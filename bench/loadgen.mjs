// Load generator for the document-sync benchmark: real Yjs clients against one target.
//
//   node loadgen.mjs SPEC.json
//
// SPEC: { scenario: "edit"|"idle"|"simul"|"history"|"storm", target: {protocol, urls, params}, docs: [...],
//         ...scenario parameters }. Progress is JSON lines on stdout; the orchestrator (run.py)
// samples the server's CPU and RSS when it reads {"event":"measure_start"} and
// {"event":"measure_end"}; the last line is {"event":"result", ...}. Every phase has a deadline.
import fs from 'node:fs'
import { PerformanceObserver, performance } from 'node:perf_hooks'
import * as Y from 'yjs'
import { connect, now } from './lib/clients.mjs'

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const target = spec.target

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function percentile (sorted, p) {
  if (sorted.length === 0) return null
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[idx]
}

function summarize (values) {
  const sorted = Float64Array.from(values).sort()
  const sum = values.reduce((a, b) => a + b, 0)
  return {
    count: values.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1] : null,
    mean: values.length ? sum / values.length : null
  }
}

// The load generator's own garbage-collection pauses, as [start, end] on the `now()` clock. A
// delivery whose send..receive interval overlaps one waited for the load generator, not only
// for the server: the tail of edit->peer latency is reported with and without those.
function watchGcPauses () {
  const pauses = []
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const start = performance.timeOrigin + entry.startTime
      pauses.push([start, start + entry.duration])
    }
  })
  observer.observe({ entryTypes: ['gc'] })
  return { pauses, stop: () => observer.disconnect() }
}

// Latencies of the deliveries ([sentAt, receivedAt] pairs) that overlap no pause.
function outsidePauses (deliveries, pauses) {
  const sorted = pauses.slice().sort((a, b) => a[0] - b[0])
  const ends = [] // running maximum of pause ends, for a binary search on starts
  let maxEnd = -Infinity
  for (const [, end] of sorted) { maxEnd = Math.max(maxEnd, end); ends.push(maxEnd) }
  const out = []
  for (const [sent, received] of deliveries) {
    // the last pause starting before `received`: an overlap iff some pause up to it ends after `sent`
    let lo = 0
    let hi = sorted.length
    while (lo < hi) { const mid = (lo + hi) >> 1; if (sorted[mid][0] < received) lo = mid + 1; else hi = mid }
    if (lo === 0 || ends[lo - 1] <= sent) out.push(received - sent)
  }
  return out
}

function cpuSeconds () {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

async function withDeadline (promise, ms) {
  let timer
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), ms) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

// Opens clients in batches so thousands of handshakes do not overflow the listen backlog. The first
// client of each document opens (and syncs) before the others: the load scenarios measure steady
// state, not simultaneous joins (scenario "simul" does that, and one peer fails it).
async function openClients (plan, batch, perBatchTimeoutMs, totalBudgetMs = 120000) {
  const giveUpAt = now() + totalBudgetMs
  const seen = new Set()
  const first = []
  const rest = []
  for (const item of plan) {
    if (seen.has(item.doc)) rest.push(item)
    else { seen.add(item.doc); first.push(item) }
  }
  const clients = []
  for (const phase of [first, rest]) {
    for (let i = 0; i < phase.length; i += batch) {
      const group = phase.slice(i, i + batch).map((item) => {
        const client = connect(target, item.doc, item.server)
        client.order = item.order
        return client
      })
      clients.push(...group)
      const left = Math.max(100, Math.min(perBatchTimeoutMs, giveUpAt - now()))
      await withDeadline(Promise.all(group.map((c) => c.synced)), left)
    }
  }
  return clients.sort((a, b) => a.order - b.order)
}

const MARK = /<(\d+\.\d+)\|(\d+)>/g

// D docs x C clients x R edits/s: edit->peer latency from timestamps embedded in the text.
async function scenarioEdit () {
  const { clientsPerDoc, rate, warmupS, durationS } = spec
  const plan = []
  spec.docs.forEach((doc, d) => {
    for (let c = 0; c < clientsPerDoc; c++) plan.push({ doc, server: d + c, order: plan.length })
  })
  const t0 = now()
  const clients = await openClients(plan, 100, 20000)
  const syncedCount = clients.filter((c) => c.isSynced()).length
  emit({ event: 'connected', clients: clients.length, synced: syncedCount, ms: now() - t0 })

  let measuring = false
  let measureStart = Infinity
  const latCross = []
  const latSame = []
  const deliveries = [] // [sentAt, receivedAt] of every delivery measured
  let delivered = 0 // one edit arriving at one peer (what "delivered update" means below)
  let updateEvents = 0 // Yjs update events applied from the network (servers may merge edits)
  let sent = 0
  // Markers are read from the received update itself (not from a Y.Text delta, which walks the
  // whole text on every event and would make the load generator the bottleneck).
  for (const client of clients) {
    client.doc.on('update', (update, origin) => {
      if (origin === null || origin === undefined || !measuring) return
      updateEvents += 1
      const t = now()
      for (const struct of Y.decodeUpdate(update).structs) {
        const str = struct.content && struct.content.str
        if (typeof str !== 'string') continue
        for (const m of str.matchAll(MARK)) {
          const ts = Number(m[1])
          if (ts < measureStart) continue
          const lat = t - ts
          delivered += 1
          deliveries.push([ts, t])
          if (Number(m[2]) === client.serverIndex % target.urls.length) latSame.push(lat)
          else latCross.push(lat)
        }
      }
    })
  }
  const periodMs = 1000 / rate
  const timers = clients.map((client) => {
    const start = setTimeout(() => {
      timers.push(setInterval(() => {
        const text = client.text
        const mark = `<${now().toFixed(3)}|${client.serverIndex % target.urls.length}>`
        text.insert(text.length, mark)
        if (measuring) sent += 1
      }, periodMs))
    }, Math.random() * periodMs)
    return start
  })
  await sleep(warmupS * 1000)
  const gc = watchGcPauses()
  const closesBefore = clients.reduce((a, c) => a + c.stats.closes, 0)
  const cpu0 = cpuSeconds()
  measureStart = now()
  measuring = true
  emit({ event: 'measure_start' })
  await sleep(durationS * 1000)
  measuring = false
  gc.stop()
  const elapsed = (now() - measureStart) / 1000
  const gcInWindow = gc.pauses.filter(([start]) => start >= measureStart)
  emit({ event: 'measure_end' })
  const cpu1 = cpuSeconds()
  for (const t of timers) { clearTimeout(t); clearInterval(t) }
  await sleep(300)
  // convergence check: every client of a doc holds the same text
  let diverged = 0
  for (let d = 0; d < spec.docs.length; d++) {
    const texts = clients.slice(d * clientsPerDoc, (d + 1) * clientsPerDoc).map((c) => c.text.toString())
    if (texts.some((t) => t !== texts[0])) diverged += 1
  }
  const closes = clients.reduce((a, c) => a + c.stats.closes, 0) - closesBefore
  const closeCodes = [...new Set(clients.flatMap((c) => c.stats.closeCodes))]
  const deflate = clients.filter((c) => c.counter.deflate).length
  for (const c of clients) c.destroy()
  emit({
    event: 'result',
    close_codes: closeCodes,
    clients: clients.length,
    synced: syncedCount,
    seconds: elapsed,
    edits_sent: sent,
    edits_per_s: sent / elapsed,
    delivered,
    delivered_per_s: delivered / elapsed,
    update_events: updateEvents,
    expected_deliveries: sent * (clientsPerDoc - 1),
    latency_ms: summarize(deliveries.map(([sentAt, receivedAt]) => receivedAt - sentAt)),
    latency_same_ms: summarize(latSame),
    latency_cross_ms: summarize(latCross),
    latency_outside_loadgen_gc_ms: summarize(outsidePauses(deliveries, gc.pauses)),
    loadgen_gc: {
      pauses: gcInWindow.length,
      total_ms: gcInWindow.reduce((a, [start, end]) => a + end - start, 0),
      max_ms: gcInWindow.reduce((a, [start, end]) => Math.max(a, end - start), 0)
    },
    diverged_docs_after_300ms: diverged,
    closes_during_measure: closes,
    deflate_negotiated: deflate,
    loadgen_cpu_fraction: (cpu1 - cpu0) / elapsed
  })
}

// N idle connections over M documents (each doc holds one line of text first).
// N clients over the documents in turn, opened in batches (openClients); "baseline" before and
// "connected" after, where the orchestrator samples the server.
async function openRoundRobin (connections) {
  const plan = []
  for (let i = 0; i < connections; i++) plan.push({ doc: spec.docs[i % spec.docs.length], server: 0, order: i })
  emit({ event: 'baseline' })
  const t0 = now()
  const clients = await openClients(plan, 250, 30000)
  const ms = now() - t0
  const synced = clients.filter((c) => c.isSynced()).length
  emit({ event: 'connected', clients: clients.length, synced, ms })
  return { clients, synced, t0, ms }
}

async function scenarioIdle () {
  const { connections, idleS } = spec
  const { clients, synced, t0 } = await openRoundRobin(connections)
  // one small edit per document so every room holds state
  const seen = new Set()
  for (const c of clients) {
    if (seen.has(c.provider.roomname ?? c.provider.configuration?.name)) continue
    seen.add(c.provider.roomname ?? c.provider.configuration?.name)
    c.text.insert(0, 'hello idle world\n')
  }
  await sleep(2000)
  const closesBefore = clients.reduce((a, c) => a + c.stats.closes, 0)
  emit({ event: 'measure_start' })
  const t1 = now()
  await sleep(idleS * 1000)
  emit({ event: 'measure_end' })
  const elapsed = (now() - t1) / 1000
  const stillSynced = clients.filter((c) => c.isSynced()).length
  const closes = clients.reduce((a, c) => a + c.stats.closes, 0) - closesBefore
  const deflate = clients.filter((c) => c.counter.deflate).length
  for (const c of clients) c.destroy()
  emit({
    event: 'result',
    clients: clients.length,
    synced,
    still_synced: stillSynced,
    seconds: elapsed,
    connect_ms: now() - t0,
    closes_during_idle: closes,
    deflate_negotiated: deflate
  })
}

// 5 clients open the same new document in the same millisecond; how many sync within 2 s.
async function scenarioSimul () {
  const { clientsPerRound, windowMs } = spec
  const rounds = []
  for (const doc of spec.docs) {
    const t0 = now()
    const clients = []
    for (let i = 0; i < clientsPerRound; i++) clients.push(connect(target, doc, i))
    const times = await Promise.all(clients.map((c) => withDeadline(c.synced, windowMs)))
    const synced = times.filter((t) => t !== 'timeout').map((t) => t - t0)
    rounds.push({ synced: synced.length, ms: synced.sort((a, b) => a - b) })
    for (const c of clients) c.destroy()
    await sleep(200)
  }
  emit({
    event: 'result',
    rounds: rounds.length,
    clients_per_round: clientsPerRound,
    synced_per_round: rounds.map((r) => r.synced),
    all_synced_rounds: rounds.filter((r) => r.synced === clientsPerRound).length,
    sync_ms: summarize(rounds.flatMap((r) => r.ms))
  })
}

// The orchestrator's answer to {"event":"restart"}: one JSON line on stdin once the restarted
// server is ready (the storm is timed from when that line arrives).
function nextStdinLine () {
  return new Promise((resolve) => {
    let buffered = ''
    const onData = (chunk) => {
      buffered += chunk
      const nl = buffered.indexOf('\n')
      if (nl < 0) return
      process.stdin.off('data', onData)
      process.stdin.pause()
      resolve(JSON.parse(buffered.slice(0, nl)))
    }
    process.stdin.setEncoding('utf8')
    process.stdin.on('data', onData)
    process.stdin.resume()
  })
}

// N clients over M documents open (batches, as in "idle": the "open" figure), each document gets
// a line of text, then the orchestrator restarts the server (SIGTERM, start again on the same
// port) and every client reconnects by itself with y-websocket's own backoff (no jitter). Timed
// from the restarted server being ready until every client is synced again; afterwards a fresh
// client per document checks that the server holds the full text.
async function scenarioStorm () {
  const { connections, resyncTimeoutS } = spec
  const { clients, synced, ms: openMs } = await openRoundRobin(connections)
  // One line per document, written by its first client; wait until every client holds it.
  const expected = new Map()
  const writers = new Set()
  for (const c of clients) {
    const name = c.provider.roomname
    if (writers.has(name)) continue
    writers.add(name)
    const line = `storm ${name} ${'x'.repeat(64)}\n`
    c.text.insert(0, line)
    expected.set(name, line)
  }
  const holdsText = (c) => c.text.toString() === expected.get(c.provider.roomname)
  const settleUntil = now() + 20000
  while (clients.some((c) => !holdsText(c)) && now() < settleUntil) await sleep(100)
  const textBefore = clients.filter(holdsText).length
  await sleep(1000) // the server's update log is flushed before it is stopped
  // Every (re)connection from here on: closes with their codes, failed attempts, resyncs.
  const closeCodes = {} // every close after the stop, by code
  const closesAfterReady = {} // closes once the restarted server was ready: refusals, failures
  let errors = 0
  let stopAt = Infinity
  let readyAt = Infinity
  let errorsAfterReady = 0
  const resyncedAt = new Array(clients.length).fill(null)
  // When each client's current attempt began: an attempt begun while the server was down
  // fails with 1006 even if that is reported after the ready line arrived.
  const attemptAt = new Array(clients.length).fill(-Infinity)
  clients.forEach((c, i) => {
    c.provider.on('status', ({ status }) => { if (status === 'connecting') attemptAt[i] = now() })
    c.provider.on('connection-close', (event) => {
      if (event === null) return // closed locally (destroy), not by the server or the network
      const code = String(event?.code ?? 'none')
      closeCodes[code] = (closeCodes[code] || 0) + 1
      if (attemptAt[i] >= readyAt) closesAfterReady[code] = (closesAfterReady[code] || 0) + 1
    })
    c.provider.on('connection-error', () => {
      errors += 1
      if (attemptAt[i] >= readyAt) errorsAfterReady += 1
    })
    c.provider.on('sync', (state) => { if (state && resyncedAt[i] === null && now() >= stopAt) resyncedAt[i] = now() })
  })
  stopAt = now()
  emit({ event: 'restart' })
  const answer = await nextStdinLine()
  readyAt = now()
  if (answer.error) {
    for (const c of clients) c.destroy()
    emit({ event: 'result', error: `restart failed: ${answer.error}`, open_ms: openMs })
    return
  }
  // The old server syncs no one once stopped: a resync seen before the ready line arrived was
  // with the new server (ready between two polls of the orchestrator) and counts as 0 ms.
  const giveUp = readyAt + resyncTimeoutS * 1000
  const allBack = () => resyncedAt.every((t, i) => t !== null && clients[i].provider.synced && holdsText(clients[i]))
  while (!allBack() && now() < giveUp) await sleep(5)
  const endAt = now()
  emit({ event: 'measure_end' })
  await sleep(500) // the orchestrator reads the server's counters before the probes below
  const done = resyncedAt.filter((t) => t !== null)
  const lastMs = done.length ? Math.max(0, Math.max(...done) - readyAt) : null
  // What the server holds: a fresh client per document reads its text.
  let serverTextOk = 0
  for (let i = 0; i < spec.docs.length; i += 100) {
    const probes = spec.docs.slice(i, i + 100).map((doc) => connect(target, doc, 0))
    await withDeadline(Promise.all(probes.map((p) => p.synced)), 20000)
    for (const p of probes) {
      if (p.isSynced() && p.text.toString() === expected.get(p.provider.roomname)) serverTextOk += 1
      p.destroy()
    }
  }
  const refused = Object.values(closesAfterReady).reduce((a, n) => a + n, 0)
  for (const c of clients) c.destroy()
  emit({
    event: 'result',
    clients: clients.length,
    synced,
    open_ms: openMs,
    text_before_restart: textBefore,
    restart: answer,
    resynced: done.length,
    resync_all_ms: done.length === clients.length ? lastMs : null,
    resync_last_ms: lastMs,
    resync_ms: summarize(done.map((t) => Math.max(0, t - readyAt))),
    timed_out: endAt >= giveUp,
    stop_to_all_resynced_ms: done.length ? Math.max(...done) - stopAt : null,
    close_codes: closeCodes,
    close_codes_after_ready: closesAfterReady,
    refused,
    connect_errors: errors,
    connect_errors_after_ready: errorsAfterReady,
    docs: spec.docs.length,
    server_text_ok: serverTextOk
  })
}

// Seeded typing trace: mostly inserts at a moving cursor, some deletes and jumps.
function rng (seed) {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6D2B79F5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// A document with N edits of history, then fresh clients sync it (time and bytes, median).
async function scenarioHistory () {
  const { edits, fresh, ingestTimeoutS } = spec
  const doc = spec.docs[0]
  const writer = connect(target, doc, 0)
  await withDeadline(writer.synced, 10000)
  const watcher = connect(target, doc, 0)
  if (await withDeadline(Promise.all([writer.synced, watcher.synced]), 10000) === 'timeout') {
    emit({ event: 'result', error: 'writer/watcher did not sync' })
    return
  }
  let resolveEnd
  const ended = new Promise((resolve) => { resolveEnd = resolve })
  // The end marker is looked for in each received update (O(update)), never in the whole text.
  watcher.doc.on('update', (update) => {
    for (const struct of Y.decodeUpdate(update).structs) {
      if (struct.content && typeof struct.content.str === 'string' && struct.content.str.includes('<END>')) resolveEnd(now())
    }
  })
  const rand = rng(42)
  const text = writer.text
  const alphabet = 'abcdefghijklmnopqrstuvwxyz  \n'
  let cursor = 0
  const t0 = now()
  for (let i = 0; i < edits; i++) {
    const r = rand()
    if (r < 0.1 && cursor > 0) {
      text.delete(cursor - 1, 1)
      cursor -= 1
    } else {
      if (r > 0.98) cursor = Math.floor(rand() * (text.length + 1))
      text.insert(cursor, alphabet[Math.floor(rand() * alphabet.length)])
      cursor += 1
    }
    if (i % 2000 === 1999) await sleep(0) // let ws flush
  }
  text.insert(text.length, '<END>')
  const sentMs = now() - t0
  // If the server closes the watcher (e.g. as a slow consumer during the burst) and the client
  // does not come back, fresh probe clients look for the end marker instead, once a second.
  let probing = true
  const probe = async () => {
    while (probing) {
      await sleep(1000)
      if (!probing || watcher.stats.closes === 0) continue
      const c = connect(target, doc, 0)
      const t = await withDeadline(c.synced, 5000)
      if (t !== 'timeout' && c.text.toString().endsWith('<END>')) resolveEnd(t)
      c.destroy()
    }
  }
  const prober = probe()
  const endAt = await withDeadline(ended, ingestTimeoutS * 1000)
  probing = false
  await prober
  const ingestMs = endAt === 'timeout' ? null : endAt - t0
  const expected = writer.text.toString()
  writer.destroy()
  if (spec.closeWatcher) watcher.destroy()
  if (spec.pauseMs) await sleep(spec.pauseMs)
  const runs = []
  for (let i = 0; i < fresh; i++) {
    const start = now()
    const client = connect(target, doc, 0)
    const t = await withDeadline(client.synced, 20000)
    const ok = t !== 'timeout' && client.text.toString() === expected
    runs.push({ ms: t === 'timeout' ? null : t - start, ok, payload_bytes: client.counter.payloadBytes, wire_bytes: client.wireBytes() })
    client.destroy()
    await sleep(100)
  }
  if (!spec.closeWatcher) watcher.destroy()
  const okRuns = runs.filter((r) => r.ok && r.ms !== null)
  const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : null }
  emit({
    event: 'result',
    edits,
    watcher_close_codes: watcher.stats.closeCodes,
    text_chars: expected.length,
    send_ms: sentMs,
    ingest_ms: ingestMs,
    fresh_runs: runs,
    fresh_ok: okRuns.length,
    sync_ms_median: med(okRuns.map((r) => r.ms)),
    payload_bytes_median: med(okRuns.map((r) => r.payload_bytes)),
    wire_bytes_median: med(okRuns.map((r) => r.wire_bytes))
  })
}

const scenarios = { edit: scenarioEdit, idle: scenarioIdle, simul: scenarioSimul, history: scenarioHistory, storm: scenarioStorm }
const hardStop = setTimeout(() => {
  emit({ event: 'result', error: 'loadgen hard deadline' })
  process.exit(3)
}, (spec.hardDeadlineS || 300) * 1000)
hardStop.unref()
try {
  await scenarios[spec.scenario]()
} catch (err) {
  emit({ event: 'result', error: String(err && err.stack ? err.stack : err) })
}
process.exit(0)

// Product events and page-load timings, batched to POST /api/v1/analytics/events.
// The server stamps who (the token's user), where (the workspace of the project named
// here, once it has checked the user belongs to it) and when; the page says what happened.
// Analytics never breaks the page: a failed batch is dropped and the page carries on.
import { api } from './api.js'
import { getSession } from './session.js'

const FLUSH_MS = 5000
const MAX_BATCH = 20 // the server accepts up to 50
const MAX_QUEUE = 200
const queue = []
const sessionId = crypto.randomUUID()
let projectId = null
let timer = null

/** Events from now on happened in this project (null: outside any project). */
export function setAnalyticsProject (id) {
  if (id === projectId) return
  flush()
  projectId = id
}

/** Record one event; properties are flat (strings, numbers, booleans), never content. */
export function track (name, category, properties = {}) {
  if (queue.length >= MAX_QUEUE) queue.shift()
  queue.push({ name, category, properties, page_url: location.origin + location.pathname })
  if (queue.length >= MAX_BATCH) flush()
  else if (!timer) timer = setTimeout(flush, FLUSH_MS)
}

/** Send what is queued now (kept while signed out: the server needs a user). */
export function flush ({ keepalive = false } = {}) {
  clearTimeout(timer)
  timer = null
  if (!queue.length || !getSession()) return
  while (queue.length) {
    const events = queue.splice(0, MAX_BATCH)
    api.analytics({ session_id: sessionId, project_id: projectId, events }, keepalive)
      .catch((err) => console.debug('analytics batch dropped:', err.message))
  }
}

addEventListener('pagehide', () => flush({ keepalive: true }))
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'hidden') flush({ keepalive: true })
})

function observe (type, onEntries) {
  try {
    new PerformanceObserver((list) => onEntries(list.getEntries())).observe({ type, buffered: true })
  } catch {
    // An older browser without this entry type: that timing is simply not reported.
  }
}

/** Report this page's load (navigation timing, first and largest contentful paint) once. */
export function reportPageLoad (page) {
  const paints = {}
  observe('paint', (entries) => {
    for (const e of entries) if (e.name === 'first-contentful-paint') paints.first_contentful_paint_ms = e.startTime
  })
  observe('largest-contentful-paint', (entries) => {
    if (entries.length) paints.largest_contentful_paint_ms = entries[entries.length - 1].startTime
  })
  // The navigation entry reaches observers once the load event has ended.
  observe('navigation', (entries) => {
    const nav = entries[entries.length - 1]
    if (!nav || !nav.loadEventEnd) return
    const round = (ms) => Math.round(ms * 10) / 10
    const props = {
      page,
      ttfb_ms: round(nav.responseStart - nav.startTime),
      dom_content_loaded_ms: round(nav.domContentLoadedEventEnd - nav.startTime),
      load_ms: round(nav.loadEventEnd - nav.startTime),
      transfer_bytes: nav.transferSize || 0
    }
    for (const [key, value] of Object.entries(paints)) props[key] = round(value)
    track('page_load', 'performance', props)
  })
}

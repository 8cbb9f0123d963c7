// The operator page: per-minute plots of requests, errors, latency, the job queue, AI and
// execution usage (uPlot), for a workspace you administer or, for service operators, the
// whole service. Data: GET /api/v1/operator/series, read under RLS as the signed-in user.
import uPlot from 'uplot'
import { api } from './api.js'
import { renderAuth } from './auth.js'
import { h } from './dom.js'
import { getSession, loadSession, onSessionChange, setSession } from './session.js'
import { reportPageLoad } from './analytics.js'

const REFRESH_MS = 60000
// [minutes, seconds per point, label]; the server's own aggregates come once a minute.
const WINDOWS = [
  [60, 60, 'last hour'], [1, 1, 'last minute, per second'],
  [15, 10, 'last 15 minutes, per 10 s'], [360, 60, 'last 6 hours'], [1440, 60, 'last 24 hours']
]
const COLORS = ['#2563eb', '#dc2626', '#f59e0b', '#059669', '#7c3aed']
const SERVICE = ''

const root = document.getElementById('app')
let charts = []
let timer = null

function clearCharts () {
  for (const chart of charts) chart.destroy()
  charts = []
}

function chart (panel, times, width) {
  const options = {
    width,
    height: 190,
    title: panel.title,
    scales: { x: { time: true } },
    legend: { live: true },
    axes: [
      { stroke: '#6b7280', grid: { stroke: '#eef0f3' } },
      { stroke: '#6b7280', grid: { stroke: '#eef0f3' }, size: 56 }
    ],
    series: [
      {},
      ...panel.series.map((s, i) => ({
        label: s.name,
        stroke: COLORS[i % COLORS.length],
        width: 2,
        spanGaps: true,
        points: { size: 5 }
      }))
    ]
  }
  return [options, [times, ...panel.series.map((s) => s.values)]]
}

function renderPanels (container, data) {
  clearCharts()
  container.replaceChildren()
  const cards = data.panels.map((panel) => {
    const body = h('div', { class: 'chart' })
    const card = h('section', { class: 'chart-card', 'data-testid': 'operator-panel', 'data-panel': panel.id }, [
      h('h3', {}, [panel.title, h('span', { class: 'unit' }, panel.unit)]),
      body
    ])
    container.append(card)
    return [panel, body]
  })
  for (const [panel, body] of cards) {
    const [options, series] = chart(panel, data.times, Math.max(300, body.clientWidth))
    charts.push(new uPlot(options, series, body))
  }
}

async function showOperator () {
  const scopes = await api.operatorScopes()
  const scope = h('select', { 'data-testid': 'operator-scope' }, [
    scopes.operator ? h('option', { value: SERVICE }, 'Whole service') : null,
    ...scopes.workspaces.map((w) => h('option', { value: w.id }, `${w.name} (${w.role})`))
  ])
  const range = h('select', { 'data-testid': 'operator-window' },
    WINDOWS.map(([, , label], i) => h('option', { value: String(i) }, label)))
  const status = h('span', { class: 'muted', 'data-testid': 'operator-status' })
  const panels = h('div', { class: 'panels', 'data-testid': 'operator-panels' })
  const page = h('div', { class: 'operator', 'data-testid': 'operator' }, [
    h('header', {}, [
      h('span', { class: 'brand' }, 'iCreateTechs · operator'),
      scope, range, status,
      h('span', { class: 'spacer' }),
      h('a', { href: '/' }, 'Back to the IDE'),
      h('button', { 'data-testid': 'sign-out', onclick: () => api.signOut().finally(start) }, 'Sign out')
    ]),
    panels
  ])
  root.replaceChildren(page)
  if (!scope.options.length) {
    panels.replaceChildren(h('p', { class: 'empty', 'data-testid': 'operator-empty' },
      'You administer no workspace, and you are not a service operator.'))
    return
  }

  const load = async () => {
    clearTimeout(timer)
    status.textContent = 'loading…'
    try {
      const [minutes, step] = WINDOWS[Number(range.value)]
      const data = await api.operatorSeries(scope.value || null, minutes, step)
      renderPanels(panels, data)
      const at = new Date().toLocaleTimeString()
      status.textContent = `${data.scope === 'service' ? 'whole service' : 'workspace'} · updated ${at}`
      page.dataset.loaded = `${data.scope}:${data.step_s}`
    } catch (err) {
      status.textContent = `⚠ ${err.message}`
    } finally {
      timer = setTimeout(() => load(), REFRESH_MS)
    }
  }
  scope.addEventListener('change', load)
  range.addEventListener('change', load)
  await load()
}

function start () {
  clearTimeout(timer)
  clearCharts()
  if (!getSession()) {
    renderAuth(root, () => showOperator().catch(fatal))
    return
  }
  showOperator().catch(fatal)
}

function fatal (err) {
  console.error(err)
  root.replaceChildren(h('div', { class: 'auth-page' }, [
    h('p', { class: 'error', 'data-testid': 'fatal' }, err && err.message ? err.message : String(err)),
    h('button', { onclick: () => { setSession(null); start() } }, 'Sign out')
  ]))
}

onSessionChange((session) => { if (!session) start() })
reportPageLoad('operator')
loadSession()
start()

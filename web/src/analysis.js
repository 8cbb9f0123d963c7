// Code analyses shown as editor annotations: each finding's lines (from the analysers, never
// from the model) become a CodeMirror diagnostic with the model's explanation when it gave one.
import { setDiagnostics } from '@codemirror/lint'

const SEVERITY = { high: 'error', medium: 'warning', low: 'info', info: 'info' }

export function diagnostics (doc, analysis) {
  const out = []
  const items = analysis.analysis_type === 'explain' ? (analysis.blocks || []) : (analysis.findings || [])
  for (const item of items) {
    const first = Math.min(Math.max(1, item.line_start), doc.lines)
    const last = Math.min(Math.max(first, item.line_end), doc.lines)
    const label = item.rule ? `${item.tool} ${item.rule}` : `${item.kind} ${item.name}`
    const rank = item.rank ? `#${item.rank} ` : ''
    out.push({
      from: doc.line(first).from,
      to: doc.line(last).to,
      severity: SEVERITY[item.severity] || 'info',
      source: analysis.analysis_type,
      message: `${rank}${label}: ${item.explanation || item.message || ''}`.trim()
    })
  }
  return out
}

/** Show ``analysis`` on the open file's editor (an analysis of an older text is skipped). */
export function showAnalysis (entry, analysis) {
  if (analysis.stale) return 0
  const found = diagnostics(entry.view.state.doc, analysis)
  entry.view.dispatch(setDiagnostics(entry.view.state, found))
  entry.dom.dataset.analysis = analysis.analysis_type
  entry.dom.dataset.annotations = String(found.length)
  return found.length
}

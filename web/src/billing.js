// The plan panel: what the workspaces you own use this month against your plan, as bars,
// and the upgrade (Stripe Checkout: the page goes there and comes back with ?billing=...).
// You pay for the workspaces you own; members use the owner's plan (docs/billing.md).
import { api } from './api.js'
import { h } from './dom.js'

const LABELS = { ai_tokens: 'AI tokens', projects: 'Projects', storage_bytes: 'Storage', executions: 'Runs' }

function amount (resource, value) {
  if (value === null || value === undefined) return '∞'
  if (resource === 'storage_bytes') {
    if (value >= 1024 ** 3) return `${(value / 1024 ** 3).toFixed(1)} GB`
    if (value >= 1024 ** 2) return `${(value / 1024 ** 2).toFixed(1)} MB`
    return `${Math.round(value / 1024)} KB`
  }
  return value.toLocaleString('en-US')
}

export class PlanPanel {
  constructor ({ root, onError }) {
    this.root = root
    this.onError = onError || (() => {})
  }

  async show () {
    const [usage, plans] = await Promise.all([api.billingUsage(), api.plans()])
    this.render(usage, plans.items)
  }

  render (usage, plans) {
    const plan = usage.plan
    this.root.dataset.plan = plan.slug
    this.root.dataset.loaded = String(Date.now())
    const state = plan.status === 'past_due' && plan.grace_until
      ? ` · payment failed: kept until ${new Date(plan.grace_until).toLocaleDateString()}`
      : plan.cancel_at_period_end || plan.status === 'canceled'
        ? ` · ends ${new Date(plan.current_period_end).toLocaleDateString()}`
        : ''
    const bars = usage.resources.map((r) => {
      const ratio = r.limit ? Math.min(1, r.used / r.limit) : 0
      return h('div', {
        class: 'usage', 'data-testid': 'usage-bar', 'data-resource': r.resource,
        'data-used': String(r.used), 'data-limit': String(r.limit ?? ''), 'data-ratio': ratio.toFixed(4)
      }, [
        h('div', { class: 'usage-label' }, `${LABELS[r.resource] || r.resource}: ${amount(r.resource, r.used)} / ${amount(r.resource, r.limit)}`),
        h('div', { class: 'usage-track' }, [
          h('div', { class: ratio >= 1 ? 'usage-fill full' : 'usage-fill', style: { width: `${(ratio * 100).toFixed(1)}%` } })
        ])
      ])
    })
    // A subscription is changed in the Stripe portal; checkout is for those without one.
    const subscribed = ['active', 'trialing', 'past_due'].includes(plan.status)
    const offers = !usage.billing_enabled
      ? [h('div', { class: 'muted' }, 'Billing is not configured on this server: everyone is on the free plan.')]
      : subscribed ? [] : plans.filter((p) => p.purchasable && p.slug !== plan.slug).map((p) => h('button', {
        class: 'primary', 'data-testid': `upgrade-${p.slug}`, onclick: () => this.upgrade(p.slug).catch(this.onError)
      }, `Upgrade to ${p.name} · $${(p.price_monthly / 100).toFixed(0)}/month`))
    const manage = usage.billing_enabled && plan.status
      ? [h('button', { 'data-testid': 'billing-portal', onclick: () => this.portal().catch(this.onError) }, 'Manage subscription')]
      : []
    this.root.replaceChildren(
      h('div', { class: 'plan-name', 'data-testid': 'plan-name' }, `${plan.name} plan${state}`),
      h('div', { class: 'muted' }, 'For the workspaces you own, this month.'),
      ...bars,
      h('div', { class: 'row' }, [...offers, ...manage])
    )
  }

  async upgrade (slug) {
    const session = await api.checkout(slug, 'monthly')
    location.assign(session.url)
  }

  async portal () {
    const session = await api.billingPortal()
    location.assign(session.url)
  }
}

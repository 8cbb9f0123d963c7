// A stable colour per user, so a collaborator's cursor keeps its colour across reloads.
const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#008080', '#9a6324', '#800000', '#000075', '#f032e6']

export function userColor (userId) {
  let hash = 0
  for (const ch of String(userId)) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0
  return PALETTE[hash % PALETTE.length]
}

export function lighten (hex) {
  return `${hex}33`
}

import { NotebookPanel } from '@jupyterlab/notebook';

import { IAnalysis, ICellInfo } from './types';

const BADGE = 'jp-mlops-badge';

/** A cell's label: its role, and its step when it belongs to one. */
function label(c: ICellInfo | undefined): string {
  if (!c?.role) {
    return '';
  }
  if (c.role === 'step') {
    return `step ${c.step}`;
  }
  return c.step ? `${c.role} · ${c.step}` : c.role;
}

/**
 * A small label on each marked cell: its role or step, and its problems. Cells are found by
 * id (the analysis numbers the saved cells; an unsaved insert moves them on screen), by
 * position only in a notebook without cell ids.
 */
export function updateBadges(panel: NotebookPanel, analysis: IAnalysis | null): void {
  const cells = analysis?.cells ?? [];
  const byId = new Map(cells.filter(c => c.id).map(c => [c.id as string, c]));
  const byNumber = new Map(cells.map(c => [c.number, c]));
  const problems = new Map<number, string[]>();
  for (const p of analysis?.problems ?? []) {
    if (p.cell !== null) {
      problems.set(p.cell, [...(problems.get(p.cell) ?? []), p.message]);
    }
  }
  panel.content.widgets.forEach((cell, index) => {
    const c = byId.size ? byId.get(cell.model.id) : byNumber.get(index + 1);
    const text = label(c);
    const issues = c ? problems.get(c.number) ?? [] : [];
    let badge = cell.node.querySelector<HTMLElement>(`:scope > .${BADGE}`);
    if (!text && !issues.length) {
      badge?.remove();
      return;
    }
    if (!badge) {
      badge = document.createElement('div');
      badge.className = BADGE;
      cell.node.appendChild(badge);
    }
    badge.textContent = issues.length ? `${text}${text ? ' ' : ''}⚠` : text;
    badge.title = issues.length ? issues.join('\n') : `jupyter-mlops: ${text}`;
    badge.classList.toggle('jp-mlops-badge-problem', issues.length > 0);
    badge.dataset.role = c?.role ?? '';
  });
}

import { NotebookPanel } from '@jupyterlab/notebook';

import { IAnalysis } from './types';

const BADGE = 'jp-mlops-badge';

/** A small label on each marked cell: its role or step, and its problems. */
export function updateBadges(panel: NotebookPanel, analysis: IAnalysis | null): void {
  const cells = panel.content.widgets;
  const info = new Map((analysis?.cells ?? []).map(c => [c.number, c]));
  const problems = new Map<number, string[]>();
  for (const p of analysis?.problems ?? []) {
    if (p.cell !== null) {
      problems.set(p.cell, [...(problems.get(p.cell) ?? []), p.message]);
    }
  }
  cells.forEach((cell, index) => {
    const number = index + 1;
    const c = info.get(number);
    let label = '';
    if (c?.role === 'step' || (c?.step && c.role)) {
      label = c.role === 'step' ? `step ${c.step}` : `${c.role} · ${c.step}`;
    } else if (c?.role) {
      label = c.role;
    }
    const issues = problems.get(number) ?? [];
    let badge = cell.node.querySelector<HTMLElement>(`:scope > .${BADGE}`);
    if (!label && !issues.length) {
      badge?.remove();
      return;
    }
    if (!badge) {
      badge = document.createElement('div');
      badge.className = BADGE;
      cell.node.appendChild(badge);
    }
    badge.textContent = issues.length ? `${label}${label ? ' ' : ''}⚠` : label;
    badge.title = issues.length ? issues.join('\n') : `jupyter-mlops: ${label}`;
    badge.classList.toggle('jp-mlops-badge-problem', issues.length > 0);
    badge.dataset.role = c?.role ?? '';
  });
}

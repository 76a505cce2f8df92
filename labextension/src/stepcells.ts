import { NotebookPanel } from '@jupyterlab/notebook';

import { CellPositions, finish, textOf, write } from './cells';
import { magicLine, withAfter } from './marks';
import { IAnalysis, IStep } from './types';

/** Select the cells of `step` in the notebook: the first made active and scrolled to, all of
 * them selected (highlighted). Why not, or null. */
export function selectStepCells(panel: NotebookPanel, analysis: IAnalysis | null, step: IStep): string | null {
  const positions = new CellPositions(panel, analysis);
  const indexes = step.cells.map(n => positions.index(n)).filter((i): i is number => i !== null);
  if (!indexes.length) {
    return `The cells of step ${step.name} are no longer in the notebook; save it to analyse again.`;
  }
  const notebook = panel.content;
  notebook.mode = 'command';
  notebook.activeCellIndex = indexes[0];
  notebook.deselectAll();
  indexes.forEach(index => notebook.select(notebook.widgets[index]));
  void notebook.scrollToItem(indexes[0], 'center');
  return null;
}

/** Whether `to` running after `from` would make a cycle: `from` already runs after `to`
 * (or is it). */
export function makesCycle(steps: IStep[], from: string, to: string): boolean {
  const byName = new Map(steps.map(s => [s.name, s]));
  const todo = [from];
  const seen = new Set<string>();
  while (todo.length) {
    const name = todo.pop()!;
    if (name === to) {
      return true;
    }
    if (!seen.has(name)) {
      seen.add(name);
      todo.push(...(byName.get(name)?.after ?? []));
    }
  }
  return false;
}

/**
 * Make step `to` run after step `from`: `--after FROM` on the first line of its first cell,
 * or the tag `mlops:after=FROM`, per the cell's spelling; then save (and load the extension
 * for a magic), as a role change does. Why not (a cycle, a cell gone), or null.
 */
export function addAfterAndSave(
  panel: NotebookPanel,
  analysis: IAnalysis,
  from: string,
  to: string,
  say: (note: string) => void
): string | null {
  const steps = analysis.pipeline.steps;
  const target = steps.find(s => s.name === to);
  if (!target || !steps.some(s => s.name === from)) {
    return `No step ${target ? from : to} in the analysis; save the notebook to analyse again.`;
  }
  if (target.after.includes(from)) {
    return `Step ${to} already runs after ${from}.`;
  }
  if (makesCycle(steps, from, to)) {
    return `Step ${to} cannot run after ${from}: ${from} already runs after ${to}, which would make a cycle.`;
  }
  const index = new CellPositions(panel, analysis).index(target.cells[0]);
  const cell = index === null ? undefined : panel.model?.cells.get(index);
  const next = cell && cell.type === 'code' ? withAfter(textOf(cell), from) : null;
  if (!cell || !next) {
    return `The first cell of step ${to} does not start it any more; save the notebook to analyse again.`;
  }
  write(cell, next);
  finish(panel, magicLine(next.source) !== null, say);
  return null;
}

import { ICellModel } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';

import {
  ICellMark,
  ICellText,
  IMarkRequest,
  magicLine,
  modelVariable,
  readMark,
  Spelling,
  withPrepare,
  withRole
} from './marks';
import { IAnalysis } from './types';

const LOAD_EXT = /^[ \t]*%(re)?load_ext[ \t]+jupyter_mlops\b/m;

/**
 * The analysis numbers cells as they were saved; the notebook on screen may have moved on
 * (a cell inserted and not saved yet). Cells are followed by id: the saved cell `number`
 * is wherever the cell with its id is now (by position only for a notebook without ids).
 */
export class CellPositions {
  constructor(
    private readonly panel: NotebookPanel,
    private readonly analysis: IAnalysis | null
  ) {
    panel.content.widgets.forEach((cell, index) => this._index.set(cell.model.id, index));
  }

  /** The current index of the saved cell `number`, or null when it is gone. */
  index(number: number): number | null {
    const id = this.analysis?.cells.find(c => c.number === number)?.id;
    if (id) {
      return this._index.get(id) ?? null;
    }
    return number - 1 < this.panel.content.widgets.length ? number - 1 : null;
  }

  /** The number the cell has on screen now (the saved number when it cannot tell). */
  label(number: number): number {
    const index = this.index(number);
    return index === null ? number : index + 1;
  }

  /** Make the saved cell `number` active and scroll to it. */
  scrollTo(number: number): void {
    const index = this.index(number);
    if (index !== null) {
      this.panel.content.activeCellIndex = index;
      void this.panel.content.scrollToItem(index, 'center');
    }
  }

  private _index = new Map<string, number>();
}

function tagsOf(cell: ICellModel): string[] {
  const tags = cell.getMetadata('tags');
  return Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : [];
}

/** The active code cell of `panel`: its number on screen and its mark (either spelling). */
export function activeCell(panel: NotebookPanel | null): { number: number; mark: ICellMark | null } | null {
  const cell = panel?.content.activeCell?.model;
  if (!panel || !cell || cell.type !== 'code') {
    return null;
  }
  return { number: panel.content.activeCellIndex + 1, mark: readMark(cell.sharedModel.getSource(), tagsOf(cell)) };
}

/** Mark the active cell of `panel` (see markActiveCell), load the extension in its kernel
 * for a magic mark, and save (the analysis reads the saved file). Why not, or null. */
export function markAndSave(
  panel: NotebookPanel,
  request: IMarkRequest,
  spelling: Spelling,
  say: (note: string) => void
): string | null {
  const done = markActiveCell(panel, request, spelling);
  if (!done.problem) {
    finish(panel, done.magic, say);
  }
  return done.problem;
}

/**
 * Mark the saved cells `numbers` (those the analysis suggests) as preparing data for
 * prediction (withPrepare: `--prepare` or the tag `mlops:prepare` on a step or data cell,
 * `%%mlops prepare` or the tag on an unmarked one), then save as markAndSave does. Why some
 * cells were left as they are, or null.
 */
export function markPrepareAndSave(
  panel: NotebookPanel,
  analysis: IAnalysis | null,
  numbers: number[],
  spelling: Spelling,
  say: (note: string) => void
): string | null {
  const positions = new CellPositions(panel, analysis);
  return prepareAndSave(panel, numbers.map(n => positions.index(n) ?? -n), true, spelling, say);
}

/** Set or unset the prepare flag of the active cell of `panel`, then save. Why not, or null. */
export function setPrepareAndSave(
  panel: NotebookPanel,
  on: boolean,
  spelling: Spelling,
  say: (note: string) => void
): string | null {
  if (panel.content.activeCell?.model.type !== 'code') {
    return 'Select a code cell first.';
  }
  return prepareAndSave(panel, [panel.content.activeCellIndex], on, spelling, say);
}

/** Set the prepare flag of the cells at `indexes` (-N: the saved cell N, gone), and save. */
function prepareAndSave(
  panel: NotebookPanel,
  indexes: number[],
  on: boolean,
  spelling: Spelling,
  say: (note: string) => void
): string | null {
  const refused: number[] = [];
  let changed = false;
  let magic = false;
  for (const index of indexes) {
    const cell = index >= 0 ? panel.model?.cells.get(index) : undefined;
    const next = cell?.type === 'code' ? withPrepare(textOf(cell), on, spelling) : null;
    if (!cell || !next) {
      refused.push(index >= 0 ? index + 1 : -index);
      continue;
    }
    changed = write(cell, next) || changed;
    magic = magic || magicLine(next.source) !== null;
  }
  if (changed) {
    finish(panel, magic, say);
  }
  return refused.length
    ? `Cell ${refused.join(', ')} cannot prepare data: only step and data cells, or unmarked ones, can.`
    : null;
}

/** After a mark: the `%load_ext` a magic needs (in the notebook and its kernel), a note of
 * what else was done, and a save. */
export function finish(panel: NotebookPanel, magic: boolean, say: (note: string) => void): void {
  if (magic) {
    const note = addLoadExt(panel);
    if (note) {
      say(note);
    }
    loadExtension(panel);
  }
  void panel.context.save();
}

export function textOf(cell: ICellModel): ICellText {
  return { source: cell.sharedModel.getSource(), tags: tagsOf(cell) };
}

/** Write `next` into `cell` in one transaction; whether anything changed. */
export function write(cell: ICellModel, next: ICellText): boolean {
  const old = textOf(cell);
  if (old.source === next.source && old.tags.join('\n') === next.tags.join('\n')) {
    return false;
  }
  cell.sharedModel.transact(() => {
    if (next.source !== old.source) {
      cell.sharedModel.setSource(next.source);
    }
    if (next.tags.length) {
      cell.setMetadata('tags', next.tags);
    } else {
      cell.deleteMetadata('tags');
    }
  });
  return true;
}

/**
 * Set the role of the active cell of `panel`, in the spelling the cell uses (or `spelling`
 * for an unmarked cell); the model role names the variable the cell assigns. Returns why
 * nothing was marked, and whether the cell now has a magic line (which needs the extension).
 */
export function markActiveCell(
  panel: NotebookPanel,
  request: IMarkRequest,
  spelling: Spelling
): { problem: string | null; magic: boolean } {
  const cell = panel.content.activeCell?.model;
  if (!cell || cell.type !== 'code') {
    return { problem: 'Select a code cell first.', magic: false };
  }
  const text = textOf(cell);
  if (request.role === 'model' && !request.variables?.length) {
    const variable = modelVariable(text.source);
    request = variable ? { ...request, variables: [variable] } : request;
  }
  const next = withRole(text, request, spelling);
  write(cell, next);
  return { problem: null, magic: magicLine(next.source) !== null };
}

/** Insert `%load_ext jupyter_mlops` before the first code cell unless a cell loads it. */
function addLoadExt(panel: NotebookPanel): string | null {
  const model = panel.model;
  if (!model) {
    return null;
  }
  let first = -1;
  for (let i = 0; i < model.cells.length; i++) {
    const cell = model.cells.get(i);
    if (cell.type !== 'code') {
      continue;
    }
    if (LOAD_EXT.test(cell.sharedModel.getSource())) {
      return null;
    }
    first = first < 0 ? i : first;
  }
  const at = Math.max(first, 0);
  model.sharedModel.insertCell(at, { cell_type: 'code', source: '%load_ext jupyter_mlops', metadata: {} });
  return `Added %load_ext jupyter_mlops as cell ${at + 1}: %%mlops marks need it.`;
}

/** Load the extension in the notebook's kernel, silently, so that a cell just marked with
 * `%%mlops` runs before the `%load_ext` cell has (loading it twice does nothing). */
export function loadExtension(panel: NotebookPanel): void {
  const kernel = panel.sessionContext.session?.kernel;
  if (kernel) {
    kernel.requestExecute({ code: '%load_ext jupyter_mlops', silent: true, store_history: false }, true);
  }
}

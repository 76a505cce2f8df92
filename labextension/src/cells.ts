import { ICellModel } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';

import { IMarkRequest, magicLine, modelVariable, readMark, Spelling, withRole, ICellMark } from './marks';
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
  if (done.problem) {
    return done.problem;
  }
  if (done.magic) {
    loadExtension(panel);
  }
  if (done.note) {
    say(done.note);
  }
  void panel.context.save();
  return null;
}

/**
 * Set the role of the active cell of `panel`, in the spelling the cell uses (or `spelling`
 * for an unmarked cell); the model role names the variable the cell assigns. A magic mark in
 * a notebook that does not load the extension gets a `%load_ext jupyter_mlops` cell before
 * its first code cell. Returns why nothing was marked, or a note on what else was done.
 */
export function markActiveCell(
  panel: NotebookPanel,
  request: IMarkRequest,
  spelling: Spelling
): { problem: string | null; note: string | null; magic: boolean } {
  const cell = panel.content.activeCell?.model;
  if (!cell || cell.type !== 'code') {
    return { problem: 'Select a code cell first.', note: null, magic: false };
  }
  const source = cell.sharedModel.getSource();
  if (request.role === 'model' && !request.variables?.length) {
    const variable = modelVariable(source);
    request = variable ? { ...request, variables: [variable] } : request;
  }
  const next = withRole({ source, tags: tagsOf(cell) }, request, spelling);
  cell.sharedModel.transact(() => {
    if (next.source !== source) {
      cell.sharedModel.setSource(next.source);
    }
    if (next.tags.length) {
      cell.setMetadata('tags', next.tags);
    } else {
      cell.deleteMetadata('tags');
    }
  });
  const magic = magicLine(next.source) !== null;
  const note = magic ? addLoadExt(panel) : null;
  return { problem: null, note, magic };
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

import { Cell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';

import { finish, textOf, write } from './cells';
import {
  afterSteps,
  assignedNames,
  ICellMark,
  ICellText,
  IMarkRequest,
  magicLine,
  modelVariable,
  readMark,
  Spelling,
  stepNameProblem,
  thresholdProblem,
  thresholds,
  withAfterSteps,
  withRole,
  withThresholds
} from './marks';
import { makesCycle } from './stepcells';
import { IAnalysis } from './types';

const INLINE = 'jp-mlops-inline';
/** Roles whose mark names the cell's variables. */
const NAMED = new Set(['data', 'model', 'metrics']);
const NEW_STEP = '\u0000new';

/** What the inline controls need: the analysis (roles, steps), the spelling of new marks, a
 * note for the panel, and a word that the sidebar saves (so that it analyses again). */
export interface IInlineHost {
  analysis: IAnalysis | null;
  spelling: Spelling;
  say: (note: string) => void;
  saving: () => void;
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = text;
  return node;
}

function select(label: string, values: [string, string][], current: string): HTMLSelectElement {
  const node = element('select', 'jp-mlops-inline-select');
  node.setAttribute('aria-label', label);
  for (const [value, text] of values) {
    const option = element('option', '', text);
    option.value = value;
    node.appendChild(option);
  }
  node.value = current;
  return node;
}

/** A step name no step has yet: step2, step3, ... */
function freshStep(analysis: IAnalysis | null): string {
  const taken = new Set((analysis?.pipeline.steps ?? []).map(s => s.name));
  let n = taken.size + 1;
  while (taken.has(`step${n}`)) {
    n++;
  }
  return `step${n}`;
}

/** Set the role of `cell` in its spelling, then save as a role change from the panel does. */
function mark(panel: NotebookPanel, cell: Cell, request: IMarkRequest, host: IInlineHost): string | null {
  if (request.role === 'step') {
    const why = stepNameProblem(request.name ?? '');
    if (why) {
      return why;
    }
  }
  const text = textOf(cell.model);
  if (request.role === 'model' && !request.variables?.length) {
    const variable = modelVariable(text.source); // as the panel's model button names it
    request = variable ? { ...request, variables: [variable] } : request;
  }
  const next = withRole(text, request, host.spelling);
  if (write(cell.model, next)) {
    host.saving();
    finish(panel, magicLine(next.source) !== null, host.say);
  }
  return null;
}

/** Write `next` into the cell (unless null: a why) and save as a role change does. */
function rewrite(panel: NotebookPanel, cell: Cell, next: ICellText | null, host: IInlineHost): void {
  if (next && write(cell.model, next)) {
    host.saving();
    finish(panel, magicLine(next.source) !== null, host.say);
  }
}

/** "after" choices of a step cell: a box per other step; a choice that would make a cycle
 * is refused with one line in `problem`. */
function afterChoices(panel: NotebookPanel, cell: Cell, name: string, host: IInlineHost, problem: HTMLElement): HTMLElement {
  const box = element('span', 'jp-mlops-inline-after', 'after');
  const steps = host.analysis?.pipeline.steps ?? [];
  const current = afterSteps(textOf(cell.model));
  for (const other of steps.map(s => s.name).filter(n => n !== name)) {
    const chip = element('label', 'jp-mlops-inline-name');
    const check = element('input', '');
    check.type = 'checkbox';
    check.checked = current.includes(other);
    check.dataset.after = other;
    check.addEventListener('change', () => {
      if (check.checked && makesCycle(host.analysis?.pipeline.steps ?? [], other, name)) {
        check.checked = false;
        problem.textContent = `Step ${name} cannot run after ${other}: ${other} already runs after ${name}, which would make a cycle.`;
        return;
      }
      const chosen = Array.from(box.querySelectorAll<HTMLInputElement>('input[data-after]'))
        .filter(i => i.checked)
        .map(i => i.dataset.after ?? '');
      problem.textContent = '';
      rewrite(panel, cell, withAfterSteps(textOf(cell.model), chosen), host);
    });
    chip.append(check, document.createTextNode(other));
    box.appendChild(chip);
  }
  return box;
}

/** Thresholds of a `%%mlops metrics` cell: `--min` and `--max` as `NAME=VALUE ...`, set on
 * Enter or when the field is left. */
function thresholdFields(panel: NotebookPanel, cell: Cell, host: IInlineHost, problem: HTMLElement): HTMLElement[] {
  const given = thresholds(textOf(cell.model));
  if (!given) {
    return [];
  }
  const fields = (['min', 'max'] as const).map(bound => {
    const field = element('input', 'jp-mlops-inline-threshold');
    field.type = 'text';
    field.value = given[bound].join(' ');
    field.placeholder = `${bound}: f1=0.5`;
    field.setAttribute('aria-label', `${bound}imum of a metric`);
    return field;
  });
  const set = (): void => {
    const [min, max] = fields.map(f => f.value.split(/\s+/).filter(Boolean));
    const wrong = [...min, ...max].map(thresholdProblem).find(Boolean);
    problem.textContent = wrong ?? '';
    if (!wrong) {
      rewrite(panel, cell, withThresholds(textOf(cell.model), min, max), host);
    }
  };
  for (const field of fields) {
    field.addEventListener('change', set);
    field.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        event.stopPropagation(); // the notebook's Enter (edit mode) is not for this field
        field.blur();
      }
    });
  }
  return fields;
}

/** The control of one marked cell: role, step (an existing one or new) and the steps it
 * runs after, the names it records for data, model and metrics, and a metrics cell's
 * thresholds. */
function build(panel: NotebookPanel, cell: Cell, current: ICellMark, host: IInlineHost): HTMLElement {
  const box = element('div', INLINE);
  const problem = element('span', 'jp-mlops-inline-problem jp-mlops-error');
  const apply = (request: IMarkRequest): void => {
    problem.textContent = mark(panel, cell, request, host) ?? '';
  };
  const roles = host.analysis?.roles ?? [current.role];
  const choices: [string, string][] = [...roles.map(r => [r, r] as [string, string]), ['none', 'clear']];
  const role = select('cell role', choices, current.role);
  role.addEventListener('change', () =>
    apply({ role: role.value, name: role.value === 'step' ? freshStep(host.analysis) : undefined })
  );
  box.appendChild(role);
  if (current.role === 'step') {
    const steps = (host.analysis?.pipeline.steps ?? []).map(s => s.name);
    const name = current.args[0] ?? '';
    const names = [...new Set([name, ...steps])].filter(Boolean);
    const step = select('step name', [...names.map(n => [n, n] as [string, string]), [NEW_STEP, 'new…']], name);
    const typed = element('input', 'jp-mlops-inline-new');
    typed.type = 'text';
    typed.placeholder = 'new step name';
    typed.setAttribute('aria-label', 'new step name');
    typed.hidden = true;
    step.addEventListener('change', () => {
      typed.hidden = step.value !== NEW_STEP;
      if (step.value === NEW_STEP) {
        typed.focus();
      } else {
        apply({ role: 'step', name: step.value });
      }
    });
    typed.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        event.stopPropagation(); // the notebook's Enter (edit mode) is not for this field
        apply({ role: 'step', name: typed.value.trim() });
        typed.blur(); // rebuilt with the new name once the analysis has it
      }
    });
    box.append(step, typed, afterChoices(panel, cell, name, host, problem));
  } else if (NAMED.has(current.role)) {
    // the analysis knows what the saved cell binds; the source, what an unsaved edit binds
    const info = host.analysis?.cells.find(c => c.id === cell.model.id);
    const names = [
      ...new Set([...current.args, ...(info?.assigns ?? []), ...assignedNames(cell.model.sharedModel.getSource())])
    ];
    for (const name of names) {
      const chip = element('label', 'jp-mlops-inline-name');
      const check = element('input', '');
      check.type = 'checkbox';
      check.checked = current.args.includes(name);
      check.dataset.name = name;
      check.addEventListener('change', () => {
        const checks = Array.from(box.querySelectorAll<HTMLInputElement>('input[data-name]'));
        const chosen = checks.filter(i => i.checked);
        // none checked: the role alone (the kernel records what it finds)
        apply({ role: current.role, variables: chosen.map(i => i.dataset.name ?? '') });
      });
      chip.append(check, document.createTextNode(name));
      box.appendChild(chip);
    }
  }
  if (current.role === 'metrics') {
    box.append(...thresholdFields(panel, cell, host, problem));
  }
  box.appendChild(problem);
  return box;
}

/** Put `box` in the cell's header, above its input (the cell's layout keeps it there); a cell
 * not rendered yet gets it once it is. */
function place(cell: Cell, box: HTMLElement, retry = true): void {
  const header = cell.node.querySelector(':scope > .jp-CellHeader');
  if (header) {
    header.querySelector(`:scope > .${INLINE}`)?.remove();
    header.appendChild(box);
  } else if (retry) {
    void cell.ready.then(() => !box.isConnected && place(cell, box, false));
  }
}

/**
 * A compact control at the top of each marked code cell of `panel`, rebuilt when the cell's
 * mark or the steps change (never while one of its fields has the focus).
 */
export function updateInline(panel: NotebookPanel, host: IInlineHost): void {
  const steps = (host.analysis?.pipeline.steps ?? []).map(s => s.name).join(' ');
  for (const cell of panel.content.widgets) {
    const old = cell.node.querySelector<HTMLElement>(`:scope > .jp-CellHeader > .${INLINE}`);
    const text = cell.model.type === 'code' ? textOf(cell.model) : null;
    const current = text ? readMark(text.source, text.tags) : null;
    if (!current) {
      old?.remove();
      continue;
    }
    const key = JSON.stringify([current, steps, host.analysis?.roles ?? [], text?.source, text?.tags]);
    if (old && (old.dataset.key === key || old.contains(document.activeElement))) {
      continue;
    }
    const box = build(panel, cell, current, host);
    box.dataset.key = key;
    if (old) {
      old.replaceWith(box);
    } else {
      place(cell, box);
    }
  }
}

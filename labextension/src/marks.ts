/**
 * One marking model: a cell's role is spelled either as a first line `%%mlops ROLE ...` or
 * as cell tags `mlops:ROLE[=ARG]` (DESIGN.md, "Cell roles"). The sidebar reads both and
 * rewrites a mark in the spelling the cell already uses; an unmarked cell gets the user's
 * spelling. Pure functions on a cell's source and tags; see cells.ts for the notebook.
 */

/** A cell role: one of the library's (`IAnalysis.roles`), or "none", which clears it. */
export type Role = string;

/** How a new mark is written: a magic first line (it captures) or a cell tag. */
export type Spelling = 'magic' | 'tag';

/** jupyter_mlops.notebook.roles.STEP_NAME. */
const STEP_NAME = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;
/** jupyter_mlops.notebook.reader._MLOPS_LINE and _BLANK_LINES. */
const MAGIC_LINE = /^(%%?)mlops(?:[ \t]+(.*))?$/;
const BLANK_LINES = /^(?:[ \t]*\r?\n)+/;
/** `%mlops status` and `%mlops panel` look at the notebook; they mark nothing. */
const COMMANDS = new Set(['status', 'panel']);
/** Other tools' tags that carry a role (roles._FOREIGN_TAGS), and Kale's prefixes. */
const FOREIGN_TAGS: Record<string, string> = {
  parameters: 'params',
  'injected-parameters': 'params',
  'pipeline-parameters': 'params',
  imports: 'setup',
  functions: 'setup',
  'pipeline-metrics': 'metrics',
  skip: 'skip'
};
const KALE_PREFIXES = ['step:', 'block:', 'prev:'];
/** Roles a cell may have and also prepare data for prediction (roles.PREPARE_WITH): `--prepare`
 * on the first line, or the tag `mlops:prepare` beside the role's tag. */
export const PREPARE_WITH = new Set(['step', 'data', 'prepare']);
const PREPARE_OPTION = '--prepare';
const PREPARE_TAG = 'mlops:prepare';
/** Roles whose cells write to the capture record (magics.CAPTURING_ROLES). */
export const CAPTURING_ROLES = new Set(['data', 'params', 'metrics', 'model']);

/** Why `name` is not a valid step name, or null when it is. */
export function stepNameProblem(name: string): string | null {
  if (!name) {
    return 'Type a step name first, e.g. train.';
  }
  if (!STEP_NAME.test(name)) {
    return `"${name}" is not a step name: use letters, digits, _ or -, starting with a letter (e.g. train-model).`;
  }
  return null;
}

/** Whether a tag says something about the cell's role (ours, papermill's, Kale's). */
export function isRoleTag(tag: string): boolean {
  return tag.startsWith('mlops:') || tag in FOREIGN_TAGS || KALE_PREFIXES.some(p => tag.startsWith(p));
}

/** A `%%mlops ...` first line: its percent signs, its arguments, and the code after it. */
export interface IMagicLine {
  percent: string;
  args: string;
  rest: string;
}

/** The cell's `%%mlops` (or line-form `%mlops`) first line, or null. */
export function magicLine(source: string): IMagicLine | null {
  const stripped = source.replace(BLANK_LINES, ''); // IPython drops them before a cell magic
  const newline = stripped.indexOf('\n');
  const first = (newline < 0 ? stripped : stripped.slice(0, newline)).trimEnd();
  const match = MAGIC_LINE.exec(first);
  if (!match) {
    return null;
  }
  const args = (match[2] ?? '').trim();
  if (COMMANDS.has(args.split(/\s+/)[0])) {
    return null;
  }
  return { percent: match[1], args, rest: newline < 0 ? '' : stripped.slice(newline + 1) };
}

/** What a cell is marked as, read from either spelling. */
export interface ICellMark {
  spelling: Spelling;
  role: string;
  /** The step name of a step; the variables of data, model or metrics. */
  args: string[];
  /** The cell prepares data for prediction too (`%%mlops prepare`, `--prepare`, the tag
   * `mlops:prepare`). */
  prepare: boolean;
}

/** The cell's mark: its magic line first (the reader merges a tag saying the same), else its tags. */
export function readMark(source: string, tags: string[]): ICellMark | null {
  const magic = magicLine(source);
  if (magic) {
    const words = magic.args.split(/\s+/).filter(Boolean);
    const [role = '', ...rest] = words.filter(w => w !== PREPARE_OPTION);
    const args: string[] = [];
    for (const word of rest) {
      if (word.startsWith('--')) {
        break;
      }
      args.push(word);
    }
    return { spelling: 'magic', role, args, prepare: role === 'prepare' || words.includes(PREPARE_OPTION) };
  }
  // `mlops:prepare` beside another role's tag only says that the cell prepares too
  const prepare = tags.includes(PREPARE_TAG);
  const mark = (role: string, args: string[]): ICellMark => ({ spelling: 'tag', role, args, prepare });
  for (const tag of tags) {
    if (tag.startsWith('mlops:')) {
      const [role, arg = ''] = tag.slice('mlops:'.length).split('=', 2);
      if (role === 'after' || tag === PREPARE_TAG) {
        continue;
      }
      const args = tags
        .filter(t => t.startsWith(`mlops:${role}=`))
        .flatMap(t => t.slice(`mlops:${role}=`.length).split(','))
        .filter(Boolean);
      return mark(role, args.length ? args : arg ? [arg] : []);
    }
  }
  for (const tag of tags) {
    if (tag.startsWith('step:') || tag.startsWith('block:')) {
      const name = tag.slice(tag.indexOf(':') + 1);
      if (name) {
        return mark('step', [name]);
      }
    } else if (tag in FOREIGN_TAGS) {
      return mark(FOREIGN_TAGS[tag], []);
    }
  }
  return prepare ? mark('prepare', []) : null;
}

/** A role to write, with its step name or variables. */
export interface IMarkRequest {
  role: Role;
  /** The step's name (role step). */
  name?: string;
  /** The variables of data, model or metrics; none keeps those the cell names already. */
  variables?: string[];
  /** Whether a step or data cell prepares data for prediction too; unset keeps what the
   * cell says (a role change keeps the flag; "none" clears it). */
  prepare?: boolean;
}

/** A cell's source and tags. */
export interface ICellText {
  source: string;
  tags: string[];
}

/** Whether a cell marked `request` prepares: `request.prepare` if set, else what the cell
 * said (`--prepare` or the extra tag; not the role prepare, which the request replaces). */
function keepsPrepare(request: IMarkRequest, old: ICellMark | null): boolean {
  if (request.role === 'prepare' || !PREPARE_WITH.has(request.role)) {
    return false;
  }
  return request.prepare ?? (!!old?.prepare && old.role !== 'prepare');
}

/** The `%%mlops` arguments for `request`; a cell of the same role keeps its options
 * (`--after`, thresholds) and, unless new ones are given, its variables; `--prepare` last. */
function magicArgs(request: IMarkRequest, old: IMagicLine | null, prepare: boolean): string {
  const words = old ? old.args.split(/\s+/).filter(w => w && w !== PREPARE_OPTION) : [];
  const same = words[0] === request.role;
  const firstOption = words.findIndex(w => w.startsWith('--'));
  const options = same && firstOption > 0 ? words.slice(firstOption) : [];
  const oldArgs = same ? words.slice(1, firstOption > 0 ? firstOption : undefined) : [];
  let args = oldArgs;
  if (request.role === 'step') {
    args = [request.name ?? ''];
  } else if (request.variables?.length) {
    args = request.variables;
  }
  return [request.role, ...args, ...options, ...(prepare ? [PREPARE_OPTION] : [])].join(' ');
}

/** The `mlops:` tags for `request`; a step keeps its `after` tags (and Kale's `prev:`);
 * `mlops:prepare` last for a cell that prepares too (roles.mark_to_tags). */
function roleTags(request: IMarkRequest, tags: string[], prepare: boolean): string[] {
  const role = request.role;
  const extra = prepare ? [PREPARE_TAG] : [];
  if (role === 'step') {
    const after = tags
      .filter(t => t.startsWith('mlops:after=') || t.startsWith('prev:'))
      .map(t => (t.startsWith('prev:') ? `mlops:after=${t.slice('prev:'.length)}` : t));
    return [`mlops:step=${request.name ?? ''}`, ...new Set(after), ...extra];
  }
  const prefix = `mlops:${role}=`;
  const variables = request.variables?.length
    ? request.variables
    : tags.filter(t => t.startsWith(prefix)).flatMap(t => t.slice(prefix.length).split(','));
  // one tag per name: nbformat forbids commas in tags (roles.mark_to_tags)
  const named = variables.filter(Boolean).map(v => `mlops:${role}=${v}`);
  return [...(named.length ? named : [`mlops:${role}`]), ...extra];
}

/**
 * The cell with its role set to `request` (role "none" clears it). A cell marked by its
 * first line gets that line rewritten (or removed) and loses any role tag, which would
 * conflict; a tagged cell (ours, papermill's or Kale's) gets its role tags replaced; an
 * unmarked cell is marked in `spelling`.
 */
export function withRole(cell: ICellText, request: IMarkRequest, spelling: Spelling): ICellText {
  const magic = magicLine(cell.source);
  const others = cell.tags.filter(t => !isRoleTag(t));
  const prepare = keepsPrepare(request, readMark(cell.source, cell.tags));
  if (magic) {
    const source =
      request.role === 'none'
        ? magic.rest
        : `${magic.percent}mlops ${magicArgs(request, magic, prepare)}\n${magic.rest}`;
    return { source, tags: others };
  }
  const tagged = cell.tags.some(isRoleTag);
  if (request.role === 'none') {
    return { source: cell.source, tags: others };
  }
  if (tagged || spelling === 'tag') {
    return { source: cell.source, tags: [...others, ...roleTags(request, cell.tags, prepare)] };
  }
  return { source: `%%mlops ${magicArgs(request, null, prepare)}\n${cell.source}`, tags: others };
}

/**
 * The cell with its prepare flag set to `on`, in the spelling it uses: a step or data cell
 * gets (or loses) `--prepare` on its first line or the tag `mlops:prepare` beside its role's
 * tag; an unmarked cell becomes a prepare cell in `spelling` (`%%mlops prepare` or the tag),
 * and a prepare cell that stops preparing is cleared. Null for a cell of another role,
 * which does not prepare data (roles.PREPARE_WITH).
 */
export function withPrepare(cell: ICellText, on: boolean, spelling: Spelling): ICellText | null {
  const mark = readMark(cell.source, cell.tags);
  if (!mark) {
    return on ? withRole(cell, { role: 'prepare' }, spelling) : cell;
  }
  if (mark.role === 'prepare') {
    return on ? cell : withRole(cell, { role: 'none' }, spelling);
  }
  if (!PREPARE_WITH.has(mark.role)) {
    return null;
  }
  const magic = magicLine(cell.source);
  if (magic) {
    const words = magic.args.split(/\s+/).filter(w => w && w !== PREPARE_OPTION);
    const args = [...words, ...(on ? [PREPARE_OPTION] : [])].join(' ');
    return { source: `${magic.percent}mlops ${args}\n${magic.rest}`, tags: cell.tags };
  }
  const tags = cell.tags.filter(t => t !== PREPARE_TAG);
  return { source: cell.source, tags: on ? [...tags, PREPARE_TAG] : tags };
}

/** Top-level `NAME = value` lines: (name, value). */
function assignments(source: string): [string, string][] {
  const found: [string, string][] = [];
  for (const line of source.split('\n')) {
    const match = /^([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)(.*)$/.exec(line);
    if (match) {
      found.push([match[1], match[2].trim()]);
    }
  }
  return found;
}

/**
 * The model a cell makes: the variable assigned a fitted or constructed estimator
 * (`model` in `model = Ridge(alpha=1).fit(X, y)`, never the class), else the cell's only
 * assigned name, else the variable it fits (`reg.fit(X, y)`); null when it cannot tell
 * (the kernel then records the estimator it finds).
 */
export function modelVariable(source: string): string | null {
  const code = magicLine(source)?.rest ?? source;
  const assigned = assignments(code);
  const built = assigned.filter(([, value]) => /\.fit\(|^[A-Z]\w*\(/.test(value));
  if (built.length) {
    return built[built.length - 1][0];
  }
  if (assigned.length === 1) {
    return assigned[0][0];
  }
  const fitted = [...code.matchAll(/^([A-Za-z_]\w*)\.fit\(/gm)].map(m => m[1]);
  return fitted.length ? fitted[fitted.length - 1] : null;
}

/**
 * The step cell with `before` added to the steps it runs after, in the spelling it uses:
 * `--after ... BEFORE` on its first line, or the tag `mlops:after=BEFORE` (roles.mark_to_tags).
 * The same cell when it already says so; null for a cell that does not start a step.
 */
export function withAfter(cell: ICellText, before: string): ICellText | null {
  const mark = readMark(cell.source, cell.tags);
  if (!mark || mark.role !== 'step') {
    return null;
  }
  const magic = magicLine(cell.source);
  if (magic) {
    const words = magic.args.split(/\s+/).filter(Boolean);
    const at = words.indexOf('--after');
    if (at < 0) {
      const prepare = words.indexOf(PREPARE_OPTION);
      words.splice(prepare < 0 ? words.length : prepare, 0, '--after', before);
    } else {
      let end = at + 1;
      while (end < words.length && !words[end].startsWith('--')) {
        end++;
      }
      if (words.slice(at + 1, end).includes(before)) {
        return cell;
      }
      words.splice(end, 0, before);
    }
    return { source: `${magic.percent}mlops ${words.join(' ')}\n${magic.rest}`, tags: cell.tags };
  }
  const tag = `mlops:after=${before}`;
  const named = cell.tags.some(
    t => t === tag || t === `prev:${before}` || (t.startsWith('mlops:after=') && t.slice(12).split(',').includes(before))
  );
  if (named) {
    return cell;
  }
  const prepare = cell.tags.indexOf(PREPARE_TAG);
  const tags = [...cell.tags];
  tags.splice(prepare < 0 ? tags.length : prepare, 0, tag);
  return { source: cell.source, tags };
}

/** The words after `option` on a magic line, up to the next option. */
function optionWords(words: string[], option: string): string[] {
  const found: string[] = [];
  words.forEach((word, at) => {
    if (word === option) {
      for (let i = at + 1; i < words.length && !words[i].startsWith('--'); i++) {
        found.push(words[i]);
      }
    }
  });
  return found;
}

/** The magic line's words without `option` and the words it takes. */
function withoutOption(words: string[], option: string): string[] {
  const kept: string[] = [];
  for (let i = 0; i < words.length; i++) {
    if (words[i] === option) {
      while (i + 1 < words.length && !words[i + 1].startsWith('--')) {
        i++;
      }
    } else {
      kept.push(words[i]);
    }
  }
  return kept;
}

/** The steps a step cell runs after (`--after A B`, `mlops:after=A`, Kale's `prev:A`). */
export function afterSteps(cell: ICellText): string[] {
  const magic = magicLine(cell.source);
  if (magic) {
    return optionWords(magic.args.split(/\s+/).filter(Boolean), '--after');
  }
  return [
    ...new Set(
      cell.tags.flatMap(t =>
        t.startsWith('mlops:after=') ? t.slice('mlops:after='.length).split(',') : t.startsWith('prev:') ? [t.slice(5)] : []
      )
    )
  ].filter(Boolean);
}

/** The step cell running after exactly `steps`, in the spelling it uses; null for a cell
 * that does not start a step. */
export function withAfterSteps(cell: ICellText, steps: string[]): ICellText | null {
  const mark = readMark(cell.source, cell.tags);
  if (!mark || mark.role !== 'step') {
    return null;
  }
  const magic = magicLine(cell.source);
  if (magic) {
    const words = withoutOption(magic.args.split(/\s+/).filter(Boolean), '--after');
    if (steps.length) {
      const prepare = words.indexOf(PREPARE_OPTION);
      words.splice(prepare < 0 ? words.length : prepare, 0, '--after', ...steps);
    }
    return { source: `${magic.percent}mlops ${words.join(' ')}\n${magic.rest}`, tags: cell.tags };
  }
  const others = cell.tags.filter(t => !t.startsWith('mlops:after=') && !t.startsWith('prev:'));
  const prepare = others.indexOf(PREPARE_TAG);
  others.splice(prepare < 0 ? others.length : prepare, 0, ...steps.map(s => `mlops:after=${s}`));
  return { source: cell.source, tags: others };
}

/** A metrics cell's thresholds as written on its magic line: `{min: ['f1=0.5'], max: [...]}`;
 * null for a cell not marked `%%mlops metrics` (tags carry no thresholds). */
export function thresholds(cell: ICellText): { min: string[]; max: string[] } | null {
  const magic = magicLine(cell.source);
  const words = magic ? magic.args.split(/\s+/).filter(Boolean) : [];
  if (words[0] !== 'metrics') {
    return null;
  }
  return { min: optionWords(words, '--min'), max: optionWords(words, '--max') };
}

/** The metrics cell with its thresholds set to `min` and `max` (`NAME=VALUE` each); null
 * for a cell not marked `%%mlops metrics`. */
export function withThresholds(cell: ICellText, min: string[], max: string[]): ICellText | null {
  const magic = magicLine(cell.source);
  if (!magic || !thresholds(cell)) {
    return null;
  }
  const words = withoutOption(withoutOption(magic.args.split(/\s+/).filter(Boolean), '--min'), '--max');
  words.push(...(min.length ? ['--min', ...min] : []), ...(max.length ? ['--max', ...max] : []));
  return { source: `${magic.percent}mlops ${words.join(' ')}\n${magic.rest}`, tags: cell.tags };
}

/** What is wrong with a threshold `NAME=VALUE` (roles._threshold), or null. */
export function thresholdProblem(text: string): string | null {
  const [name, value] = text.split('=', 2);
  if (value === undefined || !/^[^\W\d]\w*$/u.test(name) || value.trim() === '' || !Number.isFinite(Number(value))) {
    return `\`${text}\` is not NAME=NUMBER, e.g. f1=0.5`;
  }
  return null;
}

/** The names the cell's code assigns at top level (`NAME = ...`), in order, once each: what a
 * data, model or metrics mark may name (the analysis does not send each cell's names). */
export function assignedNames(source: string): string[] {
  const code = magicLine(source)?.rest ?? source;
  return [...new Set(assignments(code).map(([name]) => name))];
}

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
}

/** The cell's mark: its magic line first (the reader merges a tag saying the same), else its tags. */
export function readMark(source: string, tags: string[]): ICellMark | null {
  const magic = magicLine(source);
  if (magic) {
    const [role = '', ...rest] = magic.args.split(/\s+/).filter(Boolean);
    const args: string[] = [];
    for (const word of rest) {
      if (word.startsWith('--')) {
        break;
      }
      args.push(word);
    }
    return { spelling: 'magic', role, args };
  }
  for (const tag of tags) {
    if (tag.startsWith('mlops:')) {
      const [role, arg = ''] = tag.slice('mlops:'.length).split('=', 2);
      if (role === 'after') {
        continue;
      }
      const args = tags
        .filter(t => t.startsWith(`mlops:${role}=`))
        .flatMap(t => t.slice(`mlops:${role}=`.length).split(','))
        .filter(Boolean);
      return { spelling: 'tag', role, args: args.length ? args : arg ? [arg] : [] };
    }
  }
  for (const tag of tags) {
    if (tag.startsWith('step:') || tag.startsWith('block:')) {
      const name = tag.slice(tag.indexOf(':') + 1);
      if (name) {
        return { spelling: 'tag', role: 'step', args: [name] };
      }
    } else if (tag in FOREIGN_TAGS) {
      return { spelling: 'tag', role: FOREIGN_TAGS[tag], args: [] };
    }
  }
  return null;
}

/** A role to write, with its step name or variables. */
export interface IMarkRequest {
  role: Role;
  /** The step's name (role step). */
  name?: string;
  /** The variables of data, model or metrics; none keeps those the cell names already. */
  variables?: string[];
}

/** A cell's source and tags. */
export interface ICellText {
  source: string;
  tags: string[];
}

/** The `%%mlops` arguments for `request`; a cell of the same role keeps its options
 * (`--after`, thresholds) and, unless new ones are given, its variables. */
function magicArgs(request: IMarkRequest, old: IMagicLine | null): string {
  const words = old ? old.args.split(/\s+/).filter(Boolean) : [];
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
  return [request.role, ...args, ...options].join(' ');
}

/** The `mlops:` tags for `request`; a step keeps its `after` tags (and Kale's `prev:`). */
function roleTags(request: IMarkRequest, tags: string[]): string[] {
  const role = request.role;
  if (role === 'step') {
    const after = tags
      .filter(t => t.startsWith('mlops:after=') || t.startsWith('prev:'))
      .map(t => (t.startsWith('prev:') ? `mlops:after=${t.slice('prev:'.length)}` : t));
    return [`mlops:step=${request.name ?? ''}`, ...new Set(after)];
  }
  const prefix = `mlops:${role}=`;
  const variables = request.variables?.length
    ? request.variables
    : tags.filter(t => t.startsWith(prefix)).flatMap(t => t.slice(prefix.length).split(','));
  // one tag per name: nbformat forbids commas in tags (roles.mark_to_tags)
  return variables.length ? variables.filter(Boolean).map(v => `mlops:${role}=${v}`) : [`mlops:${role}`];
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
  if (magic) {
    const source =
      request.role === 'none'
        ? magic.rest
        : `${magic.percent}mlops ${magicArgs(request, magic)}\n${magic.rest}`;
    return { source, tags: others };
  }
  const tagged = cell.tags.some(isRoleTag);
  if (request.role === 'none') {
    return { source: cell.source, tags: others };
  }
  if (tagged || spelling === 'tag') {
    return { source: cell.source, tags: [...others, ...roleTags(request, cell.tags)] };
  }
  return { source: `%%mlops ${magicArgs(request, null)}\n${cell.source}`, tags: others };
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

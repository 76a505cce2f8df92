import { ICellModel } from '@jupyterlab/cells';

/**
 * A cell role: one of those the server lists with each analysis (`IAnalysis.roles`, the
 * library's own list), or "none", which clears the role.
 */
export type Role = string;

const STEP_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Why `name` is not a valid step name, or null when it is. */
export function stepNameProblem(name: string): string | null {
  if (!name) {
    return 'Type a step name first, e.g. train.';
  }
  if (!STEP_NAME.test(name)) {
    return `"${name}" is not a step name: use letters, digits and _ (e.g. train_model).`;
  }
  return null;
}

/**
 * The cell's tags with its role replaced: every `mlops:` tag and papermill's `parameters`
 * go, the new role's tag comes in (one tag per name, as jupyter_mlops.notebook.roles.mark_to_tags).
 */
export function tagsWithRole(tags: string[], role: Role, stepName = ''): string[] {
  const kept = tags.filter(t => !t.startsWith('mlops:') && t !== 'parameters');
  if (role === 'none') {
    return kept;
  }
  if (role === 'step') {
    return [...kept, `mlops:step=${stepName}`];
  }
  return [...kept, `mlops:${role}`];
}

/** Write the role into the cell's metadata tags. */
export function setCellRole(cell: ICellModel, role: Role, stepName = ''): void {
  const current = cell.getMetadata('tags');
  const tags = Array.isArray(current) ? (current as string[]) : [];
  const next = tagsWithRole(tags, role, stepName);
  if (next.length) {
    cell.setMetadata('tags', next);
  } else {
    cell.deleteMetadata('tags');
  }
}

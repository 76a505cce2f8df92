import { IStep } from './types';

export const BOX_W = 96;
export const BOX_H = 24;
const GAP_X = 16;
const GAP_Y = 22;
/** The longest name a box shows whole; a longer one is cut, its tooltip says it all. */
export const MAX_CHARS = 14;

/** Where each step's box is, and the picture's size. */
export interface IGraphLayout {
  width: number;
  height: number;
  where: Map<string, { x: number; y: number }>;
}

/** Each step's layer: the length of the longest path of steps before it. */
function layers(steps: IStep[]): Map<string, number> {
  const layer = new Map<string, number>();
  const visit = (step: IStep, seen: Set<string>): number => {
    const known = layer.get(step.name);
    if (known !== undefined) {
      return known;
    }
    if (seen.has(step.name)) {
      return 0; // a cycle: the analysis reports it; draw something anyway
    }
    seen.add(step.name);
    let depth = 0;
    for (const before of step.after) {
      const other = steps.find(s => s.name === before);
      if (other) {
        depth = Math.max(depth, visit(other, seen) + 1);
      }
    }
    layer.set(step.name, depth);
    return depth;
  };
  steps.forEach(step => visit(step, new Set()));
  return layer;
}

/** Steps as boxes in layers, each layer centred. */
export function layout(steps: IStep[]): IGraphLayout {
  const layer = layers(steps);
  const rows: string[][] = [];
  for (const step of steps) {
    const row = layer.get(step.name) ?? 0;
    (rows[row] = rows[row] ?? []).push(step.name);
  }
  const width = Math.max(...rows.map(r => (r ?? []).length)) * (BOX_W + GAP_X) + GAP_X;
  const height = rows.length * (BOX_H + GAP_Y) + GAP_Y - 8;
  const where = new Map<string, { x: number; y: number }>();
  rows.forEach((names, r) => {
    const offset = (width - names.length * (BOX_W + GAP_X) + GAP_X) / 2;
    names.forEach((name, i) =>
      where.set(name, { x: offset + i * (BOX_W + GAP_X), y: GAP_Y / 2 + r * (BOX_H + GAP_Y) })
    );
  });
  return { width, height, where };
}

/** A box's label: the whole name, or its start and an ellipsis (the tooltip has it all). */
export function label(name: string): string {
  return name.length > MAX_CHARS ? name.slice(0, MAX_CHARS - 1) + '…' : name;
}

/** A step's tooltip: its whole name, its state in a run, what flows in and out. */
export function describe(step: IStep, state: string): string {
  const inputs = Object.entries(step.inputs).map(([name, from]) => `${name} ← ${from}`);
  const outputs = step.outputs.map(o => (o.role === 'value' ? o.name : `${o.name} (${o.role})`));
  return [
    `${step.name}${state === 'idle' ? '' : `: ${state}`}`,
    inputs.length ? `in: ${inputs.join(', ')}` : 'in: nothing',
    outputs.length ? `out: ${outputs.join(', ')}` : 'out: nothing'
  ].join('\n');
}

import * as React from 'react';

import { IStep } from '../types';

const BOX_W = 96;
const BOX_H = 24;
const GAP_X = 16;
const GAP_Y = 22;
/** The longest name a box shows whole; a longer one is cut, its tooltip says it all. */
const MAX_CHARS = 14;

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

/** A picture of the step graph: steps as boxes in layers, edges as lines. */
export function StepGraph(props: {
  steps: IStep[];
  status?: Record<string, string>;
}): JSX.Element | null {
  const { steps, status = {} } = props;
  if (!steps.length) {
    return null;
  }
  const layer = layers(steps);
  const rows: string[][] = [];
  for (const step of steps) {
    const row = layer.get(step.name) ?? 0;
    (rows[row] = rows[row] ?? []).push(step.name);
  }
  const width = Math.max(...rows.map(r => r.length)) * (BOX_W + GAP_X) + GAP_X;
  const height = rows.length * (BOX_H + GAP_Y) + GAP_Y - 8;
  const where = new Map<string, { x: number; y: number }>();
  rows.forEach((names, r) => {
    const offset = (width - names.length * (BOX_W + GAP_X) + GAP_X) / 2;
    names.forEach((name, i) =>
      where.set(name, { x: offset + i * (BOX_W + GAP_X), y: GAP_Y / 2 + r * (BOX_H + GAP_Y) })
    );
  });
  return (
    <svg
      className="jp-mlops-graph"
      width={width}
      height={height}
      viewBox={`0 0 ${width} ${height}`}
      role="img"
      aria-label="step graph"
    >
      {steps.flatMap(step =>
        step.after.map(before => {
          const a = where.get(before);
          const b = where.get(step.name);
          if (!a || !b) {
            return null;
          }
          return (
            <line
              key={`${before}->${step.name}`}
              x1={a.x + BOX_W / 2}
              y1={a.y + BOX_H}
              x2={b.x + BOX_W / 2}
              y2={b.y}
              className="jp-mlops-graph-edge"
            />
          );
        })
      )}
      {steps.map(step => {
        const p = where.get(step.name)!;
        const state = status[step.name] ?? 'idle';
        const inputs = Object.keys(step.inputs);
        const outputs = step.outputs.map(o => o.name);
        return (
          <g
            key={step.name}
            className={`jp-mlops-graph-node jp-mlops-status-${state.replace(/\s+/g, '-')}`}
            data-step={step.name}
          >
            <title>
              {[
                `${step.name}${state === 'idle' ? '' : `: ${state}`}`,
                inputs.length ? `in: ${inputs.join(', ')}` : '',
                outputs.length ? `out: ${outputs.join(', ')}` : ''
              ]
                .filter(Boolean)
                .join('\n')}
            </title>
            <rect x={p.x} y={p.y} width={BOX_W} height={BOX_H} rx={4} />
            <text x={p.x + BOX_W / 2} y={p.y + BOX_H / 2 + 4} textAnchor="middle">
              {step.name.length > MAX_CHARS ? step.name.slice(0, MAX_CHARS - 1) + '…' : step.name}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

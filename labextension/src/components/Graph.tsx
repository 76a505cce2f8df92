import * as React from 'react';

import { BOX_H, BOX_W, describe, label, layout } from '../graphlayout';
import { IStep } from '../types';

/** A drag from one step's box: where it started and where the pointer is now. */
interface IDrag {
  from: string;
  x: number;
  y: number;
  moved: boolean;
}

/** The point of a pointer event in the picture's own coordinates (it may be scaled down). */
function svgPoint(svg: SVGSVGElement | null, event: React.PointerEvent): { x: number; y: number } {
  const matrix = svg?.getScreenCTM();
  if (!svg || !matrix) {
    return { x: 0, y: 0 };
  }
  const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
  return { x: point.x, y: point.y };
}

/** The step under the pointer (a drag ends wherever the pointer was let go). */
function stepAt(event: React.PointerEvent): string | null {
  const element = document.elementFromPoint(event.clientX, event.clientY);
  return element?.closest('.jp-mlops-graph-node')?.getAttribute('data-step') ?? null;
}

/**
 * A picture of the step graph you can work with: steps as boxes in layers, edges as lines,
 * run status as outlines. Click a step to select its cells; hover for its inputs and outputs;
 * drag from one step to another to make the second run after the first.
 */
export function StepGraph(props: {
  steps: IStep[];
  status?: Record<string, string>;
  /** Select the step's cells in the notebook; why not, or null. */
  onSelect?: (step: IStep) => string | null;
  /** Make step `to` run after step `from`; why not (a cycle), or null. */
  onConnect?: (from: string, to: string) => string | null;
}): JSX.Element | null {
  const { steps, status = {} } = props;
  const svg = React.useRef<SVGSVGElement>(null);
  const [drag, setDrag] = React.useState<IDrag | null>(null);
  const [hover, setHover] = React.useState<string | null>(null);
  const [problem, setProblem] = React.useState<string | null>(null);
  if (!steps.length) {
    return null;
  }
  const { width, height, where } = layout(steps);
  const byName = new Map(steps.map(s => [s.name, s]));
  const select = (name: string): void => {
    const step = byName.get(name);
    setProblem(step && props.onSelect ? props.onSelect(step) : null);
  };
  const release = (event: React.PointerEvent): void => {
    if (!drag) {
      return;
    }
    setDrag(null);
    const target = stepAt(event);
    if (!drag.moved || target === drag.from) {
      select(drag.from);
    } else if (target && props.onConnect) {
      setProblem(props.onConnect(drag.from, target));
    }
  };
  const start = drag ? where.get(drag.from) : undefined;
  const shown = hover ? byName.get(hover) : undefined;
  return (
    <div className="jp-mlops-graph-box">
      <svg
        ref={svg}
        className="jp-mlops-graph"
        width={width}
        height={height}
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-label="step graph"
        onPointerMove={event => {
          if (drag) {
            const p = svgPoint(svg.current, event);
            const moved = drag.moved || Math.hypot(p.x - drag.x, p.y - drag.y) > 4;
            setDrag({ ...drag, x: p.x, y: p.y, moved });
          }
        }}
        onPointerUp={release}
        onPointerLeave={() => setDrag(null)}
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
                data-from={before}
                data-to={step.name}
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
          return (
            <g
              key={step.name}
              className={`jp-mlops-graph-node jp-mlops-status-${state.replace(/\s+/g, '-')}`}
              data-step={step.name}
              tabIndex={0}
              onPointerDown={event => {
                event.preventDefault(); // no text selection while dragging
                const point = svgPoint(svg.current, event);
                setDrag({ from: step.name, ...point, moved: false });
              }}
              onPointerEnter={() => setHover(step.name)}
              onPointerLeave={() => setHover(h => (h === step.name ? null : h))}
              onKeyDown={event => event.key === 'Enter' && select(step.name)}
            >
              <title>{describe(step, state)}</title>
              <rect x={p.x} y={p.y} width={BOX_W} height={BOX_H} rx={4} />
              <text x={p.x + BOX_W / 2} y={p.y + BOX_H / 2 + 4} textAnchor="middle">
                {label(step.name)}
              </text>
            </g>
          );
        })}
        {drag?.moved && start && (
          <line
            className="jp-mlops-graph-drag"
            x1={start.x + BOX_W / 2}
            y1={start.y + BOX_H}
            x2={drag.x}
            y2={drag.y}
          />
        )}
      </svg>
      {shown && (
        <div className="jp-mlops-graph-info" data-step={shown.name}>
          {describe(shown, status[shown.name] ?? 'idle')
            .split('\n')
            .map(line => (
              <div key={line}>{line}</div>
            ))}
        </div>
      )}
      {problem && <div className="jp-mlops-error jp-mlops-graph-problem">{problem}</div>}
      {props.onConnect && steps.length > 1 && (
        <p className="jp-mlops-hint jp-mlops-graph-hint">
          Click a step to select its cells; drag from one step to another to run it after.
        </p>
      )}
    </div>
  );
}

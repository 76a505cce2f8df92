import * as React from 'react';

import { IAnalysis, IProblem } from '../types';

/** Steps with their cells, the variables flowing between them, and their parameters. */
export function Steps(props: {
  analysis: IAnalysis;
  onCell: (cell: number) => void;
}): JSX.Element {
  const { pipeline } = props.analysis;
  if (!pipeline.steps.length) {
    return <p className="jp-mlops-empty">No steps yet: mark a cell as a step below.</p>;
  }
  return (
    <ol className="jp-mlops-steps">
      {pipeline.steps.map(step => (
        <li key={step.name} className="jp-mlops-step" data-step={step.name}>
          <span className="jp-mlops-step-name">{step.name}</span>{' '}
          <span className="jp-mlops-cells">
            {step.cells.map(n => (
              <button
                key={n}
                className="jp-mlops-link"
                title={`Scroll to cell ${n}`}
                onClick={() => props.onCell(n)}
              >
                [{n}]
              </button>
            ))}
          </span>
          {Object.keys(step.inputs).length > 0 && (
            <div className="jp-mlops-flow">
              in:{' '}
              {Object.entries(step.inputs)
                .map(([name, from]) => `${name} ← ${from}`)
                .join(', ')}
            </div>
          )}
          {step.outputs.length > 0 && (
            <div className="jp-mlops-flow">
              out: {step.outputs.map(o => (o.role === 'value' ? o.name : `${o.name} (${o.role})`)).join(', ')}
            </div>
          )}
          {step.parameters.length > 0 && (
            <div className="jp-mlops-flow">params: {step.parameters.join(', ')}</div>
          )}
        </li>
      ))}
    </ol>
  );
}

/** What the kernel captured: data profiles, models and metrics. */
export function Captured(props: { analysis: IAnalysis }): JSX.Element {
  const { data, models, metrics } = props.analysis.captured;
  const rows: JSX.Element[] = [];
  for (const [key, d] of Object.entries(data)) {
    rows.push(
      <li key={`d-${key}`}>
        data <b>{d.variable}</b>: {d.rows ?? '?'} rows × {d.columns} columns
      </li>
    );
  }
  for (const [name, m] of Object.entries(models)) {
    rows.push(
      <li key={`m-${name}`}>
        model <b>{name}</b>: {m.class}
        {m.fitted ? '' : ' (not fitted)'}
      </li>
    );
  }
  for (const [name, m] of Object.entries(metrics)) {
    const line = m.min !== null && m.min !== undefined ? ` (≥ ${fmt(m.min)})` : m.max !== null && m.max !== undefined ? ` (≤ ${fmt(m.max)})` : '';
    rows.push(
      <li key={`x-${name}`}>
        metric <b>{name}</b> = {fmt(m.value)}
        {line}
      </li>
    );
  }
  if (!rows.length) {
    return (
      <p className="jp-mlops-empty">
        Nothing captured yet: run the marked cells with <code>%load_ext jupyter_mlops</code>.
      </p>
    );
  }
  return <ul className="jp-mlops-captured">{rows}</ul>;
}

/** Problems, each next to the cell it concerns. */
export function Problems(props: {
  problems: IProblem[];
  onCell: (cell: number) => void;
}): JSX.Element | null {
  if (!props.problems.length) {
    return null;
  }
  return (
    <ul className="jp-mlops-problems">
      {props.problems.map((p, i) => (
        <li key={i} className={`jp-mlops-problem jp-mlops-${p.severity}`}>
          {p.cell !== null && (
            <button className="jp-mlops-link" onClick={() => props.onCell(p.cell!)}>
              cell {p.cell}
            </button>
          )}{' '}
          {p.message}
        </li>
      ))}
    </ul>
  );
}

/** A number in a few digits. */
export function fmt(value: unknown): string {
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  }
  return String(value);
}

import { Button } from '@jupyterlab/ui-components';
import * as React from 'react';

import { IAnalysis, IProblem } from '../types';

/** The notebook's cells as the panel links them: the analysis numbers the saved cells;
 * `label` is where such a cell is on screen now, `onCell` goes to it. */
export interface ICellLinks {
  label: (cell: number) => number;
  onCell: (cell: number) => void;
}

/** A link to a cell, labelled with its number on screen. */
export function CellLink(props: { cell: number; links: ICellLinks; brackets?: boolean }): JSX.Element {
  const n = props.links.label(props.cell);
  return (
    <button
      className="jp-mlops-link"
      data-cell={n}
      title={`Go to cell ${n}`}
      onClick={() => props.links.onCell(props.cell)}
    >
      {props.brackets ? `[${n}]` : `cell ${n}`}
    </button>
  );
}

/** Steps with their cells, the variables flowing between them, and their parameters. */
export function Steps(props: { analysis: IAnalysis; links: ICellLinks }): JSX.Element {
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
              <CellLink key={n} cell={n} links={props.links} brackets />
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

/** How raw records are prepared for the model (the prepare cells), or which cells look
 * like preparation when none is marked, with a button that marks them prepare. */
export function Inference(props: {
  analysis: IAnalysis;
  links: ICellLinks;
  /** Mark the suggested cells prepare; why not, or null. */
  onMarkPrepare: (cells: number[]) => string | null;
}): JSX.Element | null {
  const [problem, setProblem] = React.useState<string | null>(null);
  const { inference } = props.analysis.pipeline;
  const cells = inference ? inference.cells.map(c => c.cell) : props.analysis.suggested_prepare;
  if (!cells.length) {
    return null;
  }
  const links = cells.map((n, i) => (
    <React.Fragment key={n}>
      {i > 0 && ' '}
      <CellLink cell={n} links={props.links} brackets />
    </React.Fragment>
  ));
  return inference ? (
    <div className="jp-mlops-flow jp-mlops-inference">
      raw records: <code>{inference.input.variable}</code> of {inference.input.step}, prepared by{' '}
      {links} for serve and predict
    </div>
  ) : (
    <div className="jp-mlops-flow jp-mlops-inference jp-mlops-suggested-prepare">
      {links} look like preparation: mark them <code>prepare</code> so that serve and predict
      take raw records
      <div className="jp-mlops-buttons">
        <Button small className="jp-mlops-mark-prepare" onClick={() => setProblem(props.onMarkPrepare(cells))}>
          Mark as prepare
        </Button>
      </div>
      {problem && <div className="jp-mlops-error">{problem}</div>}
    </div>
  );
}

/** What the kernel captured: data profiles, models and metrics; and captures of
 * tag-marked cells that failed, next to their cells. */
export function Captured(props: {
  analysis: IAnalysis;
  problems: Record<string, string[]>;
  links: ICellLinks;
}): JSX.Element {
  const { data, models, metrics } = props.analysis.captured;
  const failed = Object.entries(props.problems).map(([id, lines]) => {
    const cell = props.analysis.cells.find(c => c.id === id);
    return (
      <li key={id} className="jp-mlops-capture-problem">
        {cell && <CellLink cell={cell.number} links={props.links} />} {lines.join(' ')}
      </li>
    );
  });
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
  return (
    <>
      {failed.length > 0 && <ul className="jp-mlops-problems jp-mlops-warning">{failed}</ul>}
      {rows.length ? (
        <ul className="jp-mlops-captured">{rows}</ul>
      ) : (
        <p className="jp-mlops-empty">Nothing captured yet: run the data, model and metrics cells.</p>
      )}
    </>
  );
}

/** Problems, each next to the cell it concerns. */
export function Problems(props: { problems: IProblem[]; links: ICellLinks }): JSX.Element | null {
  if (!props.problems.length) {
    return null;
  }
  return (
    <ul className="jp-mlops-problems">
      {props.problems.map((p, i) => (
        <li key={i} className={`jp-mlops-problem jp-mlops-${p.severity}`}>
          {p.cell !== null && <CellLink cell={p.cell} links={props.links} />}{' '}
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

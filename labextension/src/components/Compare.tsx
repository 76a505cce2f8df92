import * as React from 'react';

import { ICompared, IRunComparison } from '../types';

/** A value in a few characters: a number in 4 significant digits (0.3, not 0.3000), a
 * text as it is, other values as JSON. */
export function compact(value: unknown): string {
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** A value of one run, or a dash where the run has none; a hash cut to 8 characters. */
function shown(row: ICompared, side: 'a' | 'b', hash: boolean): string {
  if (!(side === 'a' ? row.in_a : row.in_b)) {
    return '–';
  }
  const text = compact(row[side]);
  return hash ? text.slice(0, 8) : text;
}

/** A metric's change from A to B, signed: ` (+0.0123)`. */
function difference(row: ICompared): string {
  if (row.difference === null || row.difference === 0) {
    return '';
  }
  return ` (${row.difference > 0 ? '+' : '−'}${compact(Math.abs(row.difference))})`;
}

/** One section of the comparison; of data and outputs (hashes), the changed rows only. */
function Section(props: { title: string; rows: ICompared[]; kind: 'value' | 'metric' | 'hash' }): JSX.Element | null {
  const hash = props.kind === 'hash';
  const rows = hash ? props.rows.filter(r => r.changed) : props.rows;
  const same = props.rows.length - rows.length;
  if (!props.rows.length) {
    return null;
  }
  return (
    <tbody className="jp-mlops-compare-section" data-section={props.title}>
      <tr>
        <th colSpan={3}>
          {props.title}
          {same > 0 && <span className="jp-mlops-hint"> ({same} unchanged)</span>}
        </th>
      </tr>
      {rows.map(row => (
        <tr key={row.name} data-name={row.name} className={row.changed ? 'jp-mlops-changed' : undefined}>
          <td title={row.name}>{row.name}</td>
          <td className="jp-mlops-compare-a">{shown(row, 'a', hash)}</td>
          <td className="jp-mlops-compare-b">
            {shown(row, 'b', hash)}
            {props.kind === 'metric' && difference(row)}
          </td>
        </tr>
      ))}
    </tbody>
  );
}

/** Two runs side by side (GET /mlops/runs/A/diff/B): parameters, metrics with their change,
 * and the data read and outputs made that differ; changed rows stand out. */
export function RunComparison(props: { comparison: IRunComparison; onClose: () => void }): JSX.Element {
  const c = props.comparison;
  return (
    <div className="jp-mlops-comparison" data-a={c.a} data-b={c.b}>
      <div className="jp-mlops-comparison-head">
        <span>
          <b>A</b> <code title={c.a}>{c.a}</code>
          <br />
          <b>B</b> <code title={c.b}>{c.b}</code>
        </span>
        <button className="jp-mlops-link jp-mlops-comparison-close" title="Close the comparison" onClick={props.onClose}>
          ×
        </button>
      </div>
      <table className="jp-mlops-compare-table">
        <colgroup>
          <col className="jp-mlops-col-name" />
          <col />
          <col />
        </colgroup>
        <thead>
          <tr>
            <th />
            <th title={c.a}>A</th>
            <th title={c.b}>B</th>
          </tr>
        </thead>
        <Section title="parameters" rows={c.parameters} kind="value" />
        <Section title="metrics" rows={c.metrics} kind="metric" />
        <Section title="data" rows={c.files} kind="hash" />
        <Section title="outputs" rows={c.outputs} kind="hash" />
      </table>
    </div>
  );
}

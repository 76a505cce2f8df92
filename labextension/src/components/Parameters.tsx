import * as React from 'react';

import { IParameter } from '../types';

/** A parameter's default as its input shows it. */
export function display(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** The values the user changed from the pipeline's defaults, as typed (the server types them). */
export function changedValues(
  parameters: IParameter[],
  values: Record<string, string>
): Record<string, string> {
  const changed: Record<string, string> = {};
  for (const p of parameters) {
    if (values[p.name] !== undefined && values[p.name] !== display(p.default)) {
      changed[p.name] = values[p.name];
    }
  }
  return changed;
}

/** One input per pipeline parameter, prefilled with its default; `label` prefixes each
 * input's aria-label (`parameter NAME`), so two forms on the panel stay apart. */
export function ParameterInputs(props: {
  parameters: IParameter[];
  values: Record<string, string>;
  onChange: (values: Record<string, string>) => void;
  label: string;
}): JSX.Element | null {
  const { parameters, values } = props;
  if (!parameters.length) {
    return null;
  }
  return (
    <table className="jp-mlops-params">
      <tbody>
        {parameters.map(p => (
          <tr key={p.name} title={p.help ?? ''}>
            <td>{p.name}</td>
            <td>
              <input
                type="text"
                aria-label={`${props.label} ${p.name}`}
                value={values[p.name] ?? display(p.default)}
                onChange={e => props.onChange({ ...values, [p.name]: e.target.value })}
              />
            </td>
            <td className="jp-mlops-type">{p.type}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

import { Button } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ICellMark, PREPARE_WITH, Role, stepNameProblem } from '../marks';

/** One role button; pressed when the active cell has that role. */
function RoleButton(props: {
  role: Role;
  label: string;
  pressed: boolean;
  disabled: boolean;
  onClick: () => void;
}): JSX.Element {
  return (
    <Button
      small
      minimal
      className={`jp-mlops-role${props.pressed ? ' jp-mod-active' : ''}`}
      data-role={props.role}
      aria-pressed={props.pressed}
      disabled={props.disabled}
      onClick={props.onClick}
    >
      {props.label}
    </Button>
  );
}

/** A step or data cell's prepare flag (`--prepare`, or the tag `mlops:prepare`). */
function PrepareToggle(props: { mark: ICellMark; onPrepare: (on: boolean) => void }): JSX.Element | null {
  if (props.mark.role === 'prepare' || !PREPARE_WITH.has(props.mark.role)) {
    return null;
  }
  return (
    <label className="jp-mlops-prepare-toggle" title="The cell prepares data the same way for training and for new records">
      <input type="checkbox" checked={props.mark.prepare} onChange={e => props.onPrepare(e.target.checked)} />{' '}
      prepares records for serve and predict
    </label>
  );
}

/** Buttons that set the active cell's role, in either spelling (see marks.ts). */
export function RoleButtons(props: {
  /** The roles the library knows (from the analysis); none until it arrives. */
  roles: string[];
  /** The active code cell's number on screen and its mark, or null. */
  active: { number: number; mark: ICellMark | null } | null;
  onRole: (role: Role, stepName: string) => string | null;
  /** Set the active step or data cell's prepare flag; why not, or null. */
  onPrepare: (on: boolean) => string | null;
}): JSX.Element {
  const [stepName, setStepName] = React.useState('');
  const [problem, setProblem] = React.useState<string | null>(null);
  const { active } = props;
  const current = active?.mark?.role ?? null;
  const choose = (role: Role): void => {
    const name = stepName.trim() || (role === 'step' && current === 'step' ? active?.mark?.args[0] ?? '' : '');
    if (role === 'step') {
      const why = stepNameProblem(name);
      if (why) {
        setProblem(why);
        return;
      }
    }
    setProblem(props.onRole(role, name));
  };
  const disabled = active === null;
  return (
    <div className="jp-mlops-roles">
      <div className="jp-mlops-hint">
        {active === null
          ? 'Select a code cell to mark it.'
          : `Mark cell ${active.number}${active.mark ? ` (${active.mark.role}, ${active.mark.spelling})` : ''} as:`}
      </div>
      <div className="jp-mlops-step-input">
        <input
          type="text"
          className="jp-mod-styled"
          placeholder={current === 'step' ? active?.mark?.args[0] ?? 'step name' : 'step name'}
          aria-label="step name"
          value={stepName}
          onChange={e => setStepName(e.target.value)}
        />
        <RoleButton role="step" label="step" pressed={current === 'step'} disabled={disabled} onClick={() => choose('step')} />
      </div>
      <div className="jp-mlops-role-row">
        {props.roles
          .filter(r => r !== 'step')
          .map(role => (
            <RoleButton
              key={role}
              role={role}
              label={role}
              pressed={current === role}
              disabled={disabled}
              onClick={() => choose(role)}
            />
          ))}
        <RoleButton role="none" label="clear" pressed={false} disabled={disabled || !current} onClick={() => choose('none')} />
      </div>
      {active?.mark && <PrepareToggle mark={active.mark} onPrepare={on => setProblem(props.onPrepare(on))} />}
      {problem && <div className="jp-mlops-error">{problem}</div>}
    </div>
  );
}

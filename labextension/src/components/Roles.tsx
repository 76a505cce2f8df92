import * as React from 'react';

import { Role, stepNameProblem } from '../tags';

/** Buttons that set the active cell's role by writing its `mlops:` tag. */
export function RoleButtons(props: {
  /** The roles the library knows (from the analysis); none until it arrives. */
  roles: string[];
  activeCell: number | null;
  onRole: (role: Role, stepName: string) => string | null;
}): JSX.Element {
  const [stepName, setStepName] = React.useState('');
  const [problem, setProblem] = React.useState<string | null>(null);
  const choose = (role: Role): void => {
    if (role === 'step') {
      const why = stepNameProblem(stepName.trim());
      if (why) {
        setProblem(why);
        return;
      }
    }
    setProblem(props.onRole(role, stepName.trim()));
  };
  return (
    <div className="jp-mlops-roles">
      <div className="jp-mlops-hint">
        {props.activeCell === null ? 'Select a cell to mark it.' : `Mark cell ${props.activeCell} as:`}
      </div>
      <div className="jp-mlops-step-input">
        <input
          type="text"
          placeholder="step name"
          aria-label="step name"
          value={stepName}
          onChange={e => setStepName(e.target.value)}
        />
        <button
          className="jp-mlops-role"
          data-role="step"
          disabled={props.activeCell === null}
          onClick={() => choose('step')}
        >
          step
        </button>
      </div>
      <div className="jp-mlops-role-row">
        {props.roles.filter(r => r !== 'step').map(role => (
          <button
            key={role}
            className="jp-mlops-role"
            data-role={role}
            disabled={props.activeCell === null}
            onClick={() => choose(role)}
          >
            {role}
          </button>
        ))}
        <button
          className="jp-mlops-role"
          data-role="none"
          disabled={props.activeCell === null}
          onClick={() => choose('none')}
        >
          clear
        </button>
      </div>
      {problem && <div className="jp-mlops-error">{problem}</div>}
    </div>
  );
}

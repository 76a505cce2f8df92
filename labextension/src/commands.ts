import { JupyterFrontEnd } from '@jupyterlab/application';
import { ICommandPalette, InputDialog, showErrorMessage } from '@jupyterlab/apputils';
import { Menu } from '@lumino/widgets';

import { ICellMark, Role, stepNameProblem } from './marks';
import { SidebarModel } from './model';

/** The command ids (the palette's "jupyter-mlops" category). */
export const COMMANDS = {
  mark: 'jupyter-mlops:mark-cell',
  export: 'jupyter-mlops:export',
  run: 'jupyter-mlops:run',
  show: 'jupyter-mlops:show',
  refresh: 'jupyter-mlops:refresh'
};

const CATEGORY = 'jupyter-mlops';
const CELLS = '.jp-Notebook .jp-Cell';

/** What the commands act on. */
export interface ICommandTargets {
  model: SidebarModel;
  /** The active cell of the current notebook: its mark, or null when there is no code cell. */
  active: () => { mark: ICellMark | null } | null;
  /** Mark the active cell of the current notebook; why not, or null. */
  mark: (role: Role, stepName: string) => string | null;
  /** Show the sidebar. */
  show: () => void;
}

function markLabel(role: string, short: boolean): string {
  const name = role === 'none' ? 'clear' : role === 'step' ? 'step…' : role;
  if (short) {
    return name;
  }
  return role === 'none' ? 'Clear cell mark (jupyter-mlops)' : `Mark cell as ${name}`;
}

/** Ask for a step name (the cell's own when it is a step already). */
async function askStepName(current: string): Promise<string | null> {
  const answer = await InputDialog.getText({
    title: 'Mark cell as step',
    label: 'Step name',
    placeholder: 'train',
    text: current
  });
  if (!answer.button.accept || answer.value === null) {
    return null;
  }
  const name = answer.value.trim();
  const why = stepNameProblem(name);
  if (why) {
    void showErrorMessage('Not a step name', why);
    return null;
  }
  return name;
}

/**
 * The sidebar's commands: in the palette, and in the notebook's cell context menu ("Mark
 * cell as" for each role, Export pipeline, Run pipeline). The roles are the library's, as
 * each analysis lists them: the returned function adds those not offered yet.
 */
export function addCommands(
  app: JupyterFrontEnd,
  palette: ICommandPalette | null,
  targets: ICommandTargets
): (roles: string[]) => void {
  const { commands } = app;
  const { model } = targets;
  const ready = (): boolean => model.state.notebook !== null && !model.state.busy;
  commands.addCommand(COMMANDS.mark, {
    label: args => markLabel(String(args.role ?? ''), !!args.short),
    caption: 'Set the role of the active cell, in the spelling it uses (a %%mlops line or a tag)',
    isEnabled: () => targets.active() !== null,
    isToggled: args => targets.active()?.mark?.role === args.role,
    execute: async args => {
      const role = String(args.role ?? '');
      let name = '';
      if (role === 'step') {
        const mark = targets.active()?.mark;
        const given = await askStepName(mark?.role === 'step' ? mark.args[0] ?? '' : '');
        if (given === null) {
          return;
        }
        name = given;
      }
      const problem = targets.mark(role, name);
      if (problem) {
        void showErrorMessage('Cannot mark the cell', problem);
      }
    }
  });
  commands.addCommand(COMMANDS.export, {
    label: 'Export pipeline',
    caption: 'Save the notebook and export its pipeline folder',
    isEnabled: ready,
    execute: async () => {
      targets.show();
      await model.exportPipeline();
    }
  });
  commands.addCommand(COMMANDS.run, {
    label: 'Run pipeline',
    caption: 'Save, export and run the pipeline with its default parameters',
    isEnabled: ready,
    execute: async () => {
      targets.show();
      await model.run({});
    }
  });
  commands.addCommand(COMMANDS.show, { label: 'Show pipeline panel', execute: () => targets.show() });
  commands.addCommand(COMMANDS.refresh, {
    label: 'Analyse notebook again',
    isEnabled: () => model.state.notebook !== null,
    execute: () => model.refresh()
  });

  const submenu = new Menu({ commands });
  submenu.title.label = 'Mark cell as';
  submenu.addClass('jp-mlops-mark-menu');
  // after the notebook's own cell items, as one group
  app.contextMenu.addItem({ type: 'separator', selector: CELLS, rank: 100 });
  app.contextMenu.addItem({ type: 'submenu', submenu, selector: CELLS, rank: 101 });
  app.contextMenu.addItem({ command: COMMANDS.export, selector: CELLS, rank: 102 });
  app.contextMenu.addItem({ command: COMMANDS.run, selector: CELLS, rank: 103 });
  for (const command of [COMMANDS.export, COMMANDS.run, COMMANDS.show, COMMANDS.refresh]) {
    palette?.addItem({ command, category: CATEGORY });
  }

  const known = new Set<string>();
  const add = (role: string, at: number): void => {
    known.add(role);
    submenu.insertItem(at, { command: COMMANDS.mark, args: { role, short: true } });
    palette?.addItem({ command: COMMANDS.mark, args: { role }, category: CATEGORY });
  };
  add('none', 0); // "clear" stays last
  return (roles: string[]) => {
    roles.filter(role => !known.has(role)).forEach(role => add(role, submenu.items.length - 1));
  };
}

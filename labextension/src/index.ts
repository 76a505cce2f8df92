import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { updateBadges } from './badges';
import { updateInline } from './inline';
import { captureTaggedCells } from './capture';
import { activeCell, CellPositions, markAndSave, markPrepareAndSave, setPrepareAndSave } from './cells';
import { addCommands } from './commands';
import { followNotebooks } from './follow';
import { SidebarModel } from './model';
import { addAfterAndSave, selectStepCells } from './stepcells';
import { DEFAULT_SETTINGS, watchSettings } from './settings';
import { MlopsSidebar } from './sidebar';

const ICON = new LabIcon({
  name: 'jupyter-mlops:pipeline',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><g class="jp-icon3" fill="#616161">' +
    '<rect x="2" y="3" width="8" height="5" rx="1"/><rect x="14" y="3" width="8" height="5" rx="1"/>' +
    '<rect x="8" y="16" width="8" height="5" rx="1"/><path d="M6 8v3h12V8h1.5v4.5h-6.75V16h-1.5v-3.5H4.5V8z"/></g></svg>'
});

const PLUGIN = 'jupyter-mlops:plugin';

/** Wiring only: the sidebar, its model, settings, commands, badges and captures. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN,
  description: 'See, mark, export and run the pipeline of the active notebook.',
  autoStart: true,
  requires: [INotebookTracker, ILabShell],
  optional: [ICommandPalette, ILayoutRestorer, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    shell: ILabShell,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    registry: ISettingRegistry | null
  ) => {
    const model = new SidebarModel();
    const settings = { ...DEFAULT_SETTINGS };
    watchSettings(registry, PLUGIN, next => {
      Object.assign(settings, next);
      model.autoRefresh = next.autoRefresh;
    });
    const say = (note: string): void => model.say(note);
    const sidebar = new MlopsSidebar(model, {
      positions: () => {
        const panel = model.state.notebook;
        return panel ? new CellPositions(panel, model.state.analysis) : null;
      },
      setRole: (role, name) => {
        const panel = model.state.notebook;
        model.analyseAfterSave();
        return panel ? markAndSave(panel, { role, name }, settings.markSpelling, say) : 'Open a notebook first.';
      },
      setPrepare: on => {
        const panel = model.state.notebook;
        model.analyseAfterSave();
        return panel ? setPrepareAndSave(panel, on, settings.markSpelling, say) : 'Open a notebook first.';
      },
      markPrepare: cells => {
        const panel = model.state.notebook;
        model.analyseAfterSave();
        return panel
          ? markPrepareAndSave(panel, model.state.analysis, cells, settings.markSpelling, say)
          : 'Open a notebook first.';
      },
      activeCell: () => activeCell(model.state.notebook),
      openFile: path => void app.commands.execute('docmanager:open', { path }),
      kernels: () => Object.keys(app.serviceManager.kernelspecs.specs?.kernelspecs ?? {}).sort(),
      newNotebook: () => void app.commands.execute('notebook:create-new', {}),
      selectStep: step => {
        const panel = model.state.notebook;
        return panel ? selectStepCells(panel, model.state.analysis, step) : 'Open a notebook first.';
      },
      connectSteps: (from, to) => {
        const panel = model.state.notebook;
        const analysis = model.state.analysis;
        model.analyseAfterSave();
        return panel && analysis ? addAfterAndSave(panel, analysis, from, to, say) : 'Open a notebook first.';
      }
    });
    sidebar.title.icon = ICON;
    sidebar.title.caption = 'jupyter-mlops pipeline';
    shell.add(sidebar, 'left', { rank: 600 });
    restorer?.add(sidebar, sidebar.id);

    const addRoles = addCommands(app, palette, {
      model,
      active: () => activeCell(tracker.currentWidget),
      mark: (role, name) => {
        const panel = tracker.currentWidget;
        model.analyseAfterSave();
        return panel ? markAndSave(panel, { role, name }, settings.markSpelling, say) : 'Open a notebook first.';
      },
      show: () => shell.activateById(sidebar.id)
    });

    model.changed.connect(() => {
      const panel = model.state.notebook;
      if (panel) {
        updateBadges(panel, model.state.analysis);
        updateInline(panel, {
          // read when a control is used, not when it was built: the analysis moves on
          get analysis() {
            return model.state.analysis;
          },
          spelling: settings.markSpelling,
          say,
          saving: () => model.analyseAfterSave()
        });
      }
      addRoles(model.state.analysis?.roles ?? []);
    });
    tracker.forEach(panel => captureTaggedCells(panel, outcome => model.captured(panel, outcome)));
    tracker.widgetAdded.connect((_, panel) => captureTaggedCells(panel, outcome => model.captured(panel, outcome)));
    tracker.activeCellChanged.connect(() => sidebar.update());
    followNotebooks(tracker, model);
  }
};

export default plugin;

import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { updateBadges } from './badges';
import { SidebarModel } from './model';
import { MlopsSidebar } from './sidebar';
import { Role, setCellRole } from './tags';

const ICON = new LabIcon({
  name: 'jupyter-mlops:pipeline',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><g class="jp-icon3" fill="#616161">' +
    '<rect x="2" y="3" width="8" height="5" rx="1"/><rect x="14" y="3" width="8" height="5" rx="1"/>' +
    '<rect x="8" y="16" width="8" height="5" rx="1"/><path d="M6 8v3h12V8h1.5v4.5h-6.75V16h-1.5v-3.5H4.5V8z"/></g></svg>'
});

/** Wiring only: the sidebar, its model, the badges and the notebook tracker. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-mlops:plugin',
  description: 'See, mark, export and run the pipeline of the active notebook.',
  autoStart: true,
  requires: [INotebookTracker, ILabShell],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker, shell: ILabShell) => {
    const model = new SidebarModel();
    const current = (): NotebookPanel | null => model.state.notebook;
    const sidebar = new MlopsSidebar(model, {
      scrollToCell: (number: number) => {
        const panel = current();
        if (panel) {
          panel.content.activeCellIndex = number - 1;
          void panel.content.scrollToItem(number - 1, 'center');
        }
      },
      activeCell: () => {
        const panel = current();
        return panel && panel.content.activeCell ? panel.content.activeCellIndex + 1 : null;
      },
      setRole: (role: Role, stepName: string) => {
        const panel = current();
        const cell = panel?.content.activeCell;
        if (!panel || !cell) {
          return 'Select a cell first.';
        }
        setCellRole(cell.model, role, stepName);
        void panel.context.save(); // the analysis reads the saved file; saving refreshes it
        return null;
      },
      openFile: (path: string) => {
        void app.commands.execute('docmanager:open', { path });
      },
      kernels: () => Object.keys(app.serviceManager.kernelspecs.specs?.kernelspecs ?? {}).sort()
    });
    sidebar.title.icon = ICON;
    sidebar.title.caption = 'jupyter-mlops pipeline';
    shell.add(sidebar, 'left', { rank: 600 });

    model.changed.connect(() => {
      const panel = current();
      if (panel) {
        updateBadges(panel, model.state.analysis);
      }
    });
    const follow = (): void => {
      model.setNotebook(tracker.currentWidget);
    };
    tracker.currentChanged.connect(follow);
    tracker.activeCellChanged.connect(() => sidebar.update());
    follow();
  }
};

export default plugin;

import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

import { isStepNotebook } from './capture';
import { SidebarModel } from './model';

/**
 * The panel follows the notebook the user works in. A step notebook that a run wrote (opened
 * from the history, or from the pipeline folder) is not a source notebook: the panel stays
 * on the notebook it shows.
 */
export function followNotebooks(tracker: INotebookTracker, model: SidebarModel): void {
  const follow = async (): Promise<void> => {
    const panel = tracker.currentWidget;
    if (panel) {
      await panel.context.ready;
      if (panel !== tracker.currentWidget || panel.isDisposed || isStepNotebook(panel)) {
        return;
      }
    }
    model.setNotebook(panel);
  };
  const watch = (panel: NotebookPanel): void => {
    panel.disposed.connect(() => {
      if (model.state.notebook === panel) {
        model.setNotebook(null);
        void follow();
      }
    });
  };
  tracker.forEach(watch);
  tracker.widgetAdded.connect((_, panel) => watch(panel));
  tracker.currentChanged.connect(() => void follow());
  void follow();
}

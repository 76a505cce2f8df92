import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { Spelling } from './marks';

/** The user's settings of the sidebar (schema/plugin.json). */
export interface IMlopsSettings {
  /** How a cell without a mark is marked. */
  markSpelling: Spelling;
  /** Analyse again after each save and each cell run. */
  autoRefresh: boolean;
}

export const DEFAULT_SETTINGS: IMlopsSettings = { markSpelling: 'magic', autoRefresh: true };

/** Read the plugin's settings now and whenever they change; defaults without a registry. */
export function watchSettings(
  registry: ISettingRegistry | null,
  plugin: string,
  onChange: (settings: IMlopsSettings) => void
): void {
  onChange({ ...DEFAULT_SETTINGS });
  if (!registry) {
    return;
  }
  const read = (settings: ISettingRegistry.ISettings): void => {
    const spelling = settings.get('markSpelling').composite;
    onChange({
      markSpelling: spelling === 'tag' ? 'tag' : 'magic',
      autoRefresh: settings.get('autoRefresh').composite !== false
    });
  };
  registry.load(plugin).then(
    settings => {
      read(settings);
      settings.changed.connect(read);
    },
    error => console.warn(`jupyter-mlops: settings not loaded (${String(error)}); defaults apply`)
  );
}

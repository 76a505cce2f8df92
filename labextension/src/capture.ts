import { NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';

import { CAPTURING_ROLES, isRoleTag, magicLine } from './marks';

/**
 * Tag-marked cells capture too. A `%%mlops data df` cell captures itself: the magic runs the
 * cell, then records. A cell tagged `mlops:data=df` has no magic, so the sidebar asks the
 * kernel to capture for it: right behind the cell's own execute_request (in the kernel's
 * queue, before any later cell of a Run All can change the values), a silent
 * execute_request of the capture call. When the cell fails, the kernel aborts what is
 * queued behind it, the capture included: as with the magic, nothing is recorded.
 */

/** What the kernel said to one capture. */
export interface ICaptureOutcome {
  cellId: string;
  /** `ok`, `error` (the call failed: no jupyter_mlops in that kernel...) or `aborted`. */
  status: string;
  /** The one-line problems the capture printed, or the error it raised. */
  problems: string[];
}

/** The kernel's capture call: `jupyter_mlops.ipython.magics.capture_cell(tags, code)`,
 * the library's "what `%%mlops` does after its cell ran", for a cell marked by tags.
 * A jupyter-mlops without it captures with the same public pieces the magic uses. */
const CAPTURE_CALL = `def _jupyter_mlops_capture(tags, code):
    from jupyter_mlops.ipython import magics
    if hasattr(magics, "capture_cell"):
        return magics.capture_cell(tags, code)
    import sys
    from IPython import get_ipython
    from jupyter_mlops.notebook.roles import parse_tags
    for mark in parse_tags(tags):
        if mark.role in magics.CAPTURING_ROLES:
            try:
                summary = magics.capture(get_ipython(), mark, code)
            except Exception as err:
                print(f"jupyter-mlops: {err}", file=sys.stderr)
            else:
                if summary:
                    print(f"jupyter-mlops: {summary}")
`;

/** `text` as a Python string literal, ASCII only, exact for every code point. */
export function pyString(text: string): string {
  let out = '"';
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (char === '"' || char === '\\') {
      out += '\\' + char;
    } else if (code >= 0x20 && code < 0x7f) {
      out += char;
    } else if (code <= 0xffff) {
      out += '\\u' + code.toString(16).padStart(4, '0');
    } else {
      out += '\\U' + code.toString(16).padStart(8, '0');
    }
  }
  return out + '"';
}

/** The silent code that captures for a cell with `tags` whose code is `code`. */
export function captureCode(tags: string[], code: string): string {
  const list = '[' + tags.map(pyString).join(', ') + ']';
  return (
    CAPTURE_CALL +
    `try:\n    _jupyter_mlops_capture(${list}, ${pyString(code)})\n` +
    'finally:\n    del _jupyter_mlops_capture\n'
  );
}

/** Whether a cell's tags ask for a capture: an `mlops:` tag of a capturing role, or (in a
 * notebook marked for jupyter-mlops) papermill's or Kale's parameters and metrics tags. */
export function capturingTags(tags: string[], marked: boolean): boolean {
  return tags.some(tag => {
    if (tag.startsWith('mlops:')) {
      return CAPTURING_ROLES.has(tag.slice('mlops:'.length).split('=')[0]);
    }
    return marked && ['parameters', 'pipeline-parameters', 'pipeline-metrics'].includes(tag);
  });
}

/** Whether the notebook uses jupyter-mlops marks at all (a magic line or an `mlops:` tag). */
function markedNotebook(panel: NotebookPanel): boolean {
  const cells = panel.model?.cells;
  if (!cells) {
    return false;
  }
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    const tags = cell.getMetadata('tags');
    if (
      (Array.isArray(tags) && tags.some(t => typeof t === 'string' && t.startsWith('mlops:'))) ||
      (cell.type === 'code' && magicLine(cell.sharedModel.getSource()))
    ) {
      return true;
    }
  }
  return false;
}

/** A notebook the runner wrote (a step notebook, executed or not): it captures nothing. */
export function isStepNotebook(panel: NotebookPanel): boolean {
  const mlops = panel.model?.getMetadata('mlops') as { step?: unknown } | undefined;
  return !!mlops && typeof mlops === 'object' && 'step' in mlops;
}

/** Follow the kernels of `panel`: each tag-marked cell sent to one gets its capture queued
 * behind it; `report` hears how each capture went. */
export function captureTaggedCells(panel: NotebookPanel, report: (outcome: ICaptureOutcome) => void): void {
  const hooked = new WeakSet<Kernel.IKernelConnection>();
  const attach = (): void => {
    const kernel = panel.sessionContext.session?.kernel;
    if (kernel && !hooked.has(kernel)) {
      hooked.add(kernel);
      kernel.anyMessage.connect((_, args) => onMessage(panel, kernel, args, report));
    }
  };
  panel.sessionContext.kernelChanged.connect(attach);
  panel.sessionContext.sessionChanged.connect(attach);
  attach();
}

function onMessage(
  panel: NotebookPanel,
  kernel: Kernel.IKernelConnection,
  args: Kernel.IAnyMessageArgs,
  report: (outcome: ICaptureOutcome) => void
): void {
  const msg = args.msg;
  if (args.direction !== 'send' || msg.header.msg_type !== 'execute_request') {
    return;
  }
  const content = msg.content as KernelMessage.IExecuteRequestMsg['content'];
  const metadata = msg.metadata as { cellId?: unknown; tags?: unknown };
  if (content.silent || typeof metadata.cellId !== 'string' || !Array.isArray(metadata.tags)) {
    return; // not a notebook cell's run (a console, our own capture)
  }
  const tags = metadata.tags.filter((t): t is string => typeof t === 'string');
  if (
    magicLine(content.code) || // the magic captures
    !tags.some(isRoleTag) ||
    isStepNotebook(panel) ||
    !capturingTags(tags, markedNotebook(panel))
  ) {
    return;
  }
  const cellId = metadata.cellId;
  const problems: string[] = [];
  const future = kernel.requestExecute(
    {
      code: captureCode(tags, content.code),
      silent: true,
      store_history: false,
      stop_on_error: false,
      allow_stdin: false
    },
    true
  );
  future.onIOPub = message => {
    if (KernelMessage.isStreamMsg(message) && message.content.name === 'stderr') {
      problems.push(...message.content.text.split('\n').filter(line => line.trim()));
    }
  };
  future.done.then(
    reply => {
      const replied = reply.content;
      if (replied.status === 'error') {
        problems.push(`${replied.ename}: ${replied.evalue}`);
      }
      report({ cellId, status: replied.status, problems });
    },
    () => report({ cellId, status: 'aborted', problems })
  );
}

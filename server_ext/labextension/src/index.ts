/**
 * Valeria datalake in JupyterLab: from a file in a bucket to the line of code that reads it.
 *
 * - Context menu of items inside `datalake_*` folders: "Copy S3 URI" and "Copy code to read it".
 * - Bucket folders get their own icon; read-only ones a mark and a tooltip saying whom to ask.
 * - "Add a shared bucket…" (file browser toolbar and context menu): the user's own list of buckets
 *   shared with them by policy, kept by the server (api.py, user_buckets.py).
 * - "Open in Terminal" is not offered inside `datalake_*` folders (schema/plugin.json): a bucket is
 *   no folder on disk, and the terminal would open in home without saying so.
 * - A folder listing cut short by the server's limit shows its notice.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Clipboard, Dialog, ICommandPalette, Notification, showDialog } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { DirListing, FileBrowser, IDefaultFileBrowser, IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { INotebookTracker } from '@jupyterlab/notebook';
import { Contents } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import {
  addSharedBucket,
  fetchState,
  IBucket,
  IUserBucket,
  messageOf,
  removeSharedBucket
} from './api';
import {
  bucketPath,
  DataFormat,
  formatOf,
  isPartitionName,
  languageOf,
  readOnlyHint,
  readSnippet,
  s3Uri,
  truncationNotice
} from './datalake';

const PLUGIN_ID = 'valeria-datalake:plugin';
const CMD = {
  copyUri: 'valeria-datalake:copy-s3-uri',
  copyCode: 'valeria-datalake:copy-read-code',
  addBucket: 'valeria-datalake:add-shared-bucket'
};
const DATALAKE_CLASS = 'jp-valeria-datalake';
const BUCKET_CLASS = 'jp-valeria-bucket';
const READONLY_CLASS = 'jp-valeria-readonly';
/** seconds between two reads of the bucket list while the browser polls the root */
const STATE_MAX_AGE_MS = 30_000;

export const bucketIcon = new LabIcon({
  name: 'valeria-datalake:bucket',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#0277bd" d="M4 5c0-1.7 3.6-3 8-3s8 1.3 8 3l-2 15c0 1.1-2.7 2-6 2s-6-.9-6-2L4 5z' +
    'm8 2c3.3 0 6-.9 6-2s-2.7-2-6-2-6 .9-6 2 2.7 2 6 2z"/></svg>'
});

/** A bucket with a padlock: a bucket the user can read and not write. */
export const bucketReadOnlyIcon = new LabIcon({
  name: 'valeria-datalake:bucket-read-only',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#0277bd" d="M3 5c0-1.7 3.4-3 7.5-3S18 3.3 18 5l-.6 5H14v-.5a3.5 3.5 0 0 0-7 0V12' +
    'l-.2 1.6L5 20c0 1.1 2.5 2 5.5 2 .2 0 .3 0 .5 0v-9zm7.5 2c3 0 5.5-.9 5.5-2s-2.5-2-5.5-2S5 3.9 5 5s2.5 2 5.5 2z"/>' +
    '<path class="jp-icon-warn0" fill="#e65100" d="M13 14v-1.5a2.5 2.5 0 0 1 5 0V14h1v8h-7v-8h1zm1.5 0h2v-1.5a1 1 0 0 0-2 0V14z"/>' +
    '</svg>'
});

/** What the server said about the buckets, re-read at most every STATE_MAX_AGE_MS unless forced. */
class DatalakeState {
  prefix = 'datalake_';
  buckets = new Map<string, IBucket>();
  user: IUserBucket[] = [];
  readonly changed = new Signal<this, void>(this);
  private _at = 0;
  private _pending: Promise<void> | null = null;

  isInDatalake(path: string): boolean {
    return bucketPath(path, this.prefix) !== null;
  }

  bucketOfFolder(model: Contents.IModel): IBucket | undefined {
    if (model.type !== 'directory' || model.path.includes('/') || !model.name.startsWith(this.prefix)) {
      return undefined;
    }
    return this.buckets.get(model.name.slice(this.prefix.length));
  }

  /** Re-read the state if older than STATE_MAX_AGE_MS; `force`: always, after any read in flight. */
  async refresh(force = false): Promise<void> {
    if (this._pending) {
      await this._pending;
      if (!force) {
        return;
      }
    }
    if (!force && Date.now() - this._at < STATE_MAX_AGE_MS) {
      return;
    }
    this._pending = this._load();
    try {
      await this._pending;
    } finally {
      this._pending = null;
    }
  }

  private async _load(): Promise<void> {
    try {
      const state = await fetchState();
      this.prefix = state.prefix;
      this.buckets = new Map(state.buckets.map(b => [b.bucket, b]));
      this.user = state.user_buckets;
      this._at = Date.now();
      this.changed.emit();
    } catch (error) {
      console.warn('valeria-datalake: cannot read the bucket list', error);
    }
  }
}

/** Mark a file browser item: datalake class (for the context menu), bucket icon, read-only mark. */
function decorate(node: HTMLElement, model: Contents.IModel, state: DatalakeState): void {
  node.classList.toggle(DATALAKE_CLASS, state.isInDatalake(model.path));
  const bucket = state.bucketOfFolder(model);
  node.classList.toggle(BUCKET_CLASS, bucket !== undefined);
  node.classList.toggle(READONLY_CLASS, bucket !== undefined && !bucket.writable);
  if (bucket === undefined) {
    return;
  }
  const hint = bucket.writable ? `S3 bucket ${bucket.bucket}` : readOnlyHint(bucket.source);
  if (!node.title.includes(hint)) {
    node.title = `${node.title}\n${hint}`.trim();
  }
  const icon = node.querySelector('.jp-DirListing-itemIcon') as HTMLElement | null;
  if (icon) {
    // after the listing's own icon render, which also waits for the next frame
    requestAnimationFrame(() =>
      (bucket.writable ? bucketIcon : bucketReadOnlyIcon).element({
        container: icon,
        className: 'jp-DirListing-itemIcon',
        stylesheet: 'listing'
      })
    );
  }
}

/** Wrap the file browser's shared item renderer so that every listing decorates its items. */
function patchRenderer(state: DatalakeState): void {
  const renderer = DirListing.defaultRenderer as DirListing.Renderer;
  const original = renderer.updateItemNode.bind(renderer);
  renderer.updateItemNode = (...args: Parameters<DirListing.Renderer['updateItemNode']>) => {
    original(...args);
    decorate(args[0], args[1], state);
  };
}

async function copyText(text: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    Clipboard.copyToSystem(text);
  }
}

/** Partitions and data format of a folder: looks down the first partition at most 5 levels. */
async function describeFolder(
  contents: Contents.IManager,
  path: string
): Promise<{ partitioned: boolean; format: DataFormat | null }> {
  let partitioned = isPartitionName(PathExt.basename(path));
  let current = path;
  for (let depth = 0; depth < 5; depth++) {
    const model = await contents.get(current, { content: true });
    const items = (model.content ?? []) as Contents.IModel[];
    const file = items.find(i => i.type !== 'directory' && formatOf(i.name) !== null);
    if (file) {
      return { partitioned, format: formatOf(file.name) };
    }
    const partition = items.find(i => i.type === 'directory' && isPartitionName(i.name));
    if (!partition) {
      break;
    }
    partitioned = true;
    current = partition.path;
  }
  return { partitioned, format: null };
}

async function kernelLanguage(app: JupyterFrontEnd, notebooks: INotebookTracker | null): Promise<string> {
  const kernel = notebooks?.currentWidget?.sessionContext.session?.kernel;
  if (kernel) {
    const spec = await kernel.spec;
    if (spec?.language) {
      return spec.language;
    }
  }
  const specs = app.serviceManager.kernelspecs.specs;
  return (specs && specs.kernelspecs[specs.default]?.language) || 'python';
}

/** The body of the "Shared buckets" dialog: the user's list, remove buttons, an add field. */
class SharedBucketsBody extends Widget {
  constructor(private readonly state: DatalakeState, private readonly onChange: () => void) {
    super();
    this.addClass('jp-valeria-SharedBuckets');
    const intro = document.createElement('p');
    intro.textContent =
      'A bucket a colleague shared with you does not appear by itself. Type its name: it is checked ' +
      `with your own credentials and, if you can read it, shown as ${state.prefix}<bucket> from now on.`;
    this.list = document.createElement('ul');
    this.list.className = 'jp-valeria-SharedBuckets-list';
    const row = document.createElement('div');
    row.className = 'jp-valeria-SharedBuckets-add';
    this.input = document.createElement('input');
    this.input.className = 'jp-mod-styled jp-valeria-SharedBuckets-input';
    this.input.placeholder = 'bucket name';
    this.input.setAttribute('aria-label', 'Bucket name');
    this.input.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        event.preventDefault();
        event.stopPropagation();
        void this.add();
      }
    });
    const add = document.createElement('button');
    add.className = 'jp-mod-styled jp-mod-accept jp-valeria-SharedBuckets-addButton';
    add.textContent = 'Add';
    add.addEventListener('click', () => void this.add());
    row.append(this.input, add);
    this.status = document.createElement('div');
    this.status.className = 'jp-valeria-SharedBuckets-status';
    this.status.setAttribute('role', 'status');
    this.node.append(intro, this.list, row, this.status);
    this.render();
  }

  private readonly list: HTMLUListElement;
  private readonly input: HTMLInputElement;
  private readonly status: HTMLDivElement;

  private say(text: string, error = false): void {
    this.status.textContent = text;
    // not jp-mod-error: JupyterLab's Dialog disables its buttons while one is in the body
    this.status.classList.toggle('jp-valeria-SharedBuckets-error', error);
  }

  render(): void {
    this.list.replaceChildren();
    if (this.state.user.length === 0) {
      const empty = document.createElement('li');
      empty.className = 'jp-valeria-SharedBuckets-empty';
      empty.textContent = 'No bucket added yet.';
      this.list.append(empty);
    }
    for (const entry of this.state.user) {
      const item = document.createElement('li');
      item.dataset.bucket = entry.bucket;
      const name = document.createElement('span');
      name.className = 'jp-valeria-SharedBuckets-name';
      name.textContent = `${this.state.prefix}${entry.bucket}`;
      const note = document.createElement('span');
      note.className = 'jp-valeria-SharedBuckets-note';
      note.textContent = entry.readable ? '' : 'not readable now: hidden until access returns';
      const remove = document.createElement('button');
      remove.className = 'jp-mod-styled jp-mod-warn jp-valeria-SharedBuckets-remove';
      remove.textContent = 'Remove';
      remove.title = `Remove ${entry.bucket} from your list (the bucket and its data stay)`;
      remove.addEventListener('click', () => void this.remove(entry.bucket));
      item.append(name, note, remove);
      this.list.append(item);
    }
  }

  private async add(): Promise<void> {
    const name = this.input.value.trim();
    if (!name) {
      this.say('Type the name of a bucket first.', true);
      return;
    }
    this.say(`Checking ${name} with your credentials…`);
    try {
      const result = await addSharedBucket(name);
      this.input.value = '';
      await this.state.refresh(true);
      this.render();
      this.onChange();
      this.say(result.added ? `Added: ${result.folder}` : result.message ?? `Already shown: ${name}`);
    } catch (error) {
      this.say(messageOf(error), true);
    }
  }

  private async remove(bucket: string): Promise<void> {
    try {
      await removeSharedBucket(bucket);
      await this.state.refresh(true);
      this.render();
      this.onChange();
      this.say(`Removed: ${this.state.prefix}${bucket}`);
    } catch (error) {
      this.say(messageOf(error), true);
    }
  }
}

/** Show the notice of a folder listing the server cut short, once per folder and notice. */
function watchTruncation(app: JupyterFrontEnd): void {
  const contents = app.serviceManager.contents;
  const original = contents.get.bind(contents);
  const shown = new Set<string>();
  (contents as { get: typeof original }).get = async (path, options) => {
    const model = await original(path, options);
    const notice = truncationNotice(model as unknown as { [key: string]: unknown });
    if (notice && !shown.has(`${model.path}\n${notice}`)) {
      shown.add(`${model.path}\n${notice}`);
      Notification.warning(notice, { autoClose: false });
    }
    return model;
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Valeria datalake: S3 URIs and read snippets, bucket marks, shared buckets',
  autoStart: true,
  requires: [IFileBrowserFactory, IDefaultFileBrowser],
  optional: [INotebookTracker, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    factory: IFileBrowserFactory,
    defaultBrowser: FileBrowser,
    notebooks: INotebookTracker | null,
    palette: ICommandPalette | null
  ) => {
    const state = new DatalakeState();
    patchRenderer(state);
    watchTruncation(app);

    const browsers = (): FileBrowser[] => {
      const all: FileBrowser[] = [defaultBrowser];
      factory.tracker.forEach(b => {
        if (b !== defaultBrowser) {
          all.push(b);
        }
      });
      return all;
    };
    state.changed.connect(() => {
      // decorations depend on the state: repaint every browser's items
      browsers().forEach(b => (b as unknown as { listing: { update(): void } }).listing.update());
    });
    const watch = (browser: FileBrowser) =>
      browser.model.refreshed.connect(() => {
        const unknown = Array.from(browser.model.items()).some(
          i => i.type === 'directory' && i.name.startsWith(state.prefix) && !i.path.includes('/') &&
            !state.buckets.has(i.name.slice(state.prefix.length))
        );
        void state.refresh(unknown);
      });
    watch(defaultBrowser);
    factory.tracker.widgetAdded.connect((_, browser) => watch(browser));
    void state.refresh(true);

    const current = (): FileBrowser => factory.tracker.currentWidget ?? defaultBrowser;
    const selected = (): Contents.IModel | undefined => {
      const first = current().selectedItems().next();
      return first.done ? undefined : first.value;
    };
    const uriOf = (item: Contents.IModel | undefined): string | null =>
      item ? s3Uri(item.path, item.type === 'directory', state.prefix) : null;

    app.commands.addCommand(CMD.copyUri, {
      label: 'Copy S3 URI',
      caption: 'Copy s3://bucket/key, which Python, R and the AWS CLI can open',
      isVisible: () => uriOf(selected()) !== null,
      execute: async () => {
        const uri = uriOf(selected());
        if (uri) {
          await copyText(uri);
          Notification.info(`Copied ${uri}`, { autoClose: 3000 });
        }
      }
    });

    app.commands.addCommand(CMD.copyCode, {
      label: 'Copy code to read it',
      caption: 'Copy code that reads this file or folder, for the current kernel language',
      isVisible: () => uriOf(selected()) !== null,
      execute: async () => {
        const item = selected();
        const uri = uriOf(item);
        if (!item || !uri) {
          return;
        }
        const isDirectory = item.type === 'directory';
        const folder = isDirectory
          ? await describeFolder(app.serviceManager.contents, item.path).catch(() => ({
              partitioned: false,
              format: null
            }))
          : { partitioned: false, format: null };
        const language = languageOf(await kernelLanguage(app, notebooks));
        await copyText(readSnippet({ uri, isDirectory, ...folder }, language));
        Notification.info(`Copied ${language === 'r' ? 'R' : 'Python'} code that reads ${uri}`, {
          autoClose: 3000
        });
      }
    });

    app.commands.addCommand(CMD.addBucket, {
      label: 'Add a shared bucket…',
      caption: 'Show a bucket shared with you by its owner in the file browser',
      icon: bucketIcon,
      execute: async () => {
        await state.refresh(true);
        const body = new SharedBucketsBody(state, () => {
          browsers().forEach(b => void b.model.refresh());
        });
        await showDialog({
          title: 'Shared buckets',
          body,
          buttons: [Dialog.okButton({ label: 'Done' })],
          focusNodeSelector: 'input'
        });
      }
    });
    if (palette) {
      palette.addItem({ command: CMD.addBucket, category: 'Datalake' });
    }
  }
};

export default plugin;

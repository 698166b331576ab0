/**
 * Pure logic of the Valeria datalake extension: API paths to S3 URIs, and the code that reads them.
 *
 * Rules (tested in test/datalake.test.ts):
 * - A bucket is the top folder `<prefix><bucket>` of the file browser; the rest of the path is the key.
 * - S3 URIs carry the key as it is, never percent-encoded: s3fs, pandas, pyarrow and the AWS CLI
 *   all take `s3://bucket/my file.csv` literally, and would look for `my%20file.csv` otherwise.
 *   Spaces, unicode, `=` (Hive partitions), `%`, `#` and `?` stay as they are.
 * - A folder's URI ends with `/`; a bucket's is `s3://bucket/`.
 * - Snippets quote the URI as a string literal of the kernel's language (JSON's escapes are valid
 *   in Python and R), so any key, quotes and backslashes included, pastes as valid code.
 */

/** A file browser path inside a bucket. */
export interface IBucketPath {
  bucket: string;
  key: string;
}

/** Where a path lies in the datalake; null outside it (home, scratch, the root). */
export function bucketPath(
  path: string,
  prefix: string,
  buckets?: ReadonlySet<string>
): IBucketPath | null {
  const clean = path.replace(/^\/+|\/+$/g, '');
  if (!prefix || !clean.startsWith(prefix)) {
    return null;
  }
  const slash = clean.indexOf('/');
  const top = slash < 0 ? clean : clean.slice(0, slash);
  const bucket = top.slice(prefix.length);
  if (!bucket || (buckets && !buckets.has(bucket))) {
    return null;
  }
  return { bucket, key: slash < 0 ? '' : clean.slice(slash + 1) };
}

/** `s3://bucket/key`, or `s3://bucket/prefix/` for a folder; null outside the datalake. */
export function s3Uri(
  path: string,
  isDirectory: boolean,
  prefix: string,
  buckets?: ReadonlySet<string>
): string | null {
  const where = bucketPath(path, prefix, buckets);
  if (!where) {
    return null;
  }
  if (!where.key) {
    return `s3://${where.bucket}/`;
  }
  return `s3://${where.bucket}/${where.key}${isDirectory ? '/' : ''}`;
}

/** The URI without its scheme: what s3fs and arrow's filesystems take (`bucket/key`). */
export function fsPath(uri: string): string {
  return uri.replace(/^s3:\/\//, '');
}

/** A string literal for Python or R. */
export function literal(text: string): string {
  return JSON.stringify(text);
}

export type DataFormat = 'csv' | 'tsv' | 'parquet' | 'json' | 'jsonl';

/** The tabular format of a file name, or null. */
export function formatOf(name: string): DataFormat | null {
  const lower = name.toLowerCase().replace(/\.(gz|bz2|zst|xz)$/, '');
  const ext = lower.includes('.') ? lower.slice(lower.lastIndexOf('.') + 1) : '';
  switch (ext) {
    case 'csv':
      return 'csv';
    case 'tsv':
    case 'tab':
      return 'tsv';
    case 'parquet':
    case 'pq':
      return 'parquet';
    case 'json':
      return 'json';
    case 'jsonl':
    case 'ndjson':
      return 'jsonl';
    default:
      return null;
  }
}

/** Is this folder name a Hive-style partition (`year=2024`)? */
export function isPartitionName(name: string): boolean {
  return /^[^=/]+=[^/]*$/.test(name);
}

export interface ISnippetTarget {
  /** the S3 URI (a folder's ends with `/`) */
  uri: string;
  isDirectory: boolean;
  /** for a folder: does it (or its first level) hold `key=value` partitions? */
  partitioned?: boolean;
  /** for a folder: the format of the data files found in it, if any */
  format?: DataFormat | null;
}

/** Kernel languages a snippet is written for. */
export type Language = 'python' | 'r';

export function languageOf(kernelLanguage: string | undefined | null): Language {
  return (kernelLanguage ?? '').trim().toLowerCase() === 'r' ? 'r' : 'python';
}

/** Code that reads the target, for a fresh notebook with only the hub's environment (AWS_*). */
export function readSnippet(target: ISnippetTarget, language: Language): string {
  return language === 'r' ? rSnippet(target) : pythonSnippet(target);
}

function pythonSnippet(t: ISnippetTarget): string {
  const uri = literal(t.uri);
  if (t.isDirectory) {
    const format = t.format === 'tsv' ? 'csv' : t.format;
    if (format === 'parquet' || format === 'csv' || t.partitioned) {
      const fmt = literal(format === 'csv' ? 'csv' : format === 'json' || format === 'jsonl' ? 'json' : 'parquet');
      return [
        'import pyarrow.dataset as ds',
        'import s3fs',
        '',
        `dataset = ds.dataset(${literal(fsPath(t.uri))}, filesystem=s3fs.S3FileSystem(), format=${fmt}${
          t.partitioned ? ', partitioning="hive"' : ''
        })`,
        'df = dataset.to_table().to_pandas()',
        'df'
      ].join('\n');
    }
    return ['import s3fs', '', 'fs = s3fs.S3FileSystem()', `fs.ls(${literal(fsPath(t.uri))})`].join('\n');
  }
  switch (formatOf(t.uri)) {
    case 'csv':
      return `import pandas as pd\n\ndf = pd.read_csv(${uri})\ndf`;
    case 'tsv':
      return `import pandas as pd\n\ndf = pd.read_csv(${uri}, sep="\\t")\ndf`;
    case 'parquet':
      return `import pandas as pd\n\ndf = pd.read_parquet(${uri})\ndf`;
    case 'json':
      return `import pandas as pd\n\ndf = pd.read_json(${uri})\ndf`;
    case 'jsonl':
      return `import pandas as pd\n\ndf = pd.read_json(${uri}, lines=True)\ndf`;
    default:
      return [
        'import s3fs',
        '',
        'fs = s3fs.S3FileSystem()',
        `with fs.open(${literal(fsPath(t.uri))}, "rb") as f:`,
        '    data = f.read()',
        'len(data)'
      ].join('\n');
  }
}

/** R: the helpers of the R image (images/notebook-r/valeria-s3.R, attached as "valeria"). */
function rSnippet(t: ISnippetTarget): string {
  const path = literal(fsPath(t.uri).replace(/\/$/, ''));
  if (t.isDirectory) {
    if (t.partitioned || t.format === 'parquet' || t.format === 'csv') {
      const fmt = t.format === 'csv' ? ', format = "csv"' : '';
      return [
        `ds <- arrow::open_dataset(valeria_arrow_fs()$path(${path})${fmt})`,
        'df <- dplyr::collect(ds)',
        'df'
      ].join('\n');
    }
    const bucket = fsPath(t.uri).split('/')[0];
    const prefix = fsPath(t.uri).slice(bucket.length + 1);
    return `do.call(aws.s3::get_bucket_df, c(list(bucket = ${literal(bucket)}, prefix = ${literal(prefix)}), valeria_s3_args()))`;
  }
  switch (formatOf(t.uri)) {
    case 'csv':
      return `df <- do.call(aws.s3::s3read_using, c(list(FUN = read.csv, object = ${literal(t.uri)}), valeria_s3_args()))\ndf`;
    case 'tsv':
      return `df <- do.call(aws.s3::s3read_using, c(list(FUN = read.delim, object = ${literal(t.uri)}), valeria_s3_args()))\ndf`;
    case 'parquet':
      return `df <- arrow::read_parquet(valeria_arrow_fs()$path(${path}))\ndf`;
    case 'json':
    case 'jsonl':
      return `df <- arrow::read_json_arrow(valeria_arrow_fs()$path(${path}))\ndf`;
    default:
      return `data <- do.call(aws.s3::get_object, c(list(object = ${literal(t.uri)}), valeria_s3_args()))\nlength(data)`;
  }
}

/**
 * The notice of a folder listing cut short by the server's limit, if the directory model has one
 * (a `message` string, or `truncated: true`).
 */
export function truncationNotice(model: { [key: string]: unknown } | null | undefined): string | null {
  if (!model || model['type'] !== 'directory') {
    return null;
  }
  const message = model['message'];
  if (typeof message === 'string' && message.trim()) {
    return message.trim();
  }
  if (model['truncated'] === true) {
    return `Only the first entries of ${String(model['path'] ?? 'this folder')} are shown.`;
  }
  return null;
}

/** The tooltip line of a bucket folder the user cannot write to. */
export function readOnlyHint(source: 'own' | 'admin' | 'user'): string {
  const ask = source === 'user' ? "the bucket's owner" : 'your platform administrators or the bucket\'s owner';
  return `Read-only bucket: you can open and copy its files, not change them. For write access, ask ${ask}.`;
}

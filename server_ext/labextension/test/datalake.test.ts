import {
  bucketPath,
  formatOf,
  isPartitionName,
  languageOf,
  literal,
  readOnlyHint,
  readSnippet,
  s3Uri,
  truncationNotice
} from '../src/datalake';

const P = 'datalake_';
const BUCKETS = new Set(['my-bucket', 'Relaxed_Name', 'b']);

describe('s3Uri', () => {
  it('maps a file, a folder and a bucket', () => {
    expect(s3Uri('datalake_my-bucket/dir/x.csv', false, P, BUCKETS)).toBe('s3://my-bucket/dir/x.csv');
    expect(s3Uri('datalake_my-bucket/dir', true, P, BUCKETS)).toBe('s3://my-bucket/dir/');
    expect(s3Uri('datalake_my-bucket', true, P, BUCKETS)).toBe('s3://my-bucket/');
    expect(s3Uri('/datalake_my-bucket/dir/', true, P, BUCKETS)).toBe('s3://my-bucket/dir/');
  });

  it('keeps spaces, unicode and partitions as they are (no percent-encoding)', () => {
    expect(s3Uri('datalake_my-bucket/my folder/my file.csv', false, P, BUCKETS)).toBe(
      's3://my-bucket/my folder/my file.csv'
    );
    expect(s3Uri('datalake_my-bucket/données/Été Résumé.txt', false, P, BUCKETS)).toBe(
      's3://my-bucket/données/Été Résumé.txt'
    );
    expect(s3Uri('datalake_my-bucket/events/year=2024/month=01', true, P, BUCKETS)).toBe(
      's3://my-bucket/events/year=2024/month=01/'
    );
  });

  it('never decodes or encodes percent signs, hashes or question marks', () => {
    expect(s3Uri('datalake_b/a%20b.csv', false, P, BUCKETS)).toBe('s3://b/a%20b.csv');
    expect(s3Uri('datalake_b/100%.txt', false, P, BUCKETS)).toBe('s3://b/100%.txt');
    expect(s3Uri('datalake_b/q?x=1#frag', false, P, BUCKETS)).toBe('s3://b/q?x=1#frag');
    expect(s3Uri('datalake_b/%E2%82%AC', false, P, BUCKETS)).toBe('s3://b/%E2%82%AC');
  });

  it('is null outside the datalake and for unknown buckets', () => {
    expect(s3Uri('notes.txt', false, P, BUCKETS)).toBeNull();
    expect(s3Uri('scratch/x.csv', false, P, BUCKETS)).toBeNull();
    expect(s3Uri('', true, P, BUCKETS)).toBeNull();
    expect(s3Uri('datalake_other/x', false, P, BUCKETS)).toBeNull();
    expect(s3Uri('datalake_', true, P, BUCKETS)).toBeNull();
    expect(s3Uri('Datalake_b/x', false, P, BUCKETS)).toBeNull();
  });

  it('follows the configured prefix', () => {
    expect(s3Uri('s3_Relaxed_Name/k', false, 's3_', BUCKETS)).toBe('s3://Relaxed_Name/k');
    expect(bucketPath('s3_b', 's3_')).toEqual({ bucket: 'b', key: '' });
  });
});

describe('snippets', () => {
  it('quote any key as a valid literal', () => {
    expect(literal('s3://b/say "hi"\\.csv')).toBe('"s3://b/say \\"hi\\"\\\\.csv"');
    expect(literal('s3://b/Été.csv')).toBe('"s3://b/Été.csv"');
    expect(literal('s3://b/a\nb')).toBe('"s3://b/a\\nb"');
  });

  it('read CSV, Parquet and JSON with pandas in Python', () => {
    const csv = readSnippet({ uri: 's3://b/my dir/x y.csv', isDirectory: false }, 'python');
    expect(csv).toBe('import pandas as pd\n\ndf = pd.read_csv("s3://b/my dir/x y.csv")\ndf');
    expect(readSnippet({ uri: 's3://b/t.parquet', isDirectory: false }, 'python')).toContain(
      'pd.read_parquet("s3://b/t.parquet")'
    );
    expect(readSnippet({ uri: 's3://b/t.json', isDirectory: false }, 'python')).toContain(
      'pd.read_json("s3://b/t.json")'
    );
    expect(readSnippet({ uri: 's3://b/t.jsonl', isDirectory: false }, 'python')).toContain('lines=True');
    expect(readSnippet({ uri: 's3://b/t.csv.gz', isDirectory: false }, 'python')).toContain('pd.read_csv(');
  });

  it('read a partitioned folder with pyarrow.dataset through s3fs', () => {
    const code = readSnippet(
      { uri: 's3://b/events/', isDirectory: true, partitioned: true, format: 'parquet' },
      'python'
    );
    expect(code).toContain(
      'ds.dataset("b/events/", filesystem=s3fs.S3FileSystem(), format="parquet", partitioning="hive")'
    );
    const csvs = readSnippet(
      { uri: 's3://b/spark/year=2024/', isDirectory: true, partitioned: true, format: 'csv' },
      'python'
    );
    expect(csvs).toContain('"b/spark/year=2024/"');
    expect(csvs).toContain('format="csv"');
  });

  it('open anything else with s3fs', () => {
    const code = readSnippet({ uri: 's3://b/model.bin', isDirectory: false }, 'python');
    expect(code).toContain('fs.open("b/model.bin", "rb")');
    const folder = readSnippet({ uri: 's3://b/docs/', isDirectory: true }, 'python');
    expect(folder).toContain('fs.ls("b/docs/")');
  });

  it('use the R image helpers in R', () => {
    expect(languageOf('R')).toBe('r');
    expect(languageOf('python')).toBe('python');
    expect(languageOf(undefined)).toBe('python');
    const csv = readSnippet({ uri: 's3://b/a b.csv', isDirectory: false }, 'r');
    expect(csv).toContain('aws.s3::s3read_using');
    expect(csv).toContain('object = "s3://b/a b.csv"');
    expect(csv).toContain('valeria_s3_args()');
    const ds = readSnippet({ uri: 's3://b/events/', isDirectory: true, partitioned: true }, 'r');
    expect(ds).toContain('valeria_arrow_fs()$path("b/events")');
  });
});

describe('names', () => {
  it('recognises formats and partitions', () => {
    expect(formatOf('A.CSV')).toBe('csv');
    expect(formatOf('part-0.snappy.parquet')).toBe('parquet');
    expect(formatOf('README')).toBeNull();
    expect(isPartitionName('year=2024')).toBe(true);
    expect(isPartitionName('month=')).toBe(true);
    expect(isPartitionName('no-partition')).toBe(false);
    expect(isPartitionName('=x')).toBe(false);
  });
});

describe('notices', () => {
  it('finds the notice of a truncated folder listing', () => {
    expect(truncationNotice({ type: 'directory', path: 'datalake_b/big', message: ' Showing 10000 of 25000 entries. ' })).toBe(
      'Showing 10000 of 25000 entries.'
    );
    expect(truncationNotice({ type: 'directory', path: 'datalake_b/big', truncated: true })).toContain('datalake_b/big');
    expect(truncationNotice({ type: 'directory', path: 'x', content: [] })).toBeNull();
    expect(truncationNotice({ type: 'file', path: 'x', message: 'no' })).toBeNull();
    expect(truncationNotice(null)).toBeNull();
  });

  it('says whom to ask for write access', () => {
    expect(readOnlyHint('user')).toContain("the bucket's owner");
    expect(readOnlyHint('admin')).toContain('platform administrators');
  });
});

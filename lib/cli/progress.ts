/**
 * Progress display on stderr: a redrawn bar on a terminal, occasional plain lines otherwise.
 * @internal
 * @packageDocumentation
 */

/** Formats milliseconds as `1.2s`, `3m04s`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  return `${m}m${String(s).padStart(2, '0')}s`;
}

/** Formats bytes as `12.3 MB` (decimal units). */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** A progress line on a stream. */
export class ProgressBar {
  private lastLine = '';
  private lastPlain = 0;
  private drawn = false;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr, private readonly enabled = true) {}

  /** Shows `label [#####.....] done/total  extra`. */
  update(label: string, done: number, total: number, extra = ''): void {
    this.draw(label, total > 0 ? done / total : 0, `${done}/${total}`, extra);
  }

  /** Shows `label [#####.....] 42%  extra` for a fraction in [0, 1]. */
  fraction(label: string, f: number, extra = ''): void {
    this.draw(label, f, `${Math.round(Math.min(1, Math.max(0, f)) * 100)}%`, extra, f >= 1);
  }

  /**
   * The line for a terminal `cols` wide (at most cols - 1 characters): the bar narrows from 24 to 6 cells, then
   * `extra` is dropped, then the bar; the label and the count always stay.
   * @internal
   */
  static layout(label: string, frac: number, count: string, extra: string, cols: number): string {
    frac = Math.min(1, Math.max(0, frac));
    const head = `${label.padEnd(8)} `;
    const max = Math.max(1, cols - 1);
    for (const tail of [` ${count}${extra ? `  ${extra}` : ''}`, ` ${count}`]) {
      const width = Math.min(24, max - head.length - tail.length - 2);
      if (width >= 6) {
        const fill = Math.round(frac * width);
        return `${head}[${'#'.repeat(fill)}${'.'.repeat(width - fill)}]${tail}`;
      }
    }
    return `${head}${count}`.slice(0, max);
  }

  private draw(label: string, frac: number, count: string, extra: string, complete = frac >= 1): void {
    if (!this.enabled) return;
    const tty = this.stream.isTTY === true;
    const cols = tty ? this.stream.columns || 80 : 100;
    const line = ProgressBar.layout(label, frac, count, extra, cols);
    if (line === this.lastLine) return;
    this.lastLine = line;
    if (tty) {
      // \r + the line + clear to the end of the line: no leftovers from a longer previous line, no wrapping
      this.stream.write(`\r${line}\x1b[K`);
      this.drawn = true;
    } else {
      // Not a terminal (a log file, a test): one line per second, plus every phase's end.
      const now = Date.now();
      if (complete || now - this.lastPlain >= 1000) {
        this.lastPlain = now;
        this.stream.write(`${line}\n`);
      }
    }
  }

  /** Ends the bar's line (before printing anything else). */
  done(): void {
    if (this.drawn && this.stream.isTTY) this.stream.write('\n');
    this.drawn = false;
    this.lastLine = '';
  }
}
